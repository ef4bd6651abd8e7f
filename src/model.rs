//! Handles on lifeboat's internal structures for the loom models in
//! `loom-tests/` (and white-box tests). **Not part of the public API**: no
//! semver promise covers anything here.
//!
//! A [`Cache`] is a real [`ThreadCache`] of a private [`Heap`], owned by one
//! model thread, so a model can make slabs owned by different threads and
//! exercise remote frees, detaching and claiming with the shipped code.

use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::heap::Heap;
use crate::tcache::ThreadCache;
use core::alloc::Layout;
use core::ptr::NonNull;

/// A thread cache of a private heap, used by exactly one thread at a time.
pub struct Cache<'h> {
    heap: &'h Heap,
    // Boxed: the cache's address is its owner id and must not move.
    tc: Box<ThreadCache>,
}

// SAFETY: a Cache is used by one thread at a time (it is moved, never
// shared); the slabs it owns follow the ownership protocol of `slab`.
unsafe impl Send for Cache<'_> {}

impl<'h> Cache<'h> {
    /// An empty cache of `heap`.
    pub fn new(heap: &'h Heap) -> Self {
        let empty: *const _ = &heap.inner().empty;
        Self { heap, tc: Box::new(ThreadCache::new(empty)) }
    }

    /// Allocates through this cache.
    pub fn alloc(&mut self, layout: Layout, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let h = self.heap.inner();
        // SAFETY: the cache belongs to this heap and to the caller.
        let (p, _) = unsafe { h.alloc_with(&mut self.tc, layout, flags)? };
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    /// Frees through this cache (locally if it owns the slab, else remotely).
    ///
    /// # Safety
    /// `p` is a live allocation of this cache's heap.
    pub unsafe fn free(&mut self, p: NonNull<u8>) {
        let h = self.heap.inner();
        // SAFETY: forwarded from the caller.
        unsafe { h.free(&mut self.tc, p.as_ptr()) };
    }

    /// Detaches every slab the cache owns (what thread exit does).
    pub fn flush(&mut self) {
        // SAFETY: the cache is ours.
        unsafe { self.tc.flush(self.heap.inner()) };
    }
}

impl Drop for Cache<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Free pages of a heap's budget (exact).
pub fn free_pages(heap: &Heap) -> usize {
    heap.inner().arena.free_pages()
}
