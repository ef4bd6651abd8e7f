//! Foreign lists under memory pressure (`src/foreign.rs`): a listed object
//! keeps its slab from being released, so while the heap's free pages are
//! below the `low` watermark a thread that frees objects of exited threads
//! gives them straight back to their slabs and keeps none.
//!
//! Its own binary: it drives the process heap (a 256 MiB budget) below
//! `low`, which would disturb any other test. Without `debug` only: under
//! `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};

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

#[test]
fn nothing_is_listed_while_memory_is_short() {
    const N: usize = 64;
    // With memory to spare the freeing thread keeps the orphans (so the
    // assertion below can fail).
    assert!(
        kept_by_a_thread_freeing(orphans(N)) > 0,
        "no orphan was listed"
    );

    let v = orphans(N);
    // Halfway from `low` down to `min` (ordinary requests still succeed
    // there), 64 KiB at a time: far enough below `low` that the slabs
    // released by the frees below do not lift the heap above it.
    let block = Layout::from_size_align(64 << 10, 8).unwrap();
    // (No assertion fails while memory is short: the panic machinery
    // itself needs memory.)
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
    let kept = low.then(|| kept_by_a_thread_freeing(v));
    for &p in &held {
        // SAFETY: allocated above, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, block) };
    }
    let kept = kept.expect("the heap never went below `low` with every request granted");
    assert_eq!(
        kept, 0,
        "a thread listed foreign objects below the low watermark"
    );
}
