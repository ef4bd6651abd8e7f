//! The bound on concurrent reserve users (Piggin: limit the number of
//! tasks inside the reserve, the kernel's `pfmemalloc_wait` throttling).
//!
//! A thread enters the gate the first time it needs reserve pages. Inside a
//! memalloc scope it keeps its place until the outermost memalloc scope ends
//! (or the thread exits), so one flusher is never throttled against itself;
//! an explicit `MEMALLOC` allocation without a scope holds a place for that
//! allocation only. With `max_reserve_users` places taken, others wait on a
//! futex (never `parking_lot`: this runs inside `malloc`) for at most the
//! configured time, then fail with [`AllocError::ReserveBusy`].

use crate::error::AllocError;
use crate::stats::Counters;
use crate::sync::{wait_on, wake_all, AtomicU32, Ordering};
use core::cell::Cell;

pub(crate) struct ReserveGate {
    users: AtomicU32,
    max: u32,
    wait_ms: u32,
}

/// How the caller got through the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// No bound, or this thread's scope already holds a place.
    Free,
    /// A place for this allocation only: call [`ReserveGate::leave`] after.
    Once,
    /// A place held until the thread's memalloc scope ends.
    Scoped,
}

std::thread_local! {
    /// Address of the gate whose place this thread's memalloc scope holds.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

impl ReserveGate {
    pub(crate) fn new(max: u32, wait_ms: u32) -> Self {
        Self {
            users: AtomicU32::new(0),
            max,
            wait_ms,
        }
    }

    /// Threads holding a place now.
    pub(crate) fn users(&self) -> u32 {
        self.users.load(Ordering::Relaxed)
    }

    /// Takes a place, waiting up to the configured time.
    pub(crate) fn enter(&self, in_scope: bool, counters: &Counters) -> Result<Pass, AllocError> {
        if self.max == 0 {
            return Ok(Pass::Free);
        }
        let me = self as *const Self as usize;
        crate::sync::check_thread_local_allowed();
        let held = HELD.with(|h| h.get());
        if held == me {
            return Ok(Pass::Free);
        }
        let mut waited = false;
        let start = crate::diag::monotonic_millis();
        loop {
            let n = self.users.load(Ordering::Relaxed);
            if n < self.max {
                if self
                    .users
                    .compare_exchange(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    if in_scope && held == 0 {
                        HELD.with(|h| h.set(me));
                        return Ok(Pass::Scoped);
                    }
                    return Ok(Pass::Once);
                }
                continue;
            }
            if !waited {
                waited = true;
                counters.reserve_waits.fetch_add(1, Ordering::Relaxed);
            }
            let spent = crate::diag::monotonic_millis().saturating_sub(start);
            if spent >= self.wait_ms as u64 || cfg!(loom) {
                counters.reserve_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(AllocError::ReserveBusy);
            }
            wait_on(&self.users, n, self.wait_ms as u64 - spent);
        }
    }

    /// Gives back a place taken with [`Pass::Once`] or [`Pass::Scoped`].
    pub(crate) fn leave(&self) {
        self.users.fetch_sub(1, Ordering::Release);
        wake_all(&self.users);
    }
}

/// Ends this thread's scoped place, if it holds one (the outermost memalloc
/// scope ended, or the thread is exiting).
pub(crate) fn release_held() {
    crate::sync::check_thread_local_allowed();
    let held = HELD.with(|h| h.replace(0));
    if held != 0 {
        // SAFETY: a heap whose gate has users is never unmapped (its
        // metadata is leaked instead, see `HeapInner::destroy`), so the gate
        // is still valid.
        unsafe { (*(held as *const ReserveGate)).leave() };
    }
}
