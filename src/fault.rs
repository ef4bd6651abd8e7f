//! Fault injection for tests: make the N-th call of a fail point on the
//! calling thread fail, to check that every failure of the page source or
//! the arena surfaces as an error and leaves the heap consistent.
//!
//! The state is per thread (const thread-locals without `Drop`, readable at
//! any time, even from other TLS destructors), so tests running in parallel
//! do not interfere. Every hook is on a slow path (a system call, or a trip
//! to the buddy lists under the heap lock). Until some thread of the process
//! arms or resets a point, a hook is one relaxed load of a global flag and
//! touches no thread-local: a hook runs under the heap lock, where resolving
//! a thread-local in a shared library may call into the dynamic loader,
//! which allocates (see `sync::HeldCount`). Under `--cfg loom` the hooks
//! are compiled out.
//!
//! Reached through [`crate::model`] (`fail_nth`, `fail_calls`, ...), which
//! is outside the semver promise.

/// A place where an injected failure can be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FailPoint {
    /// `os::reserve`: an `mmap` of a heap, a direct mapping (huge request).
    OsReserve = 0,
    /// `os::remap`: an `mremap` growing or shrinking a direct mapping.
    OsRemap = 1,
    /// `Arena::alloc`: taking a buddy block (slab carving,
    /// large allocations, realloc growth blocks).
    ArenaAlloc = 2,
    /// `Arena::charge`: charging the budget for a direct mapping (a huge
    /// allocation, a huge growth, the extra length of a cached mapping).
    ArenaCharge = 3,
}

impl FailPoint {
    /// Every fail point.
    pub const ALL: [FailPoint; 4] = [
        FailPoint::OsReserve,
        FailPoint::OsRemap,
        FailPoint::ArenaAlloc,
        FailPoint::ArenaCharge,
    ];
}

#[cfg(not(loom))]
const POINTS: usize = FailPoint::ALL.len();

#[cfg(not(loom))]
mod imp {
    use super::{FailPoint, POINTS};
    use core::cell::Cell;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// Set by the first `arm` in the process; never cleared.
    static IN_USE: AtomicBool = AtomicBool::new(false);

    struct State {
        /// Calls of each point since it was last armed or reset.
        calls: [Cell<u32>; POINTS],
        /// The call that fails (1-based); 0 = none.
        nth: [Cell<u32>; POINTS],
        /// Injected failures so far.
        hits: [Cell<u32>; POINTS],
    }

    std::thread_local! {
        static STATE: State = const {
            State {
                calls: [const { Cell::new(0) }; POINTS],
                nth: [const { Cell::new(0) }; POINTS],
                hits: [const { Cell::new(0) }; POINTS],
            }
        };
    }

    /// Counts a call of `p`; true if this call must fail.
    #[inline]
    pub(crate) fn hit(p: FailPoint) -> bool {
        if !IN_USE.load(Ordering::Relaxed) {
            return false;
        }
        let i = p as usize;
        STATE
            .try_with(|s| {
                let c = s.calls[i].get().saturating_add(1);
                s.calls[i].set(c);
                if c == s.nth[i].get() {
                    s.hits[i].set(s.hits[i].get().saturating_add(1));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false)
    }

    pub(crate) fn arm(p: FailPoint, n: u32) {
        IN_USE.store(true, Ordering::Relaxed);
        let i = p as usize;
        let _ = STATE.try_with(|s| {
            s.calls[i].set(0);
            s.nth[i].set(n);
            s.hits[i].set(0);
        });
    }

    pub(crate) fn calls(p: FailPoint) -> u32 {
        STATE.try_with(|s| s.calls[p as usize].get()).unwrap_or(0)
    }

    pub(crate) fn hits(p: FailPoint) -> u32 {
        STATE.try_with(|s| s.hits[p as usize].get()).unwrap_or(0)
    }
}

#[cfg(loom)]
mod imp {
    use super::FailPoint;

    #[inline(always)]
    pub(crate) fn hit(_: FailPoint) -> bool {
        false
    }
    pub(crate) fn arm(_: FailPoint, _: u32) {}
    pub(crate) fn calls(_: FailPoint) -> u32 {
        0
    }
    pub(crate) fn hits(_: FailPoint) -> u32 {
        0
    }
}

pub(crate) use imp::hit;

/// Makes the `n`-th call of `p` on this thread, counted from now, fail
/// (`n == 0` disarms it). Resets the call and hit counters of `p`.
pub fn fail_nth(p: FailPoint, n: u32) {
    imp::arm(p, n);
}

/// Calls of `p` on this thread since it was last armed or reset. (Calls are
/// counted from the first [`fail_nth`] or [`fail_reset`] in the process.)
pub fn fail_calls(p: FailPoint) -> u32 {
    imp::calls(p)
}

/// Failures injected at `p` on this thread since it was last armed.
pub fn fail_hits(p: FailPoint) -> u32 {
    imp::hits(p)
}

/// Disarms every fail point of this thread and resets its counters.
pub fn fail_reset() {
    for p in FailPoint::ALL {
        imp::arm(p, 0);
    }
}
