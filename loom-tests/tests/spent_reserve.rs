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
//! * F frees two of M's objects: remote pushes onto the spent slab. The
//!   first settles it onto the reserve partial list while it is still
//!   reserve-backed; the second brings it to the ordinary listing
//!   threshold (a quarter of 8) and settles it again;
//! * H frees two of the held blocks, lifting free pages above `high`, then
//!   lifts the reserve as an allocation's slow path would: no reserve slab
//!   may be left, whether it found the slab spent, listed, or between a
//!   push and its settle.
//!
//! Afterwards the slab, ordinary now with two free objects, must be on the
//! ordinary partial list; a fresh cache frees everything else. Checked
//! too: no object goes to two holders (shadow cells); free pages are back
//! to the budget and no reserve slab is left.
//!
//! Twin: `Fault::SpentLeftUnlisted` — `settle` leaves a spent reserve slab
//! off every list, as lifeboat did before the spent list: a lift that runs
//! before F's first free has listed the slab does not find it.
#![cfg(loom)]

use lifeboat::model::{self, Cache, Fault};
use lifeboat_loom_tests::{
    alloc_memalloc, check, check_catches, four_pages, free_everything, heap, hold_down_to_min,
    note, Obj, Shadow,
};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab.
const SIZE: usize = 2048;
const OBJECTS: usize = 8;
const M: usize = 1;
const F: usize = 2;
const D: usize = 3;

const LIFTED_SPENT: &str = "where H lifted the slab from the spent list";
const LIFTED_LISTED: &str = "where H lifted the slab from the reserve partial list";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let blocks = hold_down_to_min(&heap);

    let mut m = Cache::new(&heap);
    let objs: Vec<Obj> = (0..OBJECTS)
        .map(|_| alloc_memalloc(&mut m, &shadow, SIZE, M))
        .collect();
    assert!(objs
        .iter()
        .all(|o| heap.is_reserve_backed(o.ptr().as_ptr())));
    assert_eq!(model::reserve_slabs(&heap), 1, "one slab, spent");
    assert_eq!(model::free_pages(&heap), 0);
    let rm = m.exit();

    let freed = [objs[0], objs[1]];
    for o in freed {
        shadow.pass(o, SIZE, M, F);
    }
    let tf = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut f = Cache::new(&heap);
            for o in freed {
                shadow.give(o, SIZE, F);
                // SAFETY: a live object of this heap, F's to free, freed
                // once.
                unsafe { f.free(o.ptr()) };
            }
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
            let spent = model::lift_reserve(&heap).expect("a reserve slab lives, free > high");
            // Nobody allocates from the reserve any more, so what the lift
            // left is what it missed.
            assert_eq!(
                model::reserve_slabs(&heap),
                0,
                "the lift left a reserve slab behind"
            );
            note(if spent == 1 {
                LIFTED_SPENT
            } else {
                LIFTED_LISTED
            });
        })
    };

    let rf = tf.join().expect("thread F");
    th.join().expect("thread H");
    assert!(
        model::slab_listed(&heap, objs[2].ptr()),
        "an ordinary detached slab with a quarter of it free is not listed"
    );

    let rest = objs[2..].iter().map(|&o| (o, M));
    let rd = free_everything(&heap, &shadow, SIZE, rest, blocks[2], D);
    drop((rm, rf, rd));
}

#[test]
fn spent_reserve() {
    check("spent_reserve", &[LIFTED_SPENT, LIFTED_LISTED], model);
}

#[test]
fn spent_reserve_twin_left_unlisted() {
    check_catches("spent_reserve", Fault::SpentLeftUnlisted, model);
}
