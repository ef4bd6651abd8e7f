//! Growth runs: free room held above a buffer that `realloc` is growing,
//! so that its next growths happen in place without the heap lock.
//!
//! When a growth has to move a buffer into a page block of order `o`, the
//! heap takes a whole block of order `top` (`o + SPARE`, capped) and hands
//! out only its first `2^o` pages. The buddies above them, one block of
//! each order `o..top`, stay off the free lists, *held* for the buffer as a
//! run recorded in one of a few heap-wide slots. A later growth to order
//! `w <= top` claims the held blocks of orders `o..w` with one
//! compare-and-swap on the slot and then writes their descriptors: no lock,
//! no list, no split. Freeing the buffer takes the run back with one more
//! compare-and-swap, and the whole block of order `top` is freed (or
//! parked) at once. A `Vec` that doubles from 8 KiB to 1 MiB takes the heap
//! lock once, where it took it at every step.
//!
//! Invariants:
//!
//! * A slot is 0 (empty) or a run `(head, order, top)` with
//!   `order < top` (a growth to `top` empties the slot): the buffer's
//!   block is `[head, head + 2^order)`, and for each `o` in `order..top`
//!   the page `head + 2^o` heads a held block of order `o`, kind `CACHED`
//!   (so a free of it is caught), counted as allocated. Every run encodes
//!   to a non-zero value (`top > 0`).
//! * The held blocks of a run belong to whoever takes its value out of the
//!   slot: the buffer's holder growing it (a compare-and-swap to the new
//!   order hands it the blocks of orders `order..new`) or closing it (a
//!   compare-and-swap to 0), or anyone draining it (a swap to 0), who
//!   then frees them to the arena under the heap lock. One atomic
//!   value, so exactly one party gets each held block, and the holder's
//!   descriptor writes after a grow touch only blocks no one else can take.
//! * Only the buffer's holder changes a run's `order`, and only the holder
//!   of the block at `head` can open a run there: a holder that finds a
//!   slot naming its block's head and order has found its own run.
//! * A run's head has `FLAG_RUN` set while the run may exist, and its
//!   `class` field names the run's slot, so the holder finds it in one
//!   load. A flag without a run (the run was drained, and the
//!   slot may hold another run now) is cleared by the holder at its next
//!   growth or free: the slot's value, not the hint, decides.
//! * Memory held is bounded: at most `SLOTS` runs, a run's block at most
//!   1/64 of the budget (`max_top`), opened only while free pages stay at
//!   or above `high` (the caller checks); every reclaim round and purge
//!   drains them all (as the block cache).
//! * A run is opened only into a free slot, never by evicting another. An
//!   evicted run's buffer stays where it is, at the bottom of the run's
//!   top-order block, which cannot merge again while the buffer lives:
//!   with eviction, every growing buffer past the eighth took a fresh
//!   block of the top order and kept it split. A 256 MiB heap then had no
//!   free 2 MiB block after formatting one backtrace (whose symbolizer
//!   grows over a hundred buffers at once) with 95 % of its pages free. A
//!   buffer that finds the slots full moves into a block of its own size;
//!   runs that stay open hold at most `SLOTS` top-order blocks, until
//!   their buffers are freed or grow to the top, or a drain.

use crate::sync::{AtomicU64, Ordering};

/// Orders held above a moved buffer: room to grow 256 times in place.
pub(crate) const SPARE: usize = 8;
/// Number of slots (runs open at once, heap-wide).
pub(crate) const SLOTS: usize = 8;
/// A run's block is at most this fraction of the budget.
const BUDGET_SHARE: usize = 64;

/// A buffer at `head` of order `order`, with held blocks up to `top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) head: usize,
    pub(crate) order: usize,
    pub(crate) top: usize,
}

impl Run {
    fn pack(self) -> u64 {
        ((self.head as u64) << 16) | ((self.order as u64) << 8) | self.top as u64
    }

    fn unpack(v: u64) -> Self {
        Self {
            head: (v >> 16) as usize,
            order: ((v >> 8) & 0xff) as usize,
            top: (v & 0xff) as usize,
        }
    }

    /// The packed value without `top`: what a holder knows of its run.
    fn key(head: usize, order: usize) -> u64 {
        ((head as u64) << 8) | order as u64
    }
}

