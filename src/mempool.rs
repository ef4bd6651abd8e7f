//! [`Mempool`]: elements preallocated for the freeing path (Piggin's
//! preallocation; the kernel's `mempool_t`).
//!
//! `alloc` tries, in order: an ordinary allocation that must not touch the
//! reserve and must not retry (`NOMEMALLOC | NORETRY | NOWARN`); an element
//! from the pool; and then waits, bounded, for an element to come back.
//! `free` refills the pool while it holds fewer than `min_nr` elements.
//! So `min_nr` concurrent users always make progress, however exhausted the
//! heap is, as long as they free what they take. The pool is filled with
//! its creator's rights: built inside a memalloc scope below `min`, its
//! elements are reserve-backed, go to any caller of `alloc`, and keep
//! their reserve pages until the pool is dropped.
//!
//! The pool's vector is allocated once, with room for `min_nr`, and never
//! grows; waiting uses `parking_lot` (this is not the allocation path of
//! the allocator itself), through `crate::sync`, so that under `--cfg loom`
//! the same code runs on loom's mutex and condition variable
//! (`loom-tests/tests/mempool_wakeup.rs`).
//!
//! Wake-up protocol (no lost wake-ups): a waiter checks the pool and goes
//! to sleep under the pool's mutex; `free` puts the element back under the
//! same mutex *before* it notifies, so a waiter either finds the element or
//! is already asleep when the notification comes.

use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::heap::Heap;
use crate::target::Target;
use core::alloc::Layout;
use core::ptr::NonNull;
// The counters are statistics only (never read by the protocol), so they
// stay plain atomics even under loom, where they would only add
// interleavings to explore.
use crate::sync::{Condvar, Mutex};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counters of a [`Mempool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolStats {
    /// Elements in the pool now.
    pub pooled: usize,
    /// Allocations the heap served directly.
    pub direct: usize,
    /// Allocations served from the pool.
    pub hits: usize,
    /// Allocations that had to wait for an element.
    pub waits: usize,
    /// Waits that ended without an element.
    pub timeouts: usize,
}

/// A pool of preallocated elements of one layout (see the module docs).
pub struct Mempool<'h> {
    target: Target<'h>,
    layout: Layout,
    min_nr: usize,
    pool: Mutex<Vec<NonNull<u8>>>,
    returned: Condvar,
    direct: AtomicUsize,
    hits: AtomicUsize,
    waits: AtomicUsize,
    timeouts: AtomicUsize,
}

// SAFETY: the pooled pointers are owned by the pool and only moved under its
// mutex; the heaps behind `Target` are Sync.
unsafe impl Send for Mempool<'_> {}
// SAFETY: as above.
unsafe impl Sync for Mempool<'_> {}

/// How long [`Mempool::alloc`] waits for an element.
pub const MEMPOOL_DEFAULT_WAIT: Duration = Duration::from_secs(5);

#[cfg(not(loom))]
impl Mempool<'static> {
    /// A pool on the process heap, with `min_nr` elements allocated now.
    pub fn new(min_nr: usize, layout: Layout) -> Result<Self, AllocError> {
        Self::build(Target::Process, min_nr, layout)
    }
}

impl<'h> Mempool<'h> {
    /// A pool on a private heap, with `min_nr` elements allocated now.
    pub fn in_heap(heap: &'h Heap, min_nr: usize, layout: Layout) -> Result<Self, AllocError> {
        Self::build(Target::Heap(heap), min_nr, layout)
    }

    fn build(target: Target<'h>, min_nr: usize, layout: Layout) -> Result<Self, AllocError> {
        let pool = Mempool {
            target,
            layout,
            min_nr,
            pool: Mutex::new(Vec::with_capacity(min_nr)),
            returned: Condvar::new(),
            direct: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            waits: AtomicUsize::new(0),
            timeouts: AtomicUsize::new(0),
        };
        {
            let mut v = pool.pool.lock();
            for _ in 0..min_nr {
                // Filling may use the caller's rights (a flusher may build
                // its pool inside a memalloc scope). Elements filled from
                // the reserve then go to any caller of `alloc`: the pool
                // serves the freeing path, whose users it trusts with them
                // (README, "Mempool").
                v.push(pool.target.alloc(layout, AllocFlags::NORMAL)?);
            }
        }
        Ok(pool)
    }

    /// The layout of the elements.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// An element, waiting up to [`MEMPOOL_DEFAULT_WAIT`] if the heap and
    /// the pool are both empty.
    pub fn alloc(&self) -> Result<NonNull<u8>, AllocError> {
        self.alloc_timeout(MEMPOOL_DEFAULT_WAIT)
    }

    /// An element, waiting up to `timeout` if the heap and the pool are
    /// both empty; [`AllocError::Timeout`] after that.
    pub fn alloc_timeout(&self, timeout: Duration) -> Result<NonNull<u8>, AllocError> {
        let flags = AllocFlags::NOMEMALLOC | AllocFlags::NORETRY | AllocFlags::NOWARN;
        if let Ok(p) = self.target.alloc(self.layout, flags) {
            self.direct.fetch_add(1, Ordering::Relaxed);
            return Ok(p);
        }
        let deadline = Instant::now() + timeout;
        let mut v = self.pool.lock();
        let mut waited = false;
        loop {
            if let Some(p) = v.pop() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(p);
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            if self.returned.wait_until(&mut v, deadline).timed_out() && v.is_empty() {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(AllocError::Timeout);
            }
        }
    }

    /// Gives an element back: to the pool while it is short, else to the heap.
    ///
    /// # Safety
    /// `p` came from this pool's `alloc` and is not used afterwards.
    pub unsafe fn free(&self, p: NonNull<u8>) {
        let mut v = self.pool.lock();
        if v.len() < self.min_nr {
            if crate::model::fault_injected!(MempoolNotifyEarly) {
                // The broken twin: notify first, put the element back after.
                drop(v);
                self.returned.notify_one();
                self.pool.lock().push(p);
                return;
            }
            v.push(p); // within the capacity reserved at creation: no allocation
            drop(v);
            self.returned.notify_one();
            return;
        }
        drop(v);
        // SAFETY: forwarded from the caller.
        unsafe { self.target.dealloc(p, self.layout) };
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> MempoolStats {
        MempoolStats {
            pooled: self.pool.lock().len(),
            direct: self.direct.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        for p in self.pool.get_mut().drain(..) {
            // SAFETY: pooled elements came from the target and are unused.
            unsafe { self.target.dealloc(p, self.layout) };
        }
    }
}

impl core::fmt::Debug for Mempool<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mempool")
            .field("layout", &self.layout)
            .field("min_nr", &self.min_nr)
            .field("stats", &self.stats())
            .finish()
    }
}
