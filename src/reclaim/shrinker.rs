//! Shrinkers: the application's caches, asked to give memory back.
//!
//! The registry is a fixed array (no allocation) behind a [`RawLock`].
//! Reclaim only *tries* the lock (as the kernel's `shrink_slab` does with
//! `shrinker_rwsem`): if registration holds it, that round skips shrinkers
//! and the next round retries. Reclaim copies the list to the stack and
//! calls shrinkers with the lock released, counted in `callers`;
//! [`ShrinkerRegistry::unregister`] waits until no reclaim that might still
//! call the removed shrinker is running, so a shrinker may be dropped after
//! it returns.

use crate::sync::{AtomicUsize, Ordering, RacyCell, RawLock};

/// Most shrinkers per heap.
pub const MAX_SHRINKERS: usize = 32;

/// What one call to [`Shrinker::scan`] is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShrinkControl {
    /// How many objects to scan (free what you can of them).
    pub nr_to_scan: usize,
    /// The buddy order of the request that triggered reclaim (0 for
    /// background reclaim).
    pub order: usize,
    /// Whether the shrinker may allocate while it works. False in the
    /// recursive round run when even the reserve is empty: an allocation
    /// there would fail.
    pub may_allocate: bool,
}

/// A shrinker's answer to [`Shrinker::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShrinkResult {
    /// Objects freed.
    Freed(usize),
    /// "Stop, I would deadlock" (the kernel's `SHRINK_STOP`): a lock it
    /// needs is held, or it cannot work without allocating.
    Stop,
}

/// A cache that can give memory back under pressure.
///
/// Both methods run inside reclaim: they may be called from any thread
/// that is allocating, with the memalloc right set (so their own
/// allocations can use the reserve, and never recurse into reclaim).
pub trait Shrinker: Sync {
    /// How many objects could be freed now (an estimate is fine).
    fn count(&self) -> usize;
    /// Frees up to `sc.nr_to_scan` objects.
    fn scan(&self, sc: &ShrinkControl) -> ShrinkResult;
}

/// Why a shrinker could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// [`MAX_SHRINKERS`] are registered already.
    Full,
    /// This shrinker is registered already.
    Duplicate,
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RegisterError::Full => "lifeboat: the shrinker registry is full",
            RegisterError::Duplicate => "lifeboat: the shrinker is registered already",
        })
    }
}

impl std::error::Error for RegisterError {}

pub(crate) type ShrinkerRef = &'static dyn Shrinker;

pub(crate) struct ShrinkerRegistry {
    lock: RawLock,
    list: [RacyCell<Option<ShrinkerRef>>; MAX_SHRINKERS],
    /// Reclaim rounds that may be calling shrinkers from a snapshot.
    callers: AtomicUsize,
}

impl ShrinkerRegistry {
    pub(crate) fn new() -> Self {
        Self {
            lock: RawLock::new(),
            list: core::array::from_fn(|_| RacyCell::new(None)),
            callers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn register(&self, s: ShrinkerRef) -> Result<(), RegisterError> {
        self.lock.with(|| {
            let mut free = None;
            for (i, slot) in self.list.iter().enumerate() {
                // SAFETY: under the registry lock.
                match unsafe { slot.get() } {
                    Some(x) if core::ptr::addr_eq(x, s) => return Err(RegisterError::Duplicate),
                    None if free.is_none() => free = Some(i),
                    _ => {}
                }
            }
            let i = free.ok_or(RegisterError::Full)?;
            // SAFETY: under the registry lock.
            unsafe { self.list[i].set(Some(s)) };
            Ok(())
        })
    }

    /// Removes `s`; returns false if it was not registered. On return no
    /// reclaim round can still call it.
    pub(crate) fn unregister(&self, s: ShrinkerRef) -> bool {
        let found = self.lock.with(|| {
            for slot in &self.list {
                // SAFETY: under the registry lock.
                unsafe {
                    if slot.get().is_some_and(|x| core::ptr::addr_eq(x, s)) {
                        slot.set(None);
                        return true;
                    }
                }
            }
            false
        });
        // Wait out rounds working from a snapshot that may hold `s`. This
        // runs outside the allocation path, so sleeping is fine.
        while self.callers.load(Ordering::Acquire) != 0 {
            #[cfg(not(loom))]
            std::thread::sleep(std::time::Duration::from_micros(100));
            #[cfg(loom)]
            loom::thread::yield_now();
        }
        found
    }

    /// Copies the registered shrinkers into `out` and counts the caller as
    /// a user until [`ShrinkerRegistry::done`]; `None` if registration
    /// holds the lock now (skip this round).
    pub(crate) fn snapshot(&self, out: &mut [Option<ShrinkerRef>; MAX_SHRINKERS]) -> Option<usize> {
        if !self.lock.try_lock() {
            return None;
        }
        self.callers.fetch_add(1, Ordering::AcqRel);
        let mut n = 0;
        for slot in &self.list {
            // SAFETY: under the registry lock.
            if let Some(s) = unsafe { slot.get() } {
                out[n] = Some(s);
                n += 1;
            }
        }
        // SAFETY: taken by try_lock above.
        unsafe { self.lock.unlock() };
        Some(n)
    }

    /// Ends a use started by a successful [`ShrinkerRegistry::snapshot`].
    pub(crate) fn done(&self) {
        self.callers.fetch_sub(1, Ordering::AcqRel);
    }
}
