//! Where an explicit allocation goes: the process heap or a private heap.
//! Used by [`crate::Reserve`] and [`crate::Mempool`].

use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::heap::Heap;
use core::alloc::Layout;
use core::ptr::NonNull;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'h> {
    /// The heap behind [`crate::Lifeboat`].
    #[cfg(not(loom))]
    Process,
    /// A private heap.
    Heap(&'h Heap),
}

impl Target<'_> {
    pub(crate) fn alloc(
        &self,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        match self {
            #[cfg(not(loom))]
            Target::Process => crate::global::alloc_flags(layout, flags),
            Target::Heap(h) => h.alloc(layout, flags),
        }
    }

    /// # Safety
    /// `p` came from `alloc` on this target and is not used afterwards.
    pub(crate) unsafe fn dealloc(&self, p: NonNull<u8>, layout: Layout) {
        match self {
            // SAFETY: forwarded from the caller.
            #[cfg(not(loom))]
            Target::Process => unsafe { crate::global::free_ptr(p.as_ptr()) },
            // SAFETY: forwarded from the caller.
            Target::Heap(h) => unsafe { h.dealloc(p, layout) },
        }
    }
}
