//! `lifeboat::flush_thread_cache`: a live thread gives back what its cache
//! holds, its slabs and the objects it keeps of other threads' slabs, as
//! its exit would, and allocates normally afterwards.
//!
//! Each test uses a size class of its own (no other code in this binary
//! uses them), since they read the process heap's per-class counts; one
//! reads the large-block pages, and is the only one with large blocks.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

mod common;

/// `n` objects of `l` (a non-zero size) from the global allocator.
fn alloc_n(l: Layout, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            // SAFETY: a non-zero size (caller).
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            p as usize
        })
        .collect()
}

/// The thread's slabs: objects allocated and freed by the thread leave its
/// cache holding their slabs; the flush gives them back to the arena, and
/// the thread allocates again afterwards.
#[test]
fn a_flush_gives_back_the_threads_slabs() {
    const SIZE: usize = 5000;
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    let before = common::slabs_of(SIZE);
    std::thread::spawn(move || {
        let objs = alloc_n(l, 64);
        for &p in &objs {
            // SAFETY: live objects of `l`, each freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        assert!(
            common::slabs_of(SIZE) > before,
            "the thread's cache should hold a slab of the class before the flush"
        );
        lifeboat::flush_thread_cache();
        assert_eq!(
            common::slabs_of(SIZE),
            before,
            "a slab with no live object stayed after the flush"
        );
        // The cache refills on the next allocation.
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        // SAFETY: `p` is valid for `SIZE` bytes.
        unsafe {
            p.write_bytes(0xA5, SIZE);
            assert_eq!(*p.add(SIZE - 1), 0xA5);
        }
        assert!(common::slabs_of(SIZE) > before);
        // SAFETY: live, of `l`, freed once.
        unsafe { GLOBAL.dealloc(p, l) };
        // A second flush in a row finds less to do and is as safe.
        lifeboat::flush_thread_cache();
        lifeboat::flush_thread_cache();
        assert_eq!(common::slabs_of(SIZE), before);
    })
    .join()
    .unwrap();
}