/// What [`GrowthRuns::grow`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grow {
    /// The held blocks of orders `from..to` are now the caller's.
    Grown,
    /// The run holds less than asked (`to > top`); it is unchanged.
    Beyond,
    /// No run of this buffer (it was drained, or never opened).
    NoRun,
}

/// The slots.
pub(crate) struct GrowthRuns {
    slots: [AtomicU64; SLOTS],
    /// The largest `top` allowed, from the budget; 0 disables runs.
    max_top: usize,
}

impl GrowthRuns {
    /// Empty slots for a heap of `budget_pages` pages.
    pub(crate) fn new(budget_pages: usize) -> Self {
        let max_top = crate::arena::buddy::largest_order_within_share(budget_pages, BUDGET_SHARE)
            .unwrap_or(0);
        Self {
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
            max_top,
        }
    }

    /// The `top` of a run for a buffer of `order`, if one may be opened.
    #[inline]
    pub(crate) fn top_for(&self, order: usize) -> Option<usize> {
        let top = (order + SPARE).min(self.max_top);
        (top > order).then_some(top)
    }

    /// Slot `slot` (a hint; any value is safe) and its value, if it holds
    /// the run of the buffer at `head` of `order`.
    #[inline]
    fn find(&self, slot: usize, head: usize, order: usize) -> Option<(&AtomicU64, u64)> {
        let s = self.slots.get(slot)?;
        let v = s.load(Ordering::Relaxed);
        (v != 0 && v >> 8 == Run::key(head, order)).then_some((s, v))
    }

