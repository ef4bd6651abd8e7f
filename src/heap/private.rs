//! [`Heap`]: the public handle of a private heap.

use super::HeapInner;
use crate::config::Config;
use crate::error::{AllocError, Error};
use crate::flags::AllocFlags;
use crate::reclaim::shrinker::{RegisterError, Shrinker};
use crate::reclaim::OomHandler;
use crate::stats::Stats;
use crate::sync::Ordering;
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// A private heap with its own budget, watermarks and slabs.
///
/// Allocation failures are errors, never aborts. Dropping the heap unmaps
/// all its memory: every pointer it handed out dangles afterwards.
///
/// ```
/// use lifeboat::{AllocFlags, Config, Heap};
/// use std::alloc::Layout;
///
/// let heap = Heap::new(Config::new().budget(16 << 20)).unwrap();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// let p = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
/// // SAFETY: `p` came from this heap with `layout` and is not used after.
/// unsafe { heap.dealloc(p, layout) };
/// ```
pub struct Heap {
    inner: NonNull<HeapInner>,
    reclaimer: Option<std::thread::JoinHandle<()>>,
}

// SAFETY: HeapInner is Send + Sync; the handle only points at it.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

/// Lets the background reclaimer thread hold the heap.
struct HeapPtr(NonNull<HeapInner>);
// SAFETY: HeapInner is Sync; `Heap::drop` joins the thread before unmapping.
unsafe impl Send for HeapPtr {}

impl Heap {
    /// Maps a heap of `config`'s budget (which must be at least 1 MiB).
    /// With [`Config::background_reclaim`], starts its reclaimer thread.
    pub fn new(config: Config) -> Result<Heap, Error> {
        let inner = HeapInner::create(&config, false)?;
        let mut heap = Heap {
            inner,
            reclaimer: None,
        };
        if config.background_reclaim {
            heap.reclaimer = Some(heap.spawn_reclaimer().map_err(|_| Error::MapFailed)?);
        }
        Ok(heap)
    }

    fn spawn_reclaimer(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let h = self.inner();
        h.reclaim.kswapd.running.store(true, Ordering::Release);
        let ptr = HeapPtr(self.inner);
        let ms = h.config.purge_interval_ms;
        std::thread::Builder::new()
            .name("lifeboat-reclaim".into())
            .spawn(move || {
                let ptr = ptr;
                // SAFETY: the heap outlives the thread (joined in Drop).
                unsafe { ptr.0.as_ref() }.kswapd_loop(ms)
            })
    }

    pub(crate) fn inner(&self) -> &HeapInner {
        // SAFETY: the heap lives as long as the handle.
        unsafe { self.inner.as_ref() }
    }