/// The objects the thread keeps: frees of other threads' objects that the
/// thread keeps for its own allocations count as live until they go back
/// to their slabs; the flush sends them back. (Without the `debug`
/// feature: under it every free goes to its slab.)
#[cfg(not(feature = "debug"))]
#[test]
fn a_flush_returns_the_objects_kept_from_other_threads_slabs() {
    const SIZE: usize = 3000;
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    // Sixteen objects of a thread that has exited: their slab is full, so
    // a thread that allocates the class keeps them when it frees them.
    let orphans = common::orphans(SIZE, 16);
    let live = common::live_objects_of(SIZE);
    std::thread::spawn(move || {
        // SAFETY: a non-zero size.
        let own = unsafe { GLOBAL.alloc(l) };
        assert!(!own.is_null());
        for &p in &orphans[..8] {
            // SAFETY: orphans are live objects of `l`, each freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        assert_eq!(
            common::live_objects_of(SIZE),
            live + 1,
            "the freed orphans should be kept (counted live) before the flush"
        );
        lifeboat::flush_thread_cache();
        assert_eq!(
            common::live_objects_of(SIZE),
            live + 1 - 8,
            "the kept objects did not go back to their slab"
        );
        for &p in &orphans[8..] {
            // SAFETY: as above.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        // SAFETY: live, of `l`, freed once.
        unsafe { GLOBAL.dealloc(own, l) };
    })
    .join()
    .unwrap();
    // The thread's exit returned the rest.
    assert_eq!(common::live_objects_of(SIZE), live - 16);
}

/// The objects kept of several classes at once, more than the flush
/// gathers in one batch and in lists of very different lengths: every one
/// goes back to its slab, once. (The flush walks the lists side by side.)
#[cfg(not(feature = "debug"))]
#[test]
fn a_flush_returns_the_kept_objects_of_every_class() {
    const SIZES: [usize; 3] = [1700, 2200, 2600];
    const COUNTS: [usize; 3] = [100, 41, 16];
    let layouts = SIZES.map(|s| Layout::from_size_align(s, 8).unwrap());
    let orphans: Vec<Vec<usize>> = (0..3)
        .map(|i| common::orphans(SIZES[i], COUNTS[i]))
        .collect();
    let live = SIZES.map(common::live_objects_of);
    let classes = SIZES.map(common::class_size_of);
    assert!(
        classes[0] < classes[1] && classes[1] < classes[2],
        "the test's sizes must be of three classes: {classes:?}"
    );
    std::thread::spawn(move || {
        // One allocation of each class, so that the thread keeps the
        // class's foreign objects.
        let own = layouts.map(|l| alloc_n(l, 1)[0]);
        for i in 0..3 {
            for &p in &orphans[i] {
                // SAFETY: orphans are live objects of `layouts[i]`, each
                // freed once.
                unsafe { GLOBAL.dealloc(p as *mut u8, layouts[i]) };
            }
        }
        // Kept: counted live until the flush. (The last objects of a nearly
        // empty slab go back to it at once, so not quite all are kept.)
        let kept = SIZES.map(common::live_objects_of);
        let kept: Vec<usize> = (0..3)
            .map(|i| kept[i] - (live[i] + 1 - COUNTS[i]))
            .collect();
        assert!(
            kept.iter().all(|&k| k > 0) && kept.iter().sum::<usize>() > 64,
            "too few objects kept to test the flush: {kept:?}"
        );
        lifeboat::flush_thread_cache();
        for i in 0..3 {
            assert_eq!(
                common::live_objects_of(SIZES[i]),
                live[i] + 1 - COUNTS[i],
                "the kept objects of {} B did not all go back to their slabs",
                SIZES[i]
            );
        }
        for i in 0..3 {
            // SAFETY: live, of `layouts[i]`, freed once.
            unsafe { GLOBAL.dealloc(own[i] as *mut u8, layouts[i]) };
        }
    })
    .join()
    .unwrap();
    for i in 0..3 {
        assert_eq!(common::live_objects_of(SIZES[i]), live[i] - COUNTS[i]);
    }
}

/// The frees it batches: objects of a live thread's slab, freed by a
/// thread that does not allocate their class, wait in the freeing thread's
/// remote batch (counted live) until a flush sends them to their slab.
/// (Without the `debug` feature: under it every free goes to its slab.)
#[cfg(not(feature = "debug"))]
#[test]
fn a_flush_sends_the_batched_frees_to_their_slab() {
    const SIZE: usize = 1200;
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    let (objs_tx, objs_rx) = std::sync::mpsc::channel::<Vec<usize>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The owner allocates eight objects of one slab and stays alive (its
    // slab stays owned) until the freeing thread is done.
    let owner = std::thread::spawn(move || {
        objs_tx.send(alloc_n(l, 8)).unwrap();
        done_rx.recv().unwrap();
    });
    let objs = objs_rx.recv().unwrap();
    std::thread::spawn(move || {
        // Another class first, so that this thread's cache is in use.
        let warm = vec![1u8; 40];
        let live = common::live_objects_of(SIZE);
        for &p in &objs {
            // SAFETY: live objects of `l`, given up by the owner, each
            // freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        assert_eq!(
            common::live_objects_of(SIZE),
            live,
            "the frees should wait in the batch (counted live) before the flush"
        );
        lifeboat::flush_thread_cache();
        assert_eq!(
            common::live_objects_of(SIZE),
            live - 8,
            "the batched frees did not reach their slab"
        );
        drop(warm);
    })
    .join()
    .unwrap();
    done_tx.send(()).unwrap();
    owner.join().unwrap();
}

/// The freed blocks it parks: a freed 100 KiB block stays in the thread's
/// cache (counted among the large pages) until the flush frees it.
#[test]
fn a_flush_frees_the_parked_blocks() {
    let l = Layout::from_size_align(100 << 10, 8).unwrap();
    std::thread::spawn(move || {
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null());
        let with_block = lifeboat::stats().large_pages;
        // SAFETY: live, of `l`, freed once.
        unsafe { GLOBAL.dealloc(p, l) };
        assert_eq!(
            lifeboat::stats().large_pages,
            with_block,
            "the freed block should stay parked in the thread's cache"
        );
        lifeboat::flush_thread_cache();
        assert!(
            lifeboat::stats().large_pages < with_block,
            "the parked block was not freed by the flush"
        );
    })
    .join()
    .unwrap();
}
