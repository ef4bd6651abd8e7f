//! A spent reserve slab (no free object left) when pressure lifts:
//! `slab::settle` keeps it on its class's spent list, a remote free moves
//! it to the reserve partial list, and lifting the reserve
//! (`HeapInner::maybe_lift_reserve`, `slab::unreserve_listed`) takes it
//! from whichever list holds it.
//!
//! 16 pages, `min` = 4, `high` = 6. Three 4-page blocks are held, so free
//! pages are at `min`. The memalloc thread M (the main thread) allocates
//! all 8 objects of a 2 KiB reserve slab, carved from the reserve (free
//! pages: 0), so the slab is spent. Then, concurrently:
//!
//! * F frees one of M's objects: a remote push onto the spent slab,
//!   whose settle moves it to the reserve partial list;
//! * H frees two of the held blocks, lifting free pages above `high`, then
//!   lifts the reserve as an allocation's slow path would; if it lifted,
//!   no reserve slab may be left, whether F's push, its settle or neither
//!   came first;
//! * U, unprivileged, allocates the class: it gets an error or an object
//!   whose slab is not reserve-backed (it may be the lifted slab's).
//!
//! Afterwards a fresh cache frees everything. Checked: no object goes to
//! two holders (shadow cells); free pages are back to the budget and no
//! reserve slab is left.
//!
//! Twin: `Fault::SpentLeftUnlisted` — `settle` leaves a spent reserve slab
//! off every list, as lifeboat did before the spent list: a lift that runs
//! before F's free has listed the slab does not find it.
#![cfg(loom)]

use lifeboat::model::{self, Cache, Fault};
use lifeboat_loom_tests::{
    alloc_unprivileged, assert_all_free, check, check_catches, four_pages, heap, hold_down_to_min,
    layout, note, Obj, Shadow, MEMALLOC,
};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab.
const SIZE: usize = 2048;
const OBJECTS: usize = 8;
const M: usize = 1;
const F: usize = 2;
const U: usize = 3;
const D: usize = 4;

const LIFTED: &str = "where H lifted the reserve";
const U_REFUSED: &str = "where U was refused";
const U_GOT: &str = "where U got an ordinary object";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let l = layout(SIZE);
    let blocks = hold_down_to_min(&heap);

    let mut m = Cache::new(&heap);
    let objs: Vec<Obj> = (0..OBJECTS)
        .map(|_| {
            let o = Obj::new(
                m.alloc(l, MEMALLOC)
                    .expect("a memalloc request gets the reserve"),
            );
            shadow.take(o, SIZE, M);
            o
        })
        .collect();
    assert!(objs
        .iter()
        .all(|o| heap.is_reserve_backed(o.ptr().as_ptr())));
    assert_eq!(model::reserve_slabs(&heap), 1, "one slab, spent");
    assert_eq!(model::free_pages(&heap), 0);
    let rm = m.exit();

    let freed = objs[0];
    shadow.pass(freed, SIZE, M, F);
    let tf = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut f = Cache::new(&heap);
            shadow.give(freed, SIZE, F);
            // SAFETY: a live object of this heap, F's to free, freed once.
            unsafe { f.free(freed.ptr()) };
            f.exit()
        })
    };
    let th = {
        let (heap, held) = (heap.clone(), [blocks[0], blocks[1]]);
        thread::spawn(move || {
            for b in held {
                // SAFETY: live blocks of this heap, allocated with this
                // layout, freed once (by this thread only).
                unsafe { heap.dealloc(b.ptr(), four_pages()) };
            }
            if model::lift_reserve(&heap) {
                // Nobody allocates from the reserve any more, so what the
                // lift left is what it missed.
                assert_eq!(
                    model::reserve_slabs(&heap),
                    0,
                    "the lift left a reserve slab behind"
                );
                note(LIFTED);
            }
        })
    };
    let tu = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut u = Cache::new(&heap);
            let got = alloc_unprivileged(&heap, &mut u, &shadow, SIZE, U);
            note(if got.is_some() { U_GOT } else { U_REFUSED });
            (got, u.exit())
        })
    };

    let rf = tf.join().expect("thread F");
    th.join().expect("thread H");
    let (ou, ru) = tu.join().expect("thread U");

    let mut d = Cache::new(&heap);
    let rest = objs[1..].iter().map(|&o| (o, M));
    for (o, who) in rest.chain(ou.map(|o| (o, U))) {
        shadow.pass(o, SIZE, who, D);
        shadow.give(o, SIZE, D);
        // SAFETY: live objects of this heap, each freed once.
        unsafe { d.free(o.ptr()) };
    }
    let rd = d.exit();
    // SAFETY: a live block of this heap, allocated with this layout.
    unsafe { heap.dealloc(blocks[2].ptr(), four_pages()) };
    heap.flush_caches();
    assert_all_free(&heap);
    assert_eq!(model::reserve_slabs(&heap), 0, "reserve slabs left");
    drop((rm, rf, ru, rd));
}

#[test]
fn spent_reserve() {
    check("spent_reserve", &[LIFTED, U_REFUSED, U_GOT], model);
}

#[test]
fn spent_reserve_twin_left_unlisted() {
    check_catches("spent_reserve", Fault::SpentLeftUnlisted, model);
}
