//! Reserve-backed slabs below `min` (`HeapInner::alloc_from_reserve`:
//! `slab::claim`/`slab::carve` with the reserve flag, one object taken and
//! the slab detached in the same lock round; the partial lists; a free
//! settling an emptied reserve slab; `maybe_lift_reserve`).
//!
//! 16 pages, `min` = 4, `high` = 6. Three 4-page blocks are held, so free
//! pages are at `min`: ordinary slabs cannot be carved. The memalloc thread
//! M (the main thread) allocates two small objects: they come from a slab
//! carved from the reserve (free pages: 0). Then, concurrently:
//!
//! * U, unprivileged, frees one of M's objects (a remote free into the
//!   reserve slab) and allocates the same class: it must get an error or
//!   an object whose slab is not reserve-backed;
//! * H frees two of the held blocks, lifting free pages above `high`, so
//!   ordinary slabs may be carved again and reserve slabs are unflagged;
//! * M frees its other object, allocates once more (memalloc: the reserve
//!   slab, detached again in the round that took the object, or an
//!   ordinary slab once H has lifted the pressure) and exits with that
//!   object live.
//!
//! Afterwards a fresh cache frees what is left. Checked: U never holds a
//! reserve-backed object; M's requests always succeed; no object goes to
//! two holders (shadow cells); free pages are back to the budget and no
//! reserve slab is left.
//!
//! Twin: `Fault::ReserveListedAsOrdinary` — `slab::link` files a detached
//! reserve slab on the ordinary partial list, so an unprivileged claim
//! adopts it and hands its objects out.
#![cfg(loom)]

use lifeboat::model::{Cache, Fault};
use lifeboat_loom_tests::{
    alloc_memalloc, alloc_unprivileged, check, check_catches, four_pages, free_everything, heap,
    hold_down_to_min, note, Shadow,
};
use loom::thread;
use std::sync::Arc;

/// A 2 KiB class: 8 objects per 4-page slab.
const SIZE: usize = 2048;
const M: usize = 1;
const U: usize = 2;
const D: usize = 4;

const U_REFUSED: &str = "where U was refused";
const U_GOT: &str = "where U got an ordinary object";
const M_RESERVE_LAST: &str = "where M's last object was reserve-backed";
const M_ORDINARY_LAST: &str = "where M's last object was ordinary";

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, SIZE));
    let blocks = hold_down_to_min(&heap);

    let mut m = Cache::new(&heap);
    let (r0, r1) = (
        alloc_memalloc(&mut m, &shadow, SIZE, M),
        alloc_memalloc(&mut m, &shadow, SIZE, M),
    );
    assert!(heap.is_reserve_backed(r0.ptr().as_ptr()));
    assert!(heap.is_reserve_backed(r1.ptr().as_ptr()));
    shadow.pass(r1, SIZE, M, U);

    let tu = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let mut u = Cache::new(&heap);
            shadow.give(r1, SIZE, U);
            // SAFETY: r1 is a live object of this heap, U's to free.
            unsafe { u.free(r1.ptr()) };
            let got = alloc_unprivileged(&heap, &mut u, &shadow, SIZE, U);
            note(if got.is_some() { U_GOT } else { U_REFUSED });
            (got, u.exit())
        })
    };
    let th = {
        let (heap, freed) = (heap.clone(), [blocks[0], blocks[1]]);
        thread::spawn(move || {
            for b in freed {
                // SAFETY: live blocks of this heap, allocated with this
                // layout, freed once (by this thread only).
                unsafe { heap.dealloc(b.ptr(), four_pages()) };
            }
        })
    };

    shadow.give(r0, SIZE, M);
    // SAFETY: M's live object, freed once.
    unsafe { m.free(r0.ptr()) };
    let r2 = alloc_memalloc(&mut m, &shadow, SIZE, M);
    note(if heap.is_reserve_backed(r2.ptr().as_ptr()) {
        M_RESERVE_LAST
    } else {
        M_ORDINARY_LAST
    });
    let rm = m.exit();

    let (ou, ru) = tu.join().expect("thread U");
    th.join().expect("thread H");

    let owned = [Some((r2, M)), ou.map(|o| (o, U))].into_iter().flatten();
    let rd = free_everything(&heap, &shadow, SIZE, owned, blocks[2], D);
    drop((rm, ru, rd));
}

#[test]
fn reserve_slabs() {
    check(
        "reserve_slabs",
        &[U_REFUSED, U_GOT, M_RESERVE_LAST, M_ORDINARY_LAST],
        model,
    );
}

#[test]
fn reserve_slabs_twin_listed_as_ordinary() {
    check_catches("reserve_slabs", Fault::ReserveListedAsOrdinary, model);
}
