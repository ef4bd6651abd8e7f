//! `lifeboat::flush_thread_cache`: a live thread gives back what its cache
//! holds, its slabs and the objects it keeps of other threads' slabs, as
//! its exit would, and allocates normally afterwards.
//!
//! Each test uses a size class of its own (no other code in this binary
//! uses them), since they read the process heap's per-class counts.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

mod common;

/// The thread's slabs: objects allocated and freed by the thread leave its
/// cache holding their slabs; the flush gives them back to the arena, and
/// the thread allocates again afterwards.
#[test]
fn a_flush_gives_back_the_threads_slabs() {
    const SIZE: usize = 5000;
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    let before = common::slabs_of(SIZE);
    std::thread::spawn(move || {
        let objs: Vec<usize> = (0..64)
            .map(|_| {
                // SAFETY: a non-zero size.
                let p = unsafe { GLOBAL.alloc(l) };
                assert!(!p.is_null());
                p as usize
            })
            .collect();
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

/// A thread that has never allocated from lifeboat has nothing to give
/// back: the call does nothing, and the thread allocates afterwards.
#[test]
fn a_flush_before_any_allocation_does_nothing() {
    std::thread::spawn(|| {
        lifeboat::flush_thread_cache();
        let v = vec![7u64; 100];
        assert_eq!(v.iter().sum::<u64>(), 700);
    })
    .join()
    .unwrap();
}
