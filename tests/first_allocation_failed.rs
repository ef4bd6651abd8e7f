//! A thread whose first small allocation failed (memory short, the
//! request refused) and that later frees objects of other threads through
//! the global allocator once memory is back: the frees it lists on its
//! foreign lists by their layout are handed out again intact.
//!
//! The allocation's slow path marks the class as one the thread allocates
//! (it asks the thread's foreign list first) before it fails to get a
//! slab; the layout path then lists the thread's frees of that class
//! before the thread's cache has ever installed a slab. Its links must be
//! encoded with the heap's key, as the pops decode them, not with the
//! cache's copy of the key, which a slab's install sets.
//!
//! Its own binary: it drives the process heap (a 16 MiB budget) to its
//! `min` watermark, which would disturb any other test. Without `debug`
//! only: under `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat =
    lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(16 << 20));

/// The steps of the two threads.
static STAGE: AtomicUsize = AtomicUsize::new(0);
/// An object of the main thread's, handed to the other thread to free.
static OBJECT: AtomicUsize = AtomicUsize::new(0);
/// What the other thread's first allocation returned.
static FIRST: AtomicUsize = AtomicUsize::new(usize::MAX);
/// What its two allocations after the free returned.
static AFTER: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn object() -> Layout {
    Layout::from_size_align(1024, 8).unwrap()
}

fn wait_for(stage: usize) {
    while STAGE.load(SeqCst) != stage {
        std::hint::spin_loop();
        // SAFETY: no arguments, no memory touched.
        unsafe { libc::sched_yield() };
    }
}

/// The other thread, a plain pthread: no runtime code allocates on it
/// before its first request below.
extern "C" fn other_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    wait_for(1);
    // SAFETY: a non-zero size (memory is short: null expected).
    let p = unsafe { GLOBAL.alloc(object()) };
    FIRST.store(p as usize, SeqCst);
    STAGE.store(2, SeqCst);
    wait_for(3);
    // SAFETY: the main thread's live object, given to this thread, freed
    // once with the layout it was allocated with.
    unsafe { GLOBAL.dealloc(OBJECT.load(SeqCst) as *mut u8, object()) };
    for slot in &AFTER {
        // SAFETY: a non-zero size; the objects are leaked.
        slot.store(unsafe { GLOBAL.alloc(object()) } as usize, SeqCst);
    }
    STAGE.store(4, SeqCst);
    core::ptr::null_mut()
}

/// Allocates `l` into `v` (which has room: nothing else is allocated
/// meanwhile) until the heap's free pages fall below `min` plus `margin`
/// pages.
fn fill_to(v: &mut Vec<usize>, l: Layout, margin: usize) {
    loop {
        let s = lifeboat::stats();
        if s.free_pages < s.min_pages + margin {
            return;
        }
        assert!(v.len() < v.capacity());
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(l) };
        assert!(!p.is_null(), "a request above `min` was refused");
        v.push(p as usize);
    }
}

#[test]
fn frees_listed_before_the_first_slab_are_handed_out_intact() {
    let mut t: libc::pthread_t = 0;
    // SAFETY: a fresh pthread_t; the entry point takes and returns nothing.
    let rc = unsafe {
        libc::pthread_create(
            &mut t,
            core::ptr::null(),
            other_thread,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0);
    // Down to `min`, without a refusal (so without a reclaim round that
    // could leave memory to spare): 1 MiB blocks, then 64 KiB, then the
    // objects themselves from this thread's slabs.
    let mib = Layout::from_size_align(1 << 20, 8).unwrap();
    let kib64 = Layout::from_size_align(64 << 10, 8).unwrap();
    let (mut big, mut mid, mut small) = (
        Vec::with_capacity(64),
        Vec::with_capacity(256),
        Vec::with_capacity(16 << 10),
    );
    fill_to(&mut big, mib, 256 + 8);
    fill_to(&mut mid, kib64, 16 + 8);
    fill_to(&mut small, object(), 4);
    STAGE.store(1, SeqCst);
    wait_for(2);
    // Memory back: the other thread's next requests succeed.
    for &p in &big {
        // SAFETY: allocated above with `mib`, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, mib) };
    }
    OBJECT.store(small[0], SeqCst);
    STAGE.store(3, SeqCst);
    wait_for(4);
    // SAFETY: the thread has returned.
    assert_eq!(unsafe { libc::pthread_join(t, core::ptr::null_mut()) }, 0);

    assert_eq!(
        FIRST.load(SeqCst),
        0,
        "the other thread's first allocation was not refused: the case was not reached"
    );
    let after = [AFTER[0].load(SeqCst), AFTER[1].load(SeqCst)];
    assert_eq!(
        after[0], small[0],
        "the freed object was not handed out again from the thread's list"
    );
    assert!(after[1] != 0 && after[1] != small[0]);
    for (&p, l) in mid
        .iter()
        .map(|p| (p, kib64))
        .chain(small[1..].iter().map(|p| (p, object())))
    {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
    }
}
