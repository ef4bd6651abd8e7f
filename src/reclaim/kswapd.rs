//! The background reclaimer (the kernel's `kswapd`): a thread that sleeps
//! until free pages fall below `low`, then reclaims until they reach
//! `high`, and returns free memory to the OS on a timer.
//!
//! Wake-up protocol (no lost wake-ups): an allocator that sees free pages
//! below `low` bumps `seq` and wakes the futex. The reclaimer reads `seq`
//! *before* it checks the free count, and sleeps only while `seq` still has
//! the value it read; a wake-up between its check and its sleep changes
//! `seq`, so the futex wait returns at once. Waking costs one relaxed load
//! when no reclaimer runs, and never allocates. The decide-to-sleep step is
//! `HeapInner::kswapd_check`; `loom-tests/tests/kswapd_wakeup.rs` checks
//! the protocol with this code.

use crate::sync::{wait_on, wake_all, AtomicBool, AtomicU32, Ordering};

pub(crate) struct Kswapd {
    /// Bumped by every wake-up.
    pub(crate) seq: AtomicU32,
    /// Bumped when a background round made progress (throttled direct
    /// reclaimers wait on it).
    pub(crate) progress: AtomicU32,
    pub(crate) running: AtomicBool,
    pub(crate) stop: AtomicBool,
}

impl Kswapd {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            progress: AtomicU32::new(0),
            running: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Wakes the reclaimer, if one runs.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.running.load(Ordering::Relaxed) {
            // Release: a reclaimer that reads the new `seq` (Acquire) also
            // reads the free count the waker changed before it called.
            let order =
                crate::model::fault_ordering!(WeakKswapdWake, Ordering::Release, Ordering::Relaxed);
            self.seq.fetch_add(1, order);
            wake_all(&self.seq);
        }
    }

    /// Sleeps until woken or `ms` pass, unless woken since `seen` was read.
    pub(crate) fn sleep(&self, seen: u32, ms: u64) {
        if self.seq.load(Ordering::Acquire) == seen && !self.stop.load(Ordering::Acquire) {
            wait_on(&self.seq, seen, ms);
        }
    }

    /// Asks the thread to stop and wakes it.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.seq.fetch_add(1, Ordering::Release);
        wake_all(&self.seq);
    }

    pub(crate) fn note_progress(&self) {
        self.progress.fetch_add(1, Ordering::Release);
        wake_all(&self.progress);
    }
}