    /// Whether a slot is free (a hint: another opener may take it first).
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.slots.iter().any(|s| s.load(Ordering::Relaxed) == 0)
    }

    /// Records `run`, whose held blocks the caller has set up (published
    /// here, with Release), in a free slot; returns the slot, or `None`
    /// (nothing recorded) when every slot is taken. No run is evicted for
    /// a new one: an evicted run's buffer, still live, would keep the
    /// run's whole top-order block from merging (see the module docs).
    pub(crate) fn open(&self, run: Run) -> Option<usize> {
        // (`top_for` made `order < top <= MAX_ORDER`; no check here: the
        // allocation path must not panic.)
        let v = run.pack();
        self.slots.iter().position(|s| {
            s.load(Ordering::Relaxed) == 0
                && s.compare_exchange(0, v, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Grows the run of the buffer at `head` (in slot `slot`, a hint) from
    /// order `from` to `to`, taking the held blocks of orders `from..to`
    /// for the caller (the buffer's holder).
    #[inline]
    pub(crate) fn grow(&self, slot: usize, head: usize, from: usize, to: usize) -> Grow {
        let Some((slot, v)) = self.find(slot, head, from) else {
            return Grow::NoRun;
        };
        let run = Run::unpack(v);
        if to > run.top {
            return Grow::Beyond;
        }
        // Grown to the top, the run holds nothing more: it ends.
        let grown = if to == run.top {
            0
        } else {
            Run { order: to, ..run }.pack()
        };
        if crate::model::fault_injected!(GrowthRunSplitGrow) {
            // Broken twin: a check and a separate store, so a drain between
            // them and this grow both take the blocks `from..to`.
            if slot.load(Ordering::Acquire) != v {
                return Grow::NoRun;
            }
            slot.store(grown, Ordering::Release);
            return Grow::Grown;
        }
        match slot.compare_exchange(v, grown, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => Grow::Grown,
            // Only the holder changes its run, so a failure means the run
            // was taken out of the slot.
            Err(_) => Grow::NoRun,
        }
    }

    /// Takes the run of the buffer at `head` of `order` out of slot `slot`
    /// (a hint): its held blocks are now the caller's (the buffer's holder).
    #[inline]
    pub(crate) fn close(&self, slot: usize, head: usize, order: usize) -> Option<Run> {
        let (slot, v) = self.find(slot, head, order)?;
        slot.compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Run::unpack(v))
    }

    /// Empties every slot; `release` gets each run taken out (its held
    /// blocks, to free).
    pub(crate) fn drain(&self, mut release: impl FnMut(Run)) {
        for s in &self.slots {
            if s.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let v = s.swap(0, Ordering::Acquire);
            if v != 0 {
                release(Run::unpack(v));
            }
        }
    }

    /// The runs open now (for `verify`; exact only while no
    /// growth, free or drain is in flight).
    #[cfg(not(loom))]
    pub(crate) fn for_each(&self, mut f: impl FnMut(Run)) {
        for s in &self.slots {
            let v = s.load(Ordering::Acquire);
            if v != 0 {
                f(Run::unpack(v));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::arena::buddy::MAX_ORDER;

    const BIG: usize = 6 << 20; // 24 GiB of pages: every order allowed

    #[test]
    fn top_follows_the_spare_and_the_budget() {
        let big = GrowthRuns::new(BIG);
        assert_eq!(big.top_for(1), Some(1 + SPARE));
        assert_eq!(big.top_for(4), Some(MAX_ORDER));
        assert_eq!(big.top_for(MAX_ORDER), None);
        // 128 MiB: blocks up to 2 MiB (order 9).
        let mid = GrowthRuns::new(32768);
        assert_eq!(mid.top_for(3), Some(9));
        assert_eq!(mid.top_for(9), None);
        // 16 MiB: 64 pages, order 6 at most.
        assert_eq!(GrowthRuns::new(4096).top_for(1), Some(6));
        assert_eq!(GrowthRuns::new(0).top_for(0), None);
    }

    #[test]
    fn a_run_grows_to_its_top_and_closes_once() {
        let r = GrowthRuns::new(BIG);
        let run = Run {
            head: 4096,
            order: 1,
            top: 9,
        };
        let slot = r.open(run).expect("a free slot");
        assert_eq!(r.grow(slot, 4096, 1, 3), Grow::Grown);
        // The holder's view is now order 3: order 1 names no run.
        assert_eq!(r.grow(slot, 4096, 1, 4), Grow::NoRun);
        assert_eq!(r.grow(slot, 4096, 3, 10), Grow::Beyond);
        assert_eq!(r.grow(slot, 8192, 3, 4), Grow::NoRun);
        // A wrong hint finds nothing (and is harmless).
        assert_eq!(r.grow(slot + 1, 4096, 3, 4), Grow::NoRun);
        assert_eq!(r.close(SLOTS, 4096, 3), None);
        assert_eq!(r.close(slot, 4096, 3), Some(Run { order: 3, ..run }));
        assert_eq!(r.close(slot, 4096, 3), None);
        assert_eq!(r.grow(slot, 4096, 3, 4), Grow::NoRun);
        // Grown to its top, a run ends and frees its slot.
        assert_eq!(r.open(run), Some(slot));
        assert_eq!(r.grow(slot, 4096, 1, 9), Grow::Grown);
        assert_eq!(r.close(slot, 4096, 9), None);
        let mut open = 0;
        r.for_each(|_| open += 1);
        assert_eq!(open, 0);
    }

    #[test]
    fn a_full_table_refuses_and_a_drain_takes_everything() {
        let r = GrowthRuns::new(BIG);
        let run = |head| Run {
            head,
            order: 0,
            top: 2,
        };
        for i in 0..SLOTS {
            assert!(r.has_room());
            assert_eq!(r.open(run(i * 4)), Some(i));
        }
        // Full: a new run is refused and every open run stays.
        assert!(!r.has_room());
        assert_eq!(r.open(run(1000)), None);
        assert_eq!(r.grow(0, 1000, 0, 1), Grow::NoRun);
        for i in 0..SLOTS {
            assert_eq!(r.grow(i, i * 4, 0, 1), Grow::Grown);
        }
        // Closing one makes room again.
        assert_eq!(
            r.close(3, 12, 1),
            Some(Run {
                order: 1,
                ..run(12)
            })
        );
        assert!(r.has_room());
        assert_eq!(r.open(run(1000)), Some(3));
        let mut drained = Vec::new();
        r.drain(|x| drained.push(x.head));
        drained.sort_unstable();
        let mut want: Vec<usize> = (0..SLOTS)
            .map(|i| i * 4)
            .filter(|&h| h != 12)
            .chain([1000])
            .collect();
        want.sort_unstable();
        assert_eq!(drained, want);
        let mut left = 0;
        r.for_each(|_| left += 1);
        assert_eq!(left, 0);
    }
}