    /// Allocates `layout` under `flags` (plus this thread's scopes). Under
    /// pressure this reclaims (shrinkers, caches) before it fails.
    pub fn alloc(&self, layout: Layout, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let (p, _) = self.alloc_inner(layout, flags)?;
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    fn alloc_inner(
        &self,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<(*mut u8, bool), AllocError> {
        #[cfg(not(loom))]
        if crate::sync::holds_waited_lock() {
            // Re-entered (a signal handler) while the heap lock is held.
            return Err(AllocError::Reentered);
        }
        let h = self.inner();
        h.alloc_reclaiming(
            layout,
            flags,
            &mut || {
                // SAFETY: the shard cache belongs to this heap.
                h.with_shard(|tc| unsafe { h.alloc_with(tc, layout, flags) })
                    .unwrap_or(Err(AllocError::Reentered))
            },
            &mut || {
                // SAFETY: as above.
                h.with_shard(|tc| unsafe { tc.flush(h) });
            },
        )
    }

    /// Allocates zeroed memory.
    pub fn alloc_zeroed(
        &self,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let (p, zeroed) = self.alloc_inner(layout, flags)?;
        if !zeroed {
            // SAFETY: the block is at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    /// Frees memory from [`Heap::alloc`].
    ///
    /// # Safety
    /// `ptr` came from this heap and is not used afterwards. (`layout` is
    /// not needed to find the block; it is taken for symmetry.)
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        let p = crate::arena::own_provenance(ptr.as_ptr());
        // Re-entered (a signal handler) while the heap lock is held, or
        // while every shard is taken: the block is leaked rather than wait
        // for a lock forever.
        #[cfg(not(loom))]
        if crate::sync::holds_waited_lock() {
            return;
        }
        let h = self.inner();
        // SAFETY: forwarded from the caller.
        h.with_shard(|tc| unsafe { h.free(tc, p) });
    }

    /// Resizes an allocation, in place when possible.
    ///
    /// # Safety
    /// `ptr` is a live allocation of this heap made with `layout`. On
    /// success the old pointer must not be used; on error it stays valid.
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let own = crate::arena::own_provenance(ptr.as_ptr());
        if let Some(p) = self
            .inner()
            .resize_in_place(own, layout.align(), new_size, flags)
        {
            return NonNull::new(p).ok_or(AllocError::Layout);
        }
        let new_layout =
            Layout::from_size_align(new_size, layout.align()).map_err(|_| AllocError::Layout)?;
        let q = match self
            .inner()
            .alloc_growth(layout.size(), new_size, layout.align(), flags)
        {
            Some(q) => NonNull::new(q).ok_or(AllocError::Layout)?,
            None => self.alloc(new_layout, flags)?,
        };
        // SAFETY: both blocks are live and distinct; the copy is bounded by
        // both sizes; no lock is held.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        Ok(q)
    }

    /// Bytes usable at `ptr`, or `None` if the heap did not hand it out.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        self.inner().usable_size(ptr)
    }

    /// Whether `ptr` is an object of a reserve-backed slab (for tests).
    pub fn is_reserve_backed(&self, ptr: *const u8) -> bool {
        self.inner().is_reserve_backed(ptr)
    }

    /// Checks every structure of the heap against the invariants its
    /// modules document (buddy lists, page descriptors, slabs and their
    /// free lists, partial lists, direct mappings, free-page and reserve
    /// accounting); see `verify.rs`. Takes every lock of the heap and
    /// allocates nothing. Exact on a quiescent heap: no allocation or free
    /// of this heap in flight on another thread.
    #[cfg(not(loom))]
    pub fn verify(&self) -> Result<(), crate::verify::VerifyError> {
        self.inner().verify()
    }

    /// A non-allocating snapshot.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// Registers a shrinker that reclaim of this heap will call.
    pub fn register_shrinker(&self, s: &'static dyn Shrinker) -> Result<(), RegisterError> {
        self.inner().reclaim.shrinkers.register(s)
    }

    /// Removes a shrinker; when this returns, no reclaim calls it any more.
    /// Returns false if it was not registered.
    pub fn unregister_shrinker(&self, s: &'static dyn Shrinker) -> bool {
        self.inner().reclaim.shrinkers.unregister(s)
    }

    /// Sets (or clears) the function called when reclaim has failed.
    pub fn set_oom_handler(&self, h: Option<OomHandler>) {
        self.inner().reclaim.set_oom_handler(h);
    }

    /// Returns every free block of the heap to the OS now; returns the
    /// bytes purged. (The background reclaimer does this on a timer.)
    pub fn purge(&self) -> usize {
        self.inner().purge(0)
    }

    /// Detaches the slabs cached by this heap's shared caches, so that empty
    /// ones go back to the arena.
    pub fn flush_caches(&self) {
        let h = self.inner();
        for shard in &h.shards {
            shard.lock.lock();
            // SAFETY: the shard lock gives exclusive use of its cache.
            unsafe {
                (*shard.cache.get()).flush(h);
                shard.lock.unlock();
            }
        }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        if let Some(t) = self.reclaimer.take() {
            self.inner().reclaim.kswapd.request_stop();
            let _ = t.join();
        }
        // SAFETY: the handle is the heap's only owner; `&mut self` proves no
        // borrow of it (and so no allocation of it in use through it) lives.
        unsafe { HeapInner::destroy(self.inner) };
    }
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("budget_pages", &self.inner().budget_pages)
            .finish()
    }
}
