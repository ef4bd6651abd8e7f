//! Arena accounting: concurrent page-block allocations and frees through
//! `Heap::alloc`/`Heap::dealloc` (the shard cache lock, then the heap lock,
//! `Arena::alloc`/`Arena::free` and the watermark check).
//!
//! 16 pages, `min` = 4. Two unprivileged threads allocate (and one frees
//! and reallocates) blocks of 2 and 4 pages (8 KiB and 16 KiB aligned to
//! their size, so they are page blocks, not slab objects), up to 12 pages
//! together; a memalloc thread takes and frees a 4-page block, which may be
//! the last free pages. The main thread frees what they still hold.
//!
//! Checked: no page is handed to two holders (shadow cells per page, which
//! also order each hand-out after the previous holder's use); the pages
//! held by unprivileged callers never exceed `budget - min` (each records
//! its grant in a ledger before checking the sum), so no unprivileged
//! request took free pages below `min`; the memalloc request always
//! succeeds, since unprivileged callers leave it `min` pages; unprivileged
//! refusals are watermark refusals; and at the end the free count is
//! exactly the budget.
//!
//! Twin: `Fault::WeakLockAcquire` — the heap lock (`RawLock`) acquires with
//! `Relaxed`: the arena's lock-protected state (free lists, the free count's
//! read-modify-write) is no longer ordered between holders.
#![cfg(loom)]

use lifeboat::model::{self, Fault};
use lifeboat::{AllocError, PAGE_SIZE};
use lifeboat_loom_tests::{check, check_catches, heap, note, Obj, Shadow, MEMALLOC, NORMAL};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::alloc::Layout;
use std::sync::Arc;

const REFUSED: &str = "where an unprivileged request was refused";
const LAST_PAGES: &str = "where the memalloc request took the last free pages";

/// `pages` pages aligned to their size: a buddy block, not a slab object.
fn block(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, pages * PAGE_SIZE).expect("valid layout")
}

/// One step of a model thread.
#[derive(Clone, Copy)]
enum Op {
    /// Allocate a block of this many pages.
    Alloc(usize),
    /// Free the block allocated last.
    FreeLast,
}
use Op::{Alloc, FreeLast};

fn model() {
    let heap = Arc::new(heap());
    let shadow = Arc::new(Shadow::new(&heap, PAGE_SIZE));
    let budget = model::budget_pages(&heap);
    let min = model::min_pages(&heap);
    assert_eq!((budget, min), (16, 4), "the model's figures");
    // Pages held by unprivileged callers (recorded after each grant,
    // removed before each free: never more than they really hold).
    let normal_held = Arc::new(AtomicUsize::new(0));

    // Thread `who` runs `plan` and returns the blocks it still holds.
    let spawn = |who: usize, memalloc: bool, plan: &'static [Op]| {
        let (heap, shadow, held) = (heap.clone(), shadow.clone(), normal_held.clone());
        thread::spawn(move || {
            let mut got: Vec<(Obj, usize)> = Vec::new();
            for &op in plan {
                match op {
                    Alloc(pages) if memalloc => {
                        let p = heap
                            .alloc(block(pages), MEMALLOC)
                            .expect("memalloc gets the reserve, down to the last page");
                        if model::free_pages(&heap) == 0 {
                            note(LAST_PAGES);
                        }
                        let o = Obj::new(p);
                        shadow.take(o, pages * PAGE_SIZE, who);
                        got.push((o, pages));
                    }
                    Alloc(pages) => match heap.alloc(block(pages), NORMAL) {
                        Ok(p) => {
                            let o = Obj::new(p);
                            shadow.take(o, pages * PAGE_SIZE, who);
                            let now = held.fetch_add(pages, Ordering::SeqCst) + pages;
                            assert!(
                                now <= budget - min,
                                "unprivileged callers hold {now} pages: free went below min {min}"
                            );
                            got.push((o, pages));
                        }
                        Err(e) => {
                            assert_eq!(e, AllocError::Watermark, "refusal of {pages} pages");
                            note(REFUSED);
                        }
                    },
                    FreeLast => {
                        if let Some((o, pages)) = got.pop() {
                            if !memalloc {
                                held.fetch_sub(pages, Ordering::SeqCst);
                            }
                            shadow.give(o, pages * PAGE_SIZE, who);
                            // SAFETY: a live block of this heap, allocated
                            // with this layout, freed once.
                            unsafe { heap.dealloc(o.ptr(), block(pages)) };
                        }
                    }
                }
            }
            got
        })
    };
    // Unprivileged callers can hold 8 + 4 = 12 = budget - min pages, the
    // memalloc caller takes the other 4.
    let threads = [
        (1, spawn(1, false, &[Alloc(4), Alloc(4)])),
        (
            2,
            spawn(2, false, &[Alloc(2), FreeLast, Alloc(2), Alloc(2)]),
        ),
        (3, spawn(3, true, &[Alloc(4), FreeLast])),
    ];
    for (who, t) in threads {
        for (o, pages) in t.join().expect("model thread") {
            if who != 3 {
                normal_held.fetch_sub(pages, Ordering::SeqCst);
            }
            shadow.give(o, pages * PAGE_SIZE, who);
            // SAFETY: a live block of this heap, allocated with this layout,
            // freed once.
            unsafe { heap.dealloc(o.ptr(), block(pages)) };
        }
    }
    assert_eq!(normal_held.load(Ordering::SeqCst), 0);
    assert_eq!(model::free_pages(&heap), budget, "free count is not exact");
}

#[test]
fn arena_accounting() {
    check("arena_accounting", &[REFUSED, LAST_PAGES], model);
}

#[test]
fn arena_accounting_twin_weak_lock() {
    check_catches("arena_accounting", Fault::WeakLockAcquire, model);
}
