//! One freed page block per order for the big buddy orders, shared by all
//! threads of a heap: a program that allocates and frees 512 KiB–4 MiB
//! buffers in a loop skips the heap lock and the buddy split and merge
//! (730–870 instructions a pair without it, and a cache miss on a buddy's
//! descriptor for each order merged).
//!
//! The thread caches park blocks of orders 4..=6 (`tcache.rs`); bigger
//! blocks are parked here instead, at heap level, because a parked block
//! counts as allocated: a cache per thread could strand megabytes in idle
//! threads, where reclaim cannot reach them, while this one is emptied by
//! every reclaim round and purge.
//!
//! Invariants:
//!
//! * a slot is 0 (empty) or a page index + 1 of a block of the slot's
//!   order whose first page's kind is `CACHED` (so a second free of it is
//!   caught) and which is not reserve-backed;
//! * a block is in at most one place: a slot, a caller's hands, or the
//!   arena. `park` publishes with a compare-and-swap from empty (Release,
//!   after the kind is set); `take` and `drain` empty a slot with one swap
//!   (Acquire), so exactly one of any racing takers gets the block;
//! * at most one block per order, so at most 7.5 MiB is held; an order is
//!   parked only if its block is at most 1/64 of the budget (`max_order`),
//!   so a small heap holds at most 1/32 of its budget here, and blocks are
//!   parked only while free pages are at or above `low`: below it they go
//!   back to the free count, where the watermarks decide who gets them.

use crate::sync::{AtomicU32, Ordering};

/// Smallest order parked here (512 KiB).
pub(crate) const MIN_ORDER: usize = 7;
/// Largest order parked here (4 MiB, the largest buddy block).
pub(crate) const MAX_ORDER: usize = crate::arena::buddy::MAX_ORDER;
/// A block is parked only if it is at most this fraction of the budget.
const BUDGET_SHARE: usize = 64;
/// Number of slots.
pub(crate) const SLOTS: usize = MAX_ORDER - MIN_ORDER + 1;

/// The slots, one per order in `MIN_ORDER..=MAX_ORDER`.
pub(crate) struct BlockCache {
    slots: [AtomicU32; SLOTS],
    /// The largest order parked, from the budget; below `MIN_ORDER` when
    /// the budget is too small for any.
    max_order: usize,
}

impl BlockCache {
    /// Empty slots for a heap of `budget_pages` pages.
    pub(crate) fn new(budget_pages: usize) -> Self {
        let max_order = crate::arena::buddy::largest_order_within_share(budget_pages, BUDGET_SHARE)
            .unwrap_or(0);
        Self {
            slots: core::array::from_fn(|_| AtomicU32::new(0)),
            max_order,
        }
    }

    /// Whether blocks of `order` are parked here.
    #[inline]
    pub(crate) fn caches(&self, order: usize) -> bool {
        (MIN_ORDER..=self.max_order).contains(&order)
    }

    /// Takes the parked block of `order`, if any; returns its page index.
    /// The caller sets its kind back from `CACHED`.
    #[inline]
    pub(crate) fn take(&self, order: usize) -> Option<usize> {
        if !self.caches(order) {
            return None;
        }
        let slot = &self.slots[order - MIN_ORDER];
        // A cheap look first, so an empty slot costs no locked instruction.
        if slot.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let v = if crate::model::fault_injected!(BlockCacheSplitTake) {
            // Broken twin: a load and a separate store, so two takers can
            // both see the same block.
            let v = slot.load(Ordering::Acquire);
            slot.store(0, Ordering::Relaxed);
            v
        } else {
            slot.swap(0, Ordering::Acquire)
        };
        (v != 0).then(|| v as usize - 1)
    }

    /// Parks the block at page `idx` of `order`; false if the order is not
    /// cached here or its slot is taken. The caller has already set the
    /// block's kind to `CACHED` and restores it on false.
    #[inline]
    pub(crate) fn park(&self, idx: usize, order: usize) -> bool {
        if !self.caches(order) {
            return false;
        }
        self.slots[order - MIN_ORDER]
            .compare_exchange(0, idx as u32 + 1, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Empties every slot; `release(idx)` gets each block taken out.
    pub(crate) fn drain(&self, mut release: impl FnMut(usize)) {
        for slot in &self.slots {
            let v = slot.swap(0, Ordering::Acquire);
            if v != 0 {
                release(v as usize - 1);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parked_orders_follow_the_budget() {
        // 24 GiB: every order from 512 KiB to 4 MiB.
        let big = BlockCache::new(6 << 20);
        assert!((MIN_ORDER..=MAX_ORDER).all(|o| big.caches(o)));
        assert!(!big.caches(MIN_ORDER - 1) && !big.caches(MAX_ORDER + 1));
        // 128 MiB = 32768 pages: blocks up to 512 pages (2 MiB).
        let mid = BlockCache::new(32768);
        assert!(mid.caches(9) && !mid.caches(10));
        // 16 MiB: 4096 / 64 = 64 pages, below the smallest order parked.
        let small = BlockCache::new(4096);
        assert!((0..=MAX_ORDER).all(|o| !small.caches(o)));
        assert!(!small.park(0, MIN_ORDER));
        assert_eq!(BlockCache::new(0).max_order, 0);
    }
}
