//! Remote frees onto an owned slab (`slab::remote`, `HeapInner::free_remote`,
//! `slab::collect_remote`, `ThreadCache::refill_slot`).
//!
//! Thread A owns a slab of 8 objects and holds all of them; it gives three
//! to B and C, which free them remotely (pushes onto the slab's remote
//! stack) while A frees and allocates on: its refills collect the remote
//! stack, or find the slab full, detach it and claim or carve another.
//! Then A frees all it holds and exits, while B and C may still be
//! freeing: the last free of a detached slab (by any of them) releases it.
//!
//! Checked: no object is handed out while someone holds it (the shadow
//! cells), every hand-out is ordered after the previous holder's last use
//! (loom's cell tracking), and the free-page count is back to the budget
//! (nothing lost, nothing released twice).
//!
//! Twin: `Fault::WeakRemotePush` — the push CAS is `Relaxed`, so the
//! owner's acquire swap no longer orders the freer's last writes before the
//! object's next use.
#![cfg(loom)]

use lifeboat::model::{Cache, Fault};
use lifeboat_loom_tests::{
    alloc_taken, assert_all_free, check, check_catches, free_held, heap, layout, note, Obj, Shadow,
    NORMAL,
};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab, all linked by one bump refill.
const SIZE: usize = 2048;
const PER_SLAB: usize = 8;
/// Bytes of a slab of that class (order 2), to which slabs are aligned.
const SLAB_BYTES: usize = 16 << 10;

const REUSED: &str = "where A reused an object freed remotely";
const MOVED: &str = "where A's slab was full and A went on in another slab";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let l = layout(SIZE);
    const A: usize = 1;

    let mut a = Cache::new(&heap);
    // A takes every object of its first slab.
    let mut held = alloc_taken(&mut a, &shadow, SIZE, PER_SLAB, A);
    let to_b = vec![held.remove(0), held.remove(0)];
    let to_c = vec![held.remove(0)];
    for o in &to_b {
        shadow.pass(*o, SIZE, A, 2);
    }
    for o in &to_c {
        shadow.pass(*o, SIZE, A, 3);
    }

    let freers: Vec<_> = [(2, to_b.clone()), (3, to_c.clone())]
        .into_iter()
        .map(|(who, objs)| {
            let (heap, shadow) = (heap.clone(), shadow.clone());
            thread::spawn(move || {
                let mut c = Cache::new(&heap);
                for o in objs {
                    shadow.give(o, SIZE, who);
                    // SAFETY: `o` is a live object of this heap, given to
                    // this thread by A, freed once.
                    unsafe { c.free(o.ptr()) };
                }
                c.exit() // thread exit: flush (it owns nothing)
            })
        })
        .collect();

    // A frees one object locally, then allocates three times: the local
    // list, then the remote stack (or a detach and a claim or a new slab).
    let o = held.pop().expect("A holds objects");
    shadow.give(o, SIZE, A);
    // SAFETY: A's own live object, freed once.
    unsafe { a.free(o.ptr()) };
    let first_slab = o.0 & !(SLAB_BYTES - 1);
    let given: Vec<Obj> = to_b.iter().chain(&to_c).copied().collect();
    for _ in 0..3 {
        let o = Obj::new(a.alloc(l, NORMAL).expect("budget left"));
        shadow.take(o, SIZE, A);
        if given.contains(&o) {
            note(REUSED);
        }
        if o.0 & !(SLAB_BYTES - 1) != first_slab {
            note(MOVED);
        }
        held.push(o);
    }

    // A frees everything it holds (remote frees, for objects of a slab it
    // gave up) and exits, while B and C may still be freeing.
    free_held(&mut a, &shadow, SIZE, held, A);
    let ra = a.exit();
    let retired: Vec<_> = freers
        .into_iter()
        .map(|t| t.join().expect("freer thread"))
        .collect();
    assert_all_free(&heap);
    drop((ra, retired));
}

#[test]
fn remote_free() {
    check("remote_free", &[REUSED, MOVED], model);
}

#[test]
fn remote_free_twin_weak_push() {
    check_catches("remote_free", Fault::WeakRemotePush, model);
}
