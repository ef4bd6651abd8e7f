//! A slab's remote stack across a detach and a claim (`slab::detach`,
//! `slab::claim`, `slab::collect_remote`): the detach leaves the stack on
//! the detached slab, and the claim takes it as one of the new owner's
//! lists without walking it. Checked: the heap verifies at every step
//! (the detached slab's stack is counted), the new owner is handed every
//! free object of the slab, each once, before the slab runs out, and every
//! page comes back once everything is freed.
//!
//! Single-threaded: the caches are `lifeboat::model::Cache`s of one private
//! heap, each standing for a thread (its owner id is its address).

use lifeboat::model::{free_pages, Cache};
use lifeboat::{AllocFlags, Config, Heap};
use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ptr::NonNull;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// A class of 8 objects a slab (2 KiB objects, 16 KiB slabs).
const SIZE: usize = 2048;
const PER_SLAB: usize = 8;
const SLAB_BYTES: usize = 16 << 10;
const BUDGET: usize = 4 << 20;

fn layout() -> Layout {
    Layout::from_size_align(SIZE, 8).unwrap()
}

fn slab_of(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize & !(SLAB_BYTES - 1)
}

fn verify(heap: &Heap, step: &str) {
    if let Err(e) = heap.verify() {
        panic!("heap inconsistent after {step}: {e}");
    }
}

#[test]
fn a_claim_hands_out_the_remote_stack_left_on_a_detached_slab() {
    let heap = Heap::new(Config::new().budget(BUDGET)).unwrap();
    let all_free = free_pages(&heap);
    let mut a = Cache::new(&heap);
    let alloc = |c: &mut Cache| c.alloc(layout(), AllocFlags::NORMAL).unwrap();

    // A fills one slab.
    let x: Vec<NonNull<u8>> = (0..PER_SLAB).map(|_| alloc(&mut a)).collect();
    let slab = slab_of(x[0]);
    assert!(
        x.iter().all(|&p| slab_of(p) == slab),
        "the first {PER_SLAB} objects of a fresh heap share one slab"
    );

    // A's own frees: x0 and x1, then it takes x1 back, then frees x2, so
    // the slab has objects on both of A's lists (x0 on the allocation
    // list, x2 on `frees`).
    // SAFETY: live objects of this heap, each freed once.
    unsafe {
        a.free(x[0]);
        a.free(x[1]);
    }
    let again = alloc(&mut a);
    assert_eq!(again, x[1], "the allocation takes A's last free back");
    // SAFETY: as above.
    unsafe { a.free(x[2]) };

    // B, another thread, frees x3 and x4: onto the slab's remote stack.
    let mut b = Cache::new(&heap);
    // SAFETY: as above.
    unsafe {
        b.free(x[3]);
        b.free(x[4]);
    }
    verify(&heap, "the remote frees");

    // A exits: the slab is detached with its stack in place, and listed
    // (half of it is free).
    let ra = a.exit();
    verify(&heap, "A's exit (a detached slab with a remote stack)");

    // C claims it: its allocation list (x2, x0) and the stack (x3, x4),
    // each object once, before anything else.
    let mut c = Cache::new(&heap);
    let got: Vec<NonNull<u8>> = (0..4).map(|_| alloc(&mut c)).collect();
    verify(&heap, "C's claim and four allocations");
    let got_set: BTreeSet<usize> = got.iter().map(|p| p.as_ptr() as usize).collect();
    let want: BTreeSet<usize> = [0, 2, 3, 4]
        .iter()
        .map(|&i| x[i].as_ptr() as usize)
        .collect();
    assert_eq!(
        got_set, want,
        "the claimed slab's free objects, each once (got {got:?})"
    );
    // The slab is exhausted: the next object is from another one.
    let next = alloc(&mut c);
    assert_ne!(
        slab_of(next),
        slab,
        "an object of the full slab handed out twice"
    );
    verify(&heap, "C's fifth allocation");

    // Everything back: C frees what it holds and what A left live (x1, x5,
    // x6, x7).
    for p in got.into_iter().chain([next, x[1], x[5], x[6], x[7]]) {
        // SAFETY: every live object, each freed once.
        unsafe { c.free(p) };
    }
    let (rb, rc) = (b.exit(), c.exit());
    verify(&heap, "every free");
    assert_eq!(free_pages(&heap), all_free, "pages lost or counted twice");
    drop((ra, rb, rc));
}
