//! Capture (Whitcroft's capture list, with KOSAKI's limits; today's
//! `capture_control`): a request above order 3 that is in direct reclaim
//! names the order it wants, and a free whose buddy merge reaches that order
//! hands the block over directly, instead of putting it on a free list where
//! concurrent small allocations would split it again.
//!
//! Invariants (all under the heap lock):
//!
//! * a slot is registered only by a requester in direct reclaim, for one
//!   order above `COSTLY_ORDER`, and unregistered when its reclaim ends;
//! * a slot holds at most one block: a requester never hoards memory, and
//!   nothing beyond the block it asked for is kept back;
//! * a captured block leaves the free count as an allocation would, and only
//!   if the count stays at or above the requester's mark (`floor`), so
//!   capture never lets a request past its watermark;
//! * a block freed while a slot waits goes to exactly one place: the slot
//!   or the free lists. The requester's polls of its slot are hints only:
//!   it takes whatever the slot holds at `unregister`, under the lock, so a
//!   block captured after its last poll is not lost (checked by
//!   `loom-tests/tests/capture.rs`, whose twin trusts the poll).

use super::desc::NIL;
use crate::sync::{AtomicUsize, Ordering, RacyCell};

/// Orders above this are "costly" (the kernel's `PAGE_ALLOC_COSTLY_ORDER`).
pub(crate) const COSTLY_ORDER: usize = 3;
/// Requesters that may wait for a capture at once.
pub(crate) const CAPTURE_SLOTS: usize = 8;
const EMPTY: u8 = u8::MAX;

pub(crate) struct Capture {
    want: [RacyCell<u8>; CAPTURE_SLOTS],
    floor: [RacyCell<usize>; CAPTURE_SLOTS],
    got: [RacyCell<u32>; CAPTURE_SLOTS],
    /// Registered slots; lets the free path skip the scan when zero.
    active: AtomicUsize,
    pub(crate) enabled: bool,
}

impl Capture {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            want: core::array::from_fn(|_| RacyCell::new(EMPTY)),
            floor: core::array::from_fn(|_| RacyCell::new(0)),
            got: core::array::from_fn(|_| RacyCell::new(NIL)),
            active: AtomicUsize::new(0),
            enabled,
        }
    }

    /// Registers a requester for a block of `order`, to be captured only
    /// while the free count stays at or above `floor`. `None` if capture
    /// is off, the order is not costly, or every slot is taken.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn register(&self, order: usize, floor: usize) -> Option<usize> {
        if !self.enabled || order <= COSTLY_ORDER {
            return None;
        }
        for i in 0..CAPTURE_SLOTS {
            // SAFETY: under the heap lock.
            unsafe {
                if self.want[i].get() == EMPTY {
                    self.want[i].set(order as u8);
                    self.floor[i].set(floor);
                    self.got[i].set(NIL);
                    self.active.fetch_add(1, Ordering::Relaxed);
                    return Some(i);
                }
            }
        }
        None
    }

    /// Ends a registration; returns the captured block, if any.
    ///
    /// # Safety
    /// The caller holds the heap lock and registered `slot`.
    pub(crate) unsafe fn unregister(&self, slot: usize) -> Option<usize> {
        // SAFETY: under the heap lock.
        unsafe {
            let got = self.got[slot].get();
            self.want[slot].set(EMPTY);
            self.got[slot].set(NIL);
            self.active.fetch_sub(1, Ordering::Relaxed);
            (got != NIL).then_some(got as usize)
        }
    }

    /// Whether a block waits in `slot`.
    ///
    /// # Safety
    /// The caller holds the heap lock and registered `slot`.
    pub(crate) unsafe fn captured(&self, slot: usize) -> bool {
        // SAFETY: under the heap lock.
        unsafe { self.got[slot].get() != NIL }
    }

    /// Called by the free path for a block of `order` at `idx` about to go on
    /// a list, when the free count would be `free_after` if it were captured.
    /// Returns true if a waiting requester took it.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    #[inline]
    pub(crate) unsafe fn offer(&self, idx: usize, order: usize, free_after: usize) -> bool {
        if self.active.load(Ordering::Relaxed) == 0 || order <= COSTLY_ORDER {
            return false;
        }
        for i in 0..CAPTURE_SLOTS {
            // SAFETY: under the heap lock.
            unsafe {
                if self.want[i].get() as usize == order
                    && self.got[i].get() == NIL
                    && free_after >= self.floor[i].get()
                {
                    self.got[i].set(idx as u32);
                    return true;
                }
            }
        }
        false
    }
}
