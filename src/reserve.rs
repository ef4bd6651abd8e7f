//! [`Reserve`]: an `Allocator` (allocator-api2, the trait hashbrown uses)
//! whose allocations may draw on the reserve, without a thread scope.
//!
//! It is for the data structures of the freeing path itself: the flusher's
//! `Vec` of dirty entries, a `HashMap` of in-flight writes. Failures are
//! `AllocError`s, never aborts.
//!
//! ```
//! use allocator_api2::vec::Vec;
//! let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(8 << 20)).unwrap();
//! let mut batch: Vec<u64, _> = Vec::new_in(heap.reserve());
//! batch.push(42);
//! assert!(batch.iter().all(|p| heap.usable_size(p as *const u64 as *const u8).is_some()));
//! ```

use crate::flags::AllocFlags;
use crate::heap::Heap;
use crate::target::Target;
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::Layout;
use core::ptr::NonNull;

/// An allocator handle with the memalloc right (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Reserve<'h> {
    target: Target<'h>,
}

#[cfg(not(loom))]
impl Reserve<'static> {
    /// A handle on the process heap (the one behind [`crate::Lifeboat`]).
    pub fn process() -> Self {
        Self {
            target: Target::Process,
        }
    }
}

impl Heap {
    /// A handle that allocates from this heap with the memalloc right.
    pub fn reserve(&self) -> Reserve<'_> {
        Reserve {
            target: Target::Heap(self),
        }
    }
}

// SAFETY: blocks are at least `layout.size()` bytes at `layout.align()`,
// stay valid until deallocated, and handles (copies) share the same heap, so
// any copy may free a block another allocated.
unsafe impl Allocator for Reserve<'_> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = self
            .target
            .alloc(layout, AllocFlags::MEMALLOC)
            .map_err(|_| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller passes a block of this allocator.
        unsafe { self.target.dealloc(ptr, layout) }
    }
}
