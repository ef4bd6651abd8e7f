//! Slab ownership: detach at thread exit, remote frees into a detached
//! slab, claiming it back (`slab::detach`, `slab::settle`, `slab::claim`,
//! `HeapInner::free_remote`, `ThreadCache::flush`).
//!
//! Thread A (the model's main thread) owns a slab and holds two of its
//! objects; it gives one to B, frees the other and exits (flushes its
//! cache: the slab is detached and, having free objects, listed).
//! Meanwhile B frees its object (a remote push; onto the detached slab it
//! frees the slab's last live object, so B settles the slab under the heap
//! lock, which releases it unless it was claimed meanwhile) and then
//! allocates the same class, and C allocates the same class: B and C race
//! to claim the detached slab or carve new ones, then exit. Afterwards a
//! fresh cache frees what is left (remote frees into detached slabs, which
//! release them).
//!
//! Checked: no object is handed to two holders (shadow cells), every
//! hand-out is ordered after the previous holder's use, the slab's owner
//! fields are never touched by two owners at once (loom's tracking of the
//! real `free`/`bump` cells), and free pages are back to the budget.
//!
//! Twins:
//! * `Fault::SettleSkipsRecheck` — `settle` trusts the push that saw
//!   `DETACHED` instead of re-checking under the heap lock, so a slab
//!   claimed between a freer's push and its settle is listed while owned,
//!   and a second cache claims it.
//! * `Fault::DetachSplitsWord` — `detach` sets `DETACHED` with a load and
//!   a store instead of one read-modify-write, so B's push of `x0` between
//!   the two is lost: the slab keeps a live object nobody holds and is
//!   never released.
#![cfg(loom)]

use lifeboat::model::{Cache, Fault};
use lifeboat_loom_tests::{
    assert_all_free, check, check_catches, heap, layout, note, Obj, Shadow, NORMAL,
};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab.
const SIZE: usize = 2048;
const A: usize = 1;
const B: usize = 2;
const C: usize = 3;
const D: usize = 4;
/// Bytes of a slab of that class (order 2), to which slabs are aligned.
const SLAB_BYTES: usize = 16 << 10;

const B_CLAIMED: &str = "where B's object lay in A's slab (claimed, or its pages re-carved)";
const C_CLAIMED: &str = "where C's object lay in A's slab (claimed, or its pages re-carved)";
const BOTH_CLAIMED: &str = "where B's and C's objects both lay in A's slab";
const NEW_SLABS: &str = "where B and C both used other pages";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let l = layout(SIZE);

    let mut a = Cache::new(&heap);
    let mut take = |who| {
        let o = Obj::new(a.alloc(l, NORMAL).expect("fresh heap"));
        shadow.take(o, SIZE, who);
        o
    };
    let (x0, x1) = (take(A), take(A));
    let a_slab = x0.0 & !(SLAB_BYTES - 1);
    shadow.pass(x0, SIZE, A, B);

    // B: free x0 (remotely), allocate, exit.
    let tb = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut b = Cache::new(&heap);
            shadow.give(x0, SIZE, B);
            // SAFETY: x0 is a live object of this heap, B's to free.
            unsafe { b.free(x0.ptr()) };
            let o = Obj::new(b.alloc(l, NORMAL).expect("budget left"));
            shadow.take(o, SIZE, B);
            (o, b.exit())
        })
    };
    // C: allocate, exit.
    let tc = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut c = Cache::new(&heap);
            let o = Obj::new(c.alloc(l, NORMAL).expect("budget left"));
            shadow.take(o, SIZE, C);
            (o, c.exit())
        })
    };
    // A frees x1 (locally) and exits.
    shadow.give(x1, SIZE, A);
    // SAFETY: A's live object, freed once.
    unsafe { a.free(x1.ptr()) };
    let ra = a.exit();

    let (ob, rb) = tb.join().expect("thread B");
    let (oc, rc) = tc.join().expect("thread C");
    let slab = |o: Obj| o.0 & !(SLAB_BYTES - 1);
    match (slab(ob) == a_slab, slab(oc) == a_slab) {
        (true, true) => note(BOTH_CLAIMED),
        (true, false) => note(B_CLAIMED),
        (false, true) => note(C_CLAIMED),
        (false, false) => note(NEW_SLABS),
    }

    // D frees everything left: remote frees into detached slabs.
    let mut d = Cache::new(&heap);
    for (o, who) in [(ob, B), (oc, C)] {
        shadow.pass(o, SIZE, who, D);
        shadow.give(o, SIZE, D);
        // SAFETY: live objects of this heap, each freed once.
        unsafe { d.free(o.ptr()) };
    }
    let rd = d.exit();
    assert_all_free(&heap);
    drop((ra, rb, rc, rd));
}

#[test]
fn slab_ownership() {
    check(
        "slab_ownership",
        &[B_CLAIMED, C_CLAIMED, BOTH_CLAIMED, NEW_SLABS],
        model,
    );
}

#[test]
fn slab_ownership_twin_settle_skips_recheck() {
    check_catches("slab_ownership", Fault::SettleSkipsRecheck, model);
}

#[test]
fn slab_ownership_twin_detach_splits_word() {
    check_catches("slab_ownership", Fault::DetachSplitsWord, model);
}
