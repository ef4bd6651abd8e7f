//! Foreign lists (`src/foreign.rs`): a thread that frees objects of slabs
//! whose owner has exited keeps them for its own next allocations of their
//! class, holds at most 256 KiB that way, and gives them all back when it
//! exits, so nothing is stranded.
//!
//! One test function: the steps read the process heap's per-class counts,
//! which a concurrent test in this binary would disturb. Without `debug`
//! only: under `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// A size no other code in this binary is likely to use, so its class
/// counts are this test's.
const SIZE: usize = 1500;

mod common;

fn live_objects() -> usize {
    common::live_objects_of(SIZE)
}

fn orphans(n: usize) -> Vec<usize> {
    common::orphans(SIZE, n)
}

#[test]
fn objects_of_exited_threads_are_reused_bounded_and_given_back() {
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    let base = live_objects();

    // Reuse: a thread frees eight orphans, then allocates eight objects of
    // the class; it gets the same objects back, last freed first. (Every
    // fourth of 64 orphans: their slabs stay mostly live, as listing
    // needs.)
    let all = orphans(64);
    let v: Vec<usize> = all.iter().copied().step_by(4).take(8).collect();
    let rest: Vec<usize> = all.iter().copied().filter(|p| !v.contains(p)).collect();
    let got = std::thread::spawn({
        let v = v.clone();
        move || {
            let warm = Box::new(0u64); // arms this thread's exit hook
            drop(warm);
            for &p in &v {
                // SAFETY: each orphan is live and freed once.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
            // (Listed objects still count as live in their slabs.)
            let listed = live_objects();
            let got: Vec<usize> = (0..v.len())
                // SAFETY: a non-zero size.
                .map(|_| unsafe { GLOBAL.alloc(l) } as usize)
                .collect();
            for &p in got.iter().chain(&rest) {
                // SAFETY: allocated just above, or an orphan not freed yet.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
            (listed, got)
        }
    })
    .join()
    .unwrap();
    let (listed, got) = got;
    assert!(listed >= base + v.len(), "listed objects left their slabs");
    let mut expected = v.clone();
    expected.reverse();
    assert_eq!(got, expected, "the freed orphans were not handed out again");

    // Bound: a thread that frees 2 MiB of orphans keeps at most 256 KiB.
    // Given back: once it has exited, every object is back in its slab.
    let n = (2 << 20) / SIZE;
    let v = orphans(n);
    let kept = std::thread::spawn(move || {
        let warm = Box::new(0u64);
        drop(warm);
        let before = live_objects();
        for &p in &v {
            // SAFETY: each orphan is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        // Objects freed to their slabs leave the live count; listed ones
        // stay in it.
        live_objects() + n - before
    })
    .join()
    .unwrap();
    let class_size = lifeboat::stats()
        .classes
        .iter()
        .map(|c| c.size)
        .find(|&s| s >= SIZE)
        .unwrap();
    assert!(kept > 0, "no orphan was listed");
    assert!(
        kept * class_size <= 256 << 10,
        "{kept} objects of {class_size} bytes kept, more than 256 KiB"
    );
    assert_eq!(
        live_objects(),
        base,
        "objects listed by an exited thread were not given back"
    );
}
