//! How often the heap lock is taken on a thread's slow paths:
//!
//! * a thread that touches every size class once and exits takes it once
//!   per class to claim or carve a slab, and a handful of times for the
//!   exit, which detaches all the thread's slabs and settles them in
//!   batches (not one lock round per slab);
//! * a thread that fills slab after slab of one class takes it once per
//!   new slab: the kept slab it gives up each time is settled in the same
//!   round as the claim or carve.
//!
//! Each test runs alone (`lock`) so that no other test takes the heap lock
//! while it counts.

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::sync::Mutex;

/// Serialises the tests of this file.
static LOCK: Mutex<()> = Mutex::new(());

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Lock rounds allowed beyond one per class: the exit's batches (two for
/// 80 classes), the spawn's and join's own allocations, and the stats
/// snapshot that takes the second reading.
const SLACK: usize = 12;

#[test]
fn thread_exit_settles_its_slabs_in_batches() {
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sizes: Vec<usize> = lifeboat::stats().classes.iter().map(|c| c.size).collect();
    assert!(sizes.len() >= 40, "expected the full class table");
    // Under `debug` a request grows by its red zone (8 bytes), and one
    // whose size is a multiple of 16 keeps 16-byte alignment: 9 bytes below
    // a class's size lands in that class and no other (none is left for
    // the 8-byte class).
    let sizes: Vec<usize> = if cfg!(feature = "debug") {
        sizes.iter().filter(|&&s| s > 8).map(|&s| s - 9).collect()
    } else {
        sizes
    };
    let run = |sizes: Vec<usize>| {
        std::thread::spawn(move || {
            for &size in &sizes {
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY: `layout` has a non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: `p` is writable for `size` bytes.
                unsafe { p.write_bytes(0xa5, size) };
                // SAFETY: `p` was allocated above with `layout`.
                unsafe { dealloc(black_box(p), layout) };
            }
        })
        .join()
        .unwrap();
    };
    // Warm-up: the spawn's and join's own allocations find slabs in this
    // thread's cache from now on.
    run(sizes.clone());
    let before = lifeboat::stats();
    run(sizes.clone());
    let after = lifeboat::stats();

    let rounds = after.lock_acquisitions - before.lock_acquisitions;
    assert!(
        rounds >= sizes.len(),
        "each class needs a slab: {rounds} lock rounds for {} classes",
        sizes.len()
    );
    assert!(
        rounds <= sizes.len() + SLACK,
        "{rounds} lock rounds for a thread that used {} classes: the exit \
         should settle its slabs in batches",
        sizes.len()
    );
    assert!(after.lock_contended >= before.lock_contended);
    let line = format!(
        "{} acquisitions, {} contended",
        after.lock_acquisitions, after.lock_contended
    );
    assert!(
        after.to_string().contains(&line),
        "the table lacks {line:?}"
    );
}

#[test]
fn a_full_slab_is_settled_in_the_round_of_the_next_claim() {
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    const SIZE: usize = 64;
    const OBJECTS: usize = 100_000;
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    std::thread::spawn(move || {
        // Room for every pointer, so the loop below allocates only objects
        // of the class under test.
        let mut held: Vec<usize> = Vec::with_capacity(OBJECTS);
        let before = lifeboat::stats();
        for _ in 0..OBJECTS {
            // SAFETY: `layout` has a non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            held.push(p as usize);
        }
        let after = lifeboat::stats();
        // The class that grew (with red zones, `debug` builds serve 64-byte
        // requests from a bigger class).
        let new_slabs = (after.classes.iter().zip(&before.classes))
            .map(|(a, b)| a.slabs.saturating_sub(b.slabs))
            .max()
            .unwrap_or(0);
        assert!(
            new_slabs >= 10,
            "only {new_slabs} slabs for {OBJECTS} objects"
        );
        // One round per new slab, one for the second snapshot.
        let rounds = after.lock_acquisitions - before.lock_acquisitions;
        assert!(
            rounds <= new_slabs + 2,
            "{rounds} lock rounds for {new_slabs} new slabs: the slab given \
             up should be settled in the round of the next claim"
        );
        for p in held {
            // SAFETY: each `p` was allocated above with `layout`.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
}
