//! Growth runs (`growth_run.rs`: room held above a buffer that `realloc`
//! grows, in heap-wide slots; the holder grows and closes its run with a
//! compare-and-swap, reclaim drains every slot with a swap).
//!
//! The slots' code is the shipped one; the run's held blocks (orders 1, 2
//! and 3 above a buffer of order 1, top 4) get a loom cell each. T1 is the
//! buffer's holder: it grows the buffer to order 2, then 3, and frees it
//! (closing the run), writing each held block it takes. T2 is reclaim: it
//! drains the slots and writes the held blocks of each run it takes out.
//!
//! Checked: every held block is taken by exactly one party (the holder or
//! the drain), never both and never neither; a block is written only by
//! its taker, ordered after the run was set up (loom's cells report a
//! concurrent or unordered access).
//!
//! Twin: `Fault::GrowthRunSplitGrow` — a grow checks the slot and then
//! stores in two steps, so a drain in between and the holder both take the
//! block of order 1.
#![cfg(loom)]

use lifeboat::model::{Fault, RunSlots};
use lifeboat_loom_tests::{check, check_catches, note};
use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;

const DRAIN_FIRST: &str = "where the drain took the run before the holder grew it";
const GROWN_THEN_DRAINED: &str = "where the holder grew the run and the drain took the rest";
const CLOSED_FIRST: &str = "where the holder closed the run before the drain";

const HEAD: usize = 0;
const ORDER: usize = 1;
const TOP: usize = 4;

struct Shared {
    slots: RunSlots,
    /// The held blocks of orders 1..4, by order - 1: who took each.
    held: [UnsafeCell<usize>; 3],
}

// SAFETY: the cells are accessed only through loom's tracked accessors; a
// held block's cell is written only by whoever took the block, which the
// model checks.
unsafe impl Sync for Shared {}

impl Shared {
    /// Takes the held block of order `o` as `who`; returns `o`.
    fn take(&self, o: usize, who: usize) -> usize {
        // SAFETY: loom checks that no other access is concurrent.
        self.held[o - ORDER].with_mut(|p| unsafe { *p = who });
        o
    }
}

fn model() {
    let s = Arc::new(Shared {
        slots: RunSlots::new(),
        held: [UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)],
    });
    // The opener sets up the held blocks, then publishes the run.
    for o in ORDER..TOP {
        s.take(o, 100);
    }
    let slot = s.slots.open(HEAD, ORDER, TOP).expect("a free slot");

    let s1 = s.clone();
    let holder = thread::spawn(move || {
        let mut taken = Vec::new();
        let mut order = ORDER;
        for to in [2, 3] {
            if !s1.slots.grow(slot, HEAD, order, to) {
                break;
            }
            taken.extend((order..to).map(|o| s1.take(o, 1)));
            order = to;
        }
        match s1.slots.close(slot, HEAD, order) {
            Some((from, top)) => {
                assert_eq!((from, top), (order, TOP));
                taken.extend((from..top).map(|o| s1.take(o, 1)));
            }
            None if order == ORDER => note(DRAIN_FIRST),
            None => note(GROWN_THEN_DRAINED),
        }
        taken
    });
    let s2 = s.clone();
    let reclaim = thread::spawn(move || {
        let mut taken = Vec::new();
        for (head, from, top) in s2.slots.drain() {
            assert_eq!(head, HEAD);
            taken.extend((from..top).map(|o| s2.take(o, 2)));
        }
        taken
    });
    let (by_holder, by_reclaim) = (holder.join().unwrap(), reclaim.join().unwrap());
    if by_reclaim.is_empty() {
        note(CLOSED_FIRST);
    }
    let mut count = [0usize; TOP - ORDER];
    for o in by_holder.into_iter().chain(by_reclaim) {
        count[o - ORDER] += 1;
    }
    assert_eq!(
        count,
        [1; TOP - ORDER],
        "a held block taken twice or by no one"
    );
}

#[test]
fn growth_runs() {
    check(
        "growth_runs",
        &[DRAIN_FIRST, GROWN_THEN_DRAINED, CLOSED_FIRST],
        model,
    );
}

#[test]
fn growth_runs_twin_split_grow() {
    check_catches("growth_runs", Fault::GrowthRunSplitGrow, model);
}
