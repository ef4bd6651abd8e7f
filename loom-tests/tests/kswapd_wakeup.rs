//! The background reclaimer's wake-up (`reclaim::kswapd`: `Kswapd::wake`,
//! `Kswapd::sleep`, `HeapInner::kswapd_check`, and the allocation path that
//! wakes it when a grant leaves free pages below `low`).
//!
//! 16 pages, `min` = 4, `low` = 5; the main thread holds 8 pages. K plays
//! the reclaimer: turns of the real loop (read the wake-up sequence, check
//! the free count, sleep on the sequence: a futex wait that, under loom,
//! blocks until a wake-up, with no timeout) until a turn finds free pages
//! below `low`. A allocates 4 pages through `Heap::alloc`, crossing `low`
//! (8 -> 4), which wakes the reclaimer, possibly just while it is deciding
//! to sleep.
//!
//! Checked: no lost wake-up. K ends only by seeing the crossing, so a
//! wake-up lost between its check and its sleep leaves it asleep for good,
//! which loom reports as a deadlock. K's turns stop at the decision: the
//! balancing itself is not run (it sets thread-local rights, which loom's
//! threads would share), nor is the timed purge of the real loop.
//!
//! Twin: `Fault::WeakKswapdWake` — the waker bumps the sequence with
//! `Relaxed` instead of `Release`: K can see the bump, read the free count
//! from before the allocation, and sleep on a sequence nobody bumps again.
#![cfg(loom)]

use lifeboat::model::{self, Fault};
use lifeboat::PAGE_SIZE;
use lifeboat_loom_tests::{check, check_catches, heap, note, NORMAL};
use loom::thread;
use std::alloc::Layout;
use std::sync::Arc;

const SLEPT: &str = "where the reclaimer slept and was woken by the crossing";
const AWAKE: &str = "where the reclaimer saw the crossing without sleeping";

/// `pages` pages aligned to their size: a buddy block, not a slab object.
fn block(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, pages * PAGE_SIZE).expect("valid layout")
}

fn model() {
    let heap = Arc::new(heap());
    let (budget, min, low) = (
        model::budget_pages(&heap),
        model::min_pages(&heap),
        model::low_pages(&heap),
    );
    assert_eq!((budget, min, low), (16, 4, 5), "the model's figures");
    let held = heap.alloc(block(8), NORMAL).expect("fresh heap");
    model::kswapd_started(&heap);

    let reclaimer = {
        let heap = heap.clone();
        thread::spawn(move || {
            let mut turns = 0;
            while !model::kswapd_turn(&heap) {
                turns += 1;
            }
            note(if turns == 0 { AWAKE } else { SLEPT });
        })
    };
    let allocator = {
        let heap = heap.clone();
        thread::spawn(move || {
            let p = heap
                .alloc(block(4), NORMAL)
                .expect("8 free pages: 4 leave min");
            assert!(model::free_pages(&heap) < low);
            lifeboat_loom_tests::Obj::new(p)
        })
    };
    reclaimer.join().expect("reclaimer thread");
    let o = allocator.join().expect("allocator thread");
    // SAFETY: live blocks of this heap, each freed once.
    unsafe {
        heap.dealloc(o.ptr(), block(4));
        heap.dealloc(held, block(8));
    }
    lifeboat_loom_tests::assert_all_free(&heap);
}

#[test]
fn kswapd_wakeup() {
    check("kswapd_wakeup", &[SLEPT, AWAKE], model);
}

#[test]
fn kswapd_wakeup_twin_weak_wake() {
    check_catches("kswapd_wakeup", Fault::WeakKswapdWake, model);
}
