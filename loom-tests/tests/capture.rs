//! Capture of a freed block by a waiting large request (`arena::capture`,
//! `HeapInner::direct_reclaim`, `Arena::free`'s offer to the capture slots).
//!
//! 32 pages (128 KiB: an order-4 block is 16 pages, and a capture must leave
//! `min` = 8 free), one order-4 block held by F, the other 16 pages free.
//! R's order-4 request is refused (16 - 16 < `min`) and runs the real direct
//! reclaim: it registers a capture slot for order 4, runs reclaim rounds
//! (nothing to reclaim), polls its slot and retries, and unregisters (the
//! slow path around direct reclaim, the OOM path included, is not run). F
//! frees its block meanwhile: before R registers (R's retry takes it from
//! the free lists), while R's slot is registered (the free hands it to the
//! slot) or after R gave up (it goes on the lists). S meanwhile takes and
//! frees an order-3 block: the kind of allocation that would split the
//! freed block if it were on the free lists while R holds it.
//!
//! Checked: the block goes to exactly one place. After the threads end,
//! the free count is the budget less what R holds (16 pages if R got a
//! block, else 0: nothing lost, nothing counted twice) and the free lists
//! hold exactly the free count (a captured block is not also listed); R's
//! block is never handed to S as well (shadow cells per page, which also
//! order R's and S's use after F's); at the end, with R's block freed,
//! every page is back.
//!
//! Twin: `Fault::CaptureTrustsPoll` — direct reclaim trusts its last poll of
//! the slot ("nothing captured") at unregister instead of taking what the
//! slot holds under the lock: a block captured after that poll is in
//! neither place, and the free count comes up 16 pages short.
#![cfg(loom)]

use lifeboat::model::{self, Fault, Reclaimed};
use lifeboat::{AllocError, PAGE_SIZE};
use lifeboat_loom_tests::{check, check_catches, heap_of, note, Obj, Shadow, NORMAL};
use loom::thread;
use std::alloc::Layout;
use std::sync::Arc;

const CAPTURED: &str = "where F's free handed the block to R's capture slot";
const RETRIED: &str = "where R's retry took the block from the free lists";
const GAVE_UP: &str = "where R gave up and the block went to the free lists";

/// 16 pages aligned to their size: an order-4 buddy block.
const PAGES: usize = 16;

fn block() -> Layout {
    Layout::from_size_align(PAGES * PAGE_SIZE, PAGES * PAGE_SIZE).expect("valid layout")
}

/// Half of it: an order-3 block.
fn half() -> Layout {
    Layout::from_size_align(PAGES / 2 * PAGE_SIZE, PAGES / 2 * PAGE_SIZE).expect("valid layout")
}

fn model() {
    let heap = Arc::new(heap_of(128 << 10));
    let shadow = Arc::new(Shadow::new(&heap, PAGE_SIZE));
    let budget = model::budget_pages(&heap);
    assert_eq!(
        (budget, model::min_pages(&heap)),
        (32, 8),
        "the model's figures"
    );
    const F: usize = 1;
    const R: usize = 2;
    const S: usize = 3;

    let x = Obj::new(heap.alloc(block(), NORMAL).expect("fresh heap"));
    shadow.take(x, PAGES * PAGE_SIZE, F);
    assert_eq!(
        heap.alloc(block(), NORMAL),
        Err(AllocError::Watermark),
        "a second block would take free pages below min"
    );

    let freer = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            shadow.give(x, PAGES * PAGE_SIZE, F);
            // SAFETY: F's live block, freed once.
            unsafe { heap.dealloc(x.ptr(), block()) };
        })
    };
    let requester = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            let got = match model::direct_reclaim(&heap, block(), NORMAL) {
                Ok(Reclaimed::Captured(p)) => {
                    note(CAPTURED);
                    Some(Obj::new(p))
                }
                Ok(Reclaimed::Allocated(p)) => {
                    note(RETRIED);
                    Some(Obj::new(p))
                }
                Err(e) => {
                    assert_eq!(e, AllocError::Watermark, "only the watermark refuses R");
                    note(GAVE_UP);
                    None
                }
            };
            if let Some(o) = got {
                shadow.take(o, PAGES * PAGE_SIZE, R);
            }
            got
        })
    };
    // S competes for the free pages with a small block (half of an order-4
    // block), as the allocations that capture keeps from splitting the
    // freed block again.
    let small = {
        let (heap, shadow) = (heap.clone(), shadow.clone());
        thread::spawn(move || {
            // 8 pages always leave min: R gets a block only after F's is free.
            let o = Obj::new(heap.alloc(half(), NORMAL).expect("8 pages above min"));
            shadow.take(o, PAGES / 2 * PAGE_SIZE, S);
            shadow.give(o, PAGES / 2 * PAGE_SIZE, S);
            // SAFETY: S's live block, freed once.
            unsafe { heap.dealloc(o.ptr(), half()) };
        })
    };
    small.join().expect("small thread");
    freer.join().expect("freer thread");
    let got = requester.join().expect("requester thread");

    let held = if got.is_some() { PAGES } else { 0 };
    assert_eq!(
        model::free_pages(&heap),
        budget - held,
        "the freed block is lost or counted twice (R holds {held} pages)"
    );
    assert_eq!(
        model::listed_pages(&heap),
        budget - held,
        "the free lists disagree with the free count"
    );
    if let Some(o) = got {
        shadow.give(o, PAGES * PAGE_SIZE, R);
        // SAFETY: R's live block (captured blocks are large allocations of
        // the heap), freed once.
        unsafe { heap.dealloc(o.ptr(), block()) };
    }
    lifeboat_loom_tests::assert_all_free(&heap);
}

#[test]
fn capture() {
    check("capture", &[CAPTURED, RETRIED, GAVE_UP], model);
}

#[test]
fn capture_twin_trusts_poll() {
    check_catches("capture", Fault::CaptureTrustsPoll, model);
}
