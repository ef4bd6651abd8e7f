//! Remote batches (`remote_batch`, `HeapInner::free_chain`,
//! `slab::remote::push_chain`, `HeapInner::after_detached_push`).
//!
//! Thread A owns a slab of 8 objects and holds all of them; it gives three
//! to B, which frees them into its remote batch (a chain of three, no
//! atomic) and exits: its flush pushes the chain in one CAS. Meanwhile A
//! frees one object locally and allocates three times (its local list,
//! then the remote stack if the chain is there, else a detach and another
//! slab), then frees all it holds and exits. Whichever of A's detach and
//! B's push comes last must release the slab: when it is the push, one
//! push freed the slab's last three live objects.
//!
//! Checked: no object is handed out while someone holds it (the shadow
//! cells), every hand-out is ordered after the previous holder's last use,
//! and the free-page count is back to the budget (nothing lost, nothing
//! released twice).
//!
//! Twin: `Fault::ChainCountedAsOne` — the push of a chain onto a detached
//! slab is judged as one freed object, so the push that frees the slab's
//! last objects does not release it.
#![cfg(loom)]

use lifeboat::model::{Cache, Fault};
use lifeboat_loom_tests::{
    alloc_taken, assert_all_free, check, check_catches, free_held, heap, layout, note, Obj, Shadow,
    NORMAL,
};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab, all linked by one bump refill.
const SIZE: usize = 2048;
const PER_SLAB: usize = 8;

const REUSED: &str = "where A reused an object of B's chain";
const PUSHED_LAST: &str = "where B's chain reached the slab after A had exited";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let a_gone = Arc::new(AtomicBool::new(false));
    let l = layout(SIZE);
    const A: usize = 1;
    const B: usize = 2;

    let mut a = Cache::new(&heap);
    let mut held = alloc_taken(&mut a, &shadow, SIZE, PER_SLAB, A);
    let to_b: Vec<Obj> = held.drain(..3).collect();
    for o in &to_b {
        shadow.pass(*o, SIZE, A, B);
    }

    let b = {
        let (heap, shadow, a_gone, objs) =
            (heap.clone(), shadow.clone(), a_gone.clone(), to_b.clone());
        thread::spawn(move || {
            let mut c = Cache::new(&heap);
            for o in objs {
                shadow.give(o, SIZE, B);
                // SAFETY: a live object of A's slab, given to this thread
                // by A, freed once.
                unsafe { c.free_batched(o.ptr()) };
            }
            if a_gone.load(Ordering::Acquire) {
                note(PUSHED_LAST);
            }
            c.exit() // the flush pushes the chain
        })
    };

    // A frees one object locally, then allocates three times.
    let o = held.pop().expect("A holds objects");
    shadow.give(o, SIZE, A);
    // SAFETY: A's own live object, freed once.
    unsafe { a.free(o.ptr()) };
    for _ in 0..3 {
        let o = Obj::new(a.alloc(l, NORMAL).expect("budget left"));
        shadow.take(o, SIZE, A);
        if to_b.contains(&o) {
            note(REUSED);
        }
        held.push(o);
    }
    free_held(&mut a, &shadow, SIZE, held, A);
    let ra = a.exit();
    a_gone.store(true, Ordering::Release);
    let rb = b.join().expect("B");
    assert_all_free(&heap);
    drop((ra, rb));
}

#[test]
fn remote_batch() {
    check("remote_batch", &[REUSED, PUSHED_LAST], model);
}

#[test]
fn remote_batch_twin_chain_counted_as_one() {
    check_catches("remote_batch", Fault::ChainCountedAsOne, model);
}
