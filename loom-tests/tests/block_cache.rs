//! The process heap's block cache (`block_cache.rs`: one parked 512 KiB or
//! 1 MiB block per order, shared by all threads, parked with a
//! compare-and-swap from empty and taken with a swap).
//!
//! The slots' code is the shipped one; blocks are names (0 and 1) with a
//! loom cell each for their contents. Block 0 starts parked. T1 takes a
//! block, writes it and parks it back (keeping it if the slot is taken
//! meanwhile); T2 takes a block and writes it; T3 writes block 1 and parks
//! it (keeping it if the slot is taken). At the end the slot is drained.
//!
//! Checked: every block ends in exactly one place (a thread's hands or the
//! drained slot), never two, never none; contents are written by one
//! holder at a time, each ordered after the previous holder (loom's cells
//! report a concurrent or unordered access).
//!
//! Twin: `Fault::BlockCacheSplitTake` — a take reads the slot and clears it
//! in two steps, so T1 and T2 can both get block 0.
#![cfg(loom)]

use lifeboat::model::{BlockSlots, Fault};
use lifeboat_loom_tests::{check, check_catches, note};
use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;

const BOTH_TOOK: &str = "where both takers got a block";
const PARK_REFUSED: &str = "where a park found the slot taken";

const ORDER: usize = BlockSlots::MIN_ORDER;

struct Shared {
    slots: BlockSlots,
    contents: [UnsafeCell<usize>; 2],
}

// SAFETY: the cells are accessed only through loom's tracked accessors;
// a block's cell is written only by whoever holds the block, which the
// model checks.
unsafe impl Sync for Shared {}

impl Shared {
    /// Writes block `b` as its holder `who`.
    fn write(&self, b: usize, who: usize) {
        // SAFETY: loom checks that no other access is concurrent.
        self.contents[b].with_mut(|p| unsafe { *p = who });
    }
}

fn model() {
    let s = Arc::new(Shared {
        slots: BlockSlots::new(),
        contents: [UnsafeCell::new(0), UnsafeCell::new(0)],
    });
    s.write(0, 100);
    assert!(s.slots.park(0, ORDER));

    // Each thread returns (whether it took a block, the block it holds).
    let s1 = s.clone();
    let t1 = thread::spawn(move || {
        let Some(b) = s1.slots.take(ORDER) else {
            return (false, None);
        };
        s1.write(b, 1);
        if s1.slots.park(b, ORDER) {
            (true, None)
        } else {
            note(PARK_REFUSED);
            (true, Some(b))
        }
    });
    let s2 = s.clone();
    let t2 = thread::spawn(move || {
        let Some(b) = s2.slots.take(ORDER) else {
            return (false, None);
        };
        s2.write(b, 2);
        (true, Some(b))
    });
    let s3 = s.clone();
    let t3 = thread::spawn(move || {
        s3.write(1, 3);
        if s3.slots.park(1, ORDER) {
            (false, None)
        } else {
            note(PARK_REFUSED);
            (false, Some(1))
        }
    });
    let (r1, r2, r3) = (t1.join().unwrap(), t2.join().unwrap(), t3.join().unwrap());
    if r1.0 && r2.0 {
        note(BOTH_TOOK);
    }
    let mut places = [0usize; 2];
    for b in [r1.1, r2.1, r3.1]
        .into_iter()
        .flatten()
        .chain(s.slots.drain())
    {
        places[b] += 1;
    }
    assert_eq!(places, [1, 1], "a block is in two places or in none");
}

#[test]
fn block_cache() {
    check("block_cache", &[PARK_REFUSED, BOTH_TOOK], model);
}

#[test]
fn block_cache_twin_split_take() {
    check_catches("block_cache", Fault::BlockCacheSplitTake, model);
}
