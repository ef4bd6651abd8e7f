//! A `Mempool` waiter is woken by the free that refills the pool
//! (`Mempool::alloc_timeout`, `Mempool::free`, on `crate::sync`'s mutex and
//! condition variable, which are loom's under `--cfg loom`).
//!
//! 32 pages (128 KiB), `min` = 8; a pool of one 16-page element (a page
//! block: smaller elements would be slab objects, which the pool's direct
//! allocation could take from the element's slab), so the pool's direct
//! allocation (no reserve, no retry) is always refused (16 - 16 < `min`). Two threads each take an element and
//! give it back: one gets the pooled element, the other finds the pool
//! empty and waits (under loom the wait blocks until notified: its timeout
//! is not modelled), unless the element is back before it looks.
//!
//! Checked: no lost wake-up (a waiter nobody wakes is a deadlock, which
//! loom reports); the element is held by one thread at a time (shadow
//! cells, which also order each holder's use after the previous one's);
//! the pool's direct allocations are all refused; at the end, with the
//! pool dropped, every page is back.
//!
//! Twin: `Fault::MempoolNotifyEarly` — `free` notifies before it puts the
//! element back, outside the lock: a waiter that checks the pool between
//! the two sleeps through the only notification.
#![cfg(loom)]

use lifeboat::model::{self, Fault};
use lifeboat::{Heap, Mempool, PAGE_SIZE};
use lifeboat_loom_tests::{check, check_catches, heap_of, note, Obj, Shadow};
use loom::thread;
use std::alloc::Layout;
use std::sync::Arc;

const WAITED: &str = "where a thread waited for the element";
const NO_WAIT: &str = "where no thread had to wait";

/// Pages of the pool's element.
const ELEMENT: usize = 16;

/// `pages` pages aligned to their size: a buddy block, not a slab object.
fn block(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, pages * PAGE_SIZE).expect("valid layout")
}

/// A pool on a shared heap, which it keeps alive: loom's threads need
/// `'static` data, and a `Mempool` borrows its heap.
struct Pool {
    // Declared (so dropped) before the heap it borrows.
    pool: Mempool<'static>,
    _heap: Arc<Heap>,
}

impl Pool {
    fn new(heap: &Arc<Heap>) -> Self {
        // SAFETY: the heap is kept alive by the `Arc` stored beside the
        // pool, which is dropped after the pool (field order), so the
        // borrow never outlives the heap.
        let h: &'static Heap = unsafe { &*Arc::as_ptr(heap) };
        Pool {
            pool: Mempool::in_heap(h, 1, block(ELEMENT)).expect("one element"),
            _heap: heap.clone(),
        }
    }
}

fn model() {
    let heap = Arc::new(heap_of(128 << 10));
    let shadow = Arc::new(Shadow::new(&heap, PAGE_SIZE));
    assert_eq!(
        (model::budget_pages(&heap), model::min_pages(&heap)),
        (32, 8),
        "the model's figures"
    );
    let pool = Arc::new(Pool::new(&heap));
    assert_eq!(model::free_pages(&heap), 16);

    let users: Vec<_> = [1, 2]
        .into_iter()
        .map(|who| {
            let (pool, shadow) = (pool.clone(), shadow.clone());
            thread::spawn(move || {
                let o = Obj::new(pool.pool.alloc().expect("the pool's element comes back"));
                shadow.take(o, ELEMENT * PAGE_SIZE, who);
                shadow.give(o, ELEMENT * PAGE_SIZE, who);
                // SAFETY: taken from this pool just above, given back once.
                unsafe { pool.pool.free(o.ptr()) };
            })
        })
        .collect();
    for u in users {
        u.join().expect("pool user");
    }
    let st = pool.pool.stats();
    assert_eq!((st.direct, st.hits, st.pooled), (0, 2, 1), "{st:?}");
    note(if st.waits > 0 { WAITED } else { NO_WAIT });
    drop(pool);
    lifeboat_loom_tests::assert_all_free(&heap);
}

#[test]
fn mempool_wakeup() {
    check("mempool_wakeup", &[WAITED, NO_WAIT], model);
}

#[test]
fn mempool_wakeup_twin_notify_early() {
    check_catches("mempool_wakeup", Fault::MempoolNotifyEarly, model);
}
