//! Foreign lists under memory pressure (`src/foreign.rs`): a listed object
//! keeps its slab from being released, so while the heap's free pages are
//! below the `low` watermark a thread that frees objects of exited threads
//! gives them straight back to their slabs, keeps none, and gives back
//! what it listed before.
//!
//! Its own binary: it drives the process heap (a 256 MiB budget) below
//! `low`, which would disturb any other test. Without `debug` only: under
//! `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat =
    lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(256 << 20));

/// A size no other code in this binary is likely to use.
const SIZE: usize = 1500;

mod common;

fn live_objects() -> usize {
    common::live_objects_of(SIZE)
}

fn orphans(n: usize) -> Vec<usize> {
    common::orphans(SIZE, n)
}

/// How many of `v` a fresh thread keeps on its foreign list when it frees
/// them all (measured before it exits and gives them back).
fn kept_by_a_thread_freeing(v: Vec<usize>) -> usize {
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    std::thread::spawn(move || {
        drop(Box::new(0u64)); // arms this thread's exit hook
        let before = live_objects();
        for &p in &v {
            // SAFETY: each orphan is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        // Objects freed to their slabs leave the live count; listed ones
        // stay in it.
        live_objects() + v.len() - before
    })
    .join()
    .unwrap()
}

/// Runs `f` with the heap halfway from `low` down to `min` (ordinary
/// requests still succeed there), reached 64 KiB at a time: far enough
/// below `low` that slabs released meanwhile do not lift the heap above
/// it. `None` if the heap could not be brought there. (`f` must not
/// panic: the panic machinery itself needs memory.)
fn short_of_memory<R>(f: impl FnOnce() -> R) -> Option<R> {
    let block = Layout::from_size_align(64 << 10, 8).unwrap();
    let mut held: Vec<usize> = Vec::with_capacity(4096);
    let low = loop {
        let st = lifeboat::stats();
        let target = (st.min_pages + st.low_pages) / 2;
        if st.free_pages < target || held.len() == held.capacity() {
            break st.free_pages < target;
        }
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(block) };
        if p.is_null() {
            break false;
        }
        held.push(p as usize);
    };
    let r = low.then(f);
    for &p in &held {
        // SAFETY: allocated above, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, block) };
    }
    r
}

/// One test function: the steps read the process heap's counts and drive
/// it low, which a concurrent test in this binary would disturb.
#[test]
fn lists_hold_nothing_while_memory_is_short() {
    const N: usize = 64;
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    // With memory to spare the freeing thread keeps the orphans (so the
    // assertions below can fail).
    assert!(
        kept_by_a_thread_freeing(orphans(N)) > 0,
        "no orphan was listed"
    );

    // Short of memory, nothing is listed.
    let v = orphans(N);
    let kept = short_of_memory(|| kept_by_a_thread_freeing(v))
        .expect("the heap never went below `low` with every request granted");
    assert_eq!(
        kept, 0,
        "a thread listed foreign objects below the low watermark"
    );

    // A thread that listed objects while memory was plentiful gives them
    // all back at its first free once memory is short.
    static PHASE: AtomicUsize = AtomicUsize::new(0);
    let wait_for = |phase| {
        while PHASE.load(Ordering::Acquire) != phase {
            std::thread::yield_now();
        }
    };
    let v = orphans(N);
    let t = std::thread::spawn(move || {
        drop(Box::new(0u64)); // arms this thread's exit hook
        let before = live_objects();
        for &p in &v[..N - 1] {
            // SAFETY: each orphan is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        let listed = live_objects() + (N - 1) - before;
        PHASE.store(1, Ordering::Release);
        wait_for(2);
        let before = live_objects();
        // SAFETY: the last orphan, live, freed once.
        unsafe { GLOBAL.dealloc(v[N - 1] as *mut u8, l) };
        let given_back = before - live_objects();
        PHASE.store(3, Ordering::Release);
        (listed, given_back)
    });
    wait_for(1);
    let reached = short_of_memory(|| {
        PHASE.store(2, Ordering::Release);
        wait_for(3);
    });
    let (listed, given_back) = t.join().unwrap();
    assert!(reached.is_some(), "the heap never went below `low`");
    assert!(listed > 0, "no orphan was listed");
    assert_eq!(
        given_back,
        listed + 1,
        "the free under pressure did not give back the {listed} listed objects"
    );
}
