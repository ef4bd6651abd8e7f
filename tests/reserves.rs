//! Memory reserves on private heaps with small budgets: tiers refused
//! exactly at their marks, memalloc down to the last page, nomemalloc wins,
//! reserve-backed objects never reach threads without the right, the
//! atomic share, the reserve-user bound, Mempool and the Reserve allocator.

use lifeboat::{AllocError, AllocFlags, Config, Heap, Mempool};
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Two pages, served by the buddy arena directly (alignment above a page).
fn two_pages() -> Layout {
    Layout::from_size_align(2 * PAGE, 2 * PAGE).unwrap()
}

fn small() -> Layout {
    Layout::from_size_align(64, 8).unwrap()
}

/// Allocates `layout` under `flags` until refused; returns the blocks and
/// the error that stopped it.
fn exhaust(heap: &Heap, layout: Layout, flags: AllocFlags) -> (Vec<NonNull<u8>>, AllocError) {
    let mut v = Vec::new();
    loop {
        match heap.alloc(layout, flags) {
            Ok(p) => v.push(p),
            Err(e) => return (v, e),
        }
    }
}

fn free_all(heap: &Heap, v: Vec<NonNull<u8>>, layout: Layout) {
    for p in v {
        // SAFETY: every pointer came from `heap.alloc(layout, ..)`.
        unsafe { heap.dealloc(p, layout) };
    }
}

/// A heap with `min` = exactly `min_pages`.
fn heap_with_min(budget: usize, min_pages: usize) -> Heap {
    let h = Heap::new(Config::new().budget(budget).min_free(min_pages * PAGE)).unwrap();
    assert_eq!(h.stats().min_pages, min_pages);
    h
}

#[test]
fn normal_is_refused_at_min_and_memalloc_reaches_zero() {
    let heap = heap_with_min(8 * MIB, 96);
    let budget = heap.stats().budget_pages;
    assert_eq!(budget, 2048);
    let (normal, err) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    assert_eq!(err, AllocError::Watermark);
    let free = heap.stats().free_pages;
    assert!((96..98).contains(&free), "normal stopped at {free}, min 96");
    assert_eq!(heap.stats().refusals.normal, 1);

    // The memalloc right (thread scope) opens the reserve, to the last page.
    let (reserve, err) = lifeboat::memalloc(|| exhaust(&heap, two_pages(), AllocFlags::NORMAL));
    assert_eq!(err, AllocError::Watermark);
    assert_eq!(reserve.len(), 48);
    assert_eq!(heap.stats().free_pages, 0);
    let st = heap.stats();
    assert_eq!(st.reserve_pages, 96);
    assert_eq!(st.grants.memalloc, 48);

    free_all(&heap, reserve, two_pages());
    free_all(&heap, normal, two_pages());
    let st = heap.stats();
    assert_eq!(st.free_pages, budget);
    assert_eq!(st.reserve_pages, 0);
}

#[test]
fn tier_boundaries_to_the_page() {
    // min 96: HIGH and the OOM victim may use half (stop at 48), ATOMIC
    // 62.5 % (stop at 36).
    for (flags, stop) in [
        (AllocFlags::HIGH, 48),
        (AllocFlags::ATOMIC, 36),
        (AllocFlags::ATOMIC | AllocFlags::HIGH, 36),
    ] {
        let heap = heap_with_min(8 * MIB, 96);
        let (v, _) = exhaust(&heap, two_pages(), flags);
        let free = heap.stats().free_pages;
        assert!(
            (stop..stop + 2).contains(&free),
            "{flags:?}: stopped at {free}, want {stop}"
        );
        free_all(&heap, v, two_pages());
    }
    let heap = heap_with_min(8 * MIB, 96);
    let free = std::thread::scope(|s| {
        s.spawn(|| {
            lifeboat::mark_oom_victim();
            let (v, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
            let free = heap.stats().free_pages;
            free_all(&heap, v, two_pages());
            free
        })
        .join()
        .unwrap()
    });
    assert!((48..50).contains(&free), "OOM victim stopped at {free}");
    // The mark does not leak to other threads.
    let (v, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    assert!(heap.stats().free_pages >= 96);
    free_all(&heap, v, two_pages());
}

#[test]
fn nomemalloc_wins_inside_memalloc() {
    let heap = heap_with_min(8 * MIB, 96);
    let (normal, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    {
        let _m = lifeboat::memalloc_scope();
        {
            let _n = lifeboat::nomemalloc_scope();
            assert_eq!(
                heap.alloc(two_pages(), AllocFlags::NORMAL),
                Err(AllocError::Watermark)
            );
            assert_eq!(
                heap.alloc(two_pages(), AllocFlags::MEMALLOC),
                Err(AllocError::Watermark)
            );
            if let Ok(p) = heap.alloc(small(), AllocFlags::NORMAL) {
                assert!(!heap.is_reserve_backed(p.as_ptr()));
                // SAFETY: allocated just above.
                unsafe { heap.dealloc(p, small()) };
            }
        }
        // The inner guard restored only its own bit: memalloc works again.
        let p = heap
            .alloc(two_pages(), AllocFlags::NORMAL)
            .expect("memalloc restored");
        // An explicit NOMEMALLOC flag wins over the scope too.
        assert_eq!(
            heap.alloc(two_pages(), AllocFlags::NOMEMALLOC),
            Err(AllocError::Watermark)
        );
        // SAFETY: allocated just above.
        unsafe { heap.dealloc(p, two_pages()) };
    }
    // Out of the scope: refused again.
    assert_eq!(
        heap.alloc(two_pages(), AllocFlags::NORMAL),
        Err(AllocError::Watermark)
    );
    // Out-of-order guards restore exactly their own bits.
    let m = lifeboat::memalloc_scope();
    let n = lifeboat::nomemalloc_scope();
    drop(m);
    assert_eq!(
        heap.alloc(two_pages(), AllocFlags::MEMALLOC),
        Err(AllocError::Watermark)
    );
    drop(n);
    let p = heap
        .alloc(two_pages(), AllocFlags::MEMALLOC)
        .expect("explicit flag after guards");
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, two_pages()) };
    assert_eq!(
        heap.alloc(two_pages(), AllocFlags::NORMAL),
        Err(AllocError::Watermark)
    );
    free_all(&heap, normal, two_pages());
}

#[test]
fn reserve_objects_never_reach_unprivileged_threads() {
    let heap = heap_with_min(8 * MIB, 96);
    // Push the heap below min with blocks, leaving room only in the reserve.
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    let rounds = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    let stop = AtomicBool::new(false);
    let reserve_seen = AtomicUsize::new(0);
    let unpriv_ok = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<usize>();
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let tx = tx.clone();
            let (heap, reserve_seen) = (&heap, &reserve_seen);
            s.spawn(move || {
                let _g = lifeboat::memalloc_scope();
                let mut mine = Vec::new();
                for i in 0..rounds {
                    if let Ok(p) = heap.alloc(small(), AllocFlags::NORMAL) {
                        if heap.is_reserve_backed(p.as_ptr()) {
                            reserve_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 3 == 0 {
                            // Freed by an unprivileged thread: a remote free.
                            tx.send(p.as_ptr() as usize).unwrap();
                        } else {
                            mine.push(p);
                        }
                    }
                    if mine.len() > 40 {
                        free_all(heap, mine.drain(..20).collect(), small());
                    }
                }
                free_all(heap, mine, small());
            });
        }
        drop(tx);
        for _ in 0..2 {
            let (heap, stop, unpriv_ok, rx) = (&heap, &stop, &unpriv_ok, &rx);
            s.spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..8 {
                        if let Ok(p) = heap.alloc(small(), AllocFlags::NORMAL) {
                            assert!(
                                !heap.is_reserve_backed(p.as_ptr()),
                                "an unprivileged thread received a reserve-backed object"
                            );
                            unpriv_ok.fetch_add(1, Ordering::Relaxed);
                            mine.push(p);
                        }
                    }
                    free_all(heap, std::mem::take(&mut mine), small());
                    let msg = rx.lock().unwrap().recv_timeout(Duration::from_millis(1));
                    match msg {
                        // SAFETY: a live object of `heap`, handed over for freeing.
                        Ok(p) => unsafe {
                            heap.dealloc(NonNull::new(p as *mut u8).unwrap(), small())
                        },
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                }
            });
        }
        // The unprivileged threads stop when the channel closes.
        let _ = &stop;
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        reserve_seen.load(Ordering::Relaxed) > 0,
        "the race never exercised reserve slabs"
    );
    free_all(&heap, blocks, two_pages());
    heap.flush_caches();
    let st = heap.stats();
    assert_eq!(st.free_pages, st.budget_pages, "pages lost:\n{st}");
    assert_eq!(st.reserve_slabs, 0);
}

#[test]
fn emptied_reserve_slab_returns_its_pages_at_once() {
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    // Small allocations are refused too (no slab has room and none may be carved).
    heap.flush_caches();
    let before = heap.stats().free_pages;
    let p = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    assert!(heap.is_reserve_backed(p.as_ptr()));
    let st = heap.stats();
    assert_eq!(st.reserve_slabs, 1);
    assert!(st.free_pages < before);
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, small()) };
    let st = heap.stats();
    assert_eq!(
        st.reserve_slabs, 0,
        "the empty reserve slab must be released"
    );
    assert_eq!(st.free_pages, before);
    assert_eq!(st.reserve_pages, 0);
    free_all(&heap, blocks, two_pages());
}

/// A reserve allocation takes its object in the lock round that claims or
/// carves the reserve slab and leaves the slab detached: one round for the
/// ordinary attempt that the mark refuses, one for the reserve, and no
/// third to give the slab up afterwards.
#[test]
fn a_reserve_allocation_takes_two_lock_rounds() {
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    heap.flush_caches();
    const N: usize = 40;
    let first = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    let before = heap.stats().lock_acquisitions;
    let objs: Vec<NonNull<u8>> = (0..N)
        .map(|_| heap.alloc(small(), AllocFlags::MEMALLOC).unwrap())
        .collect();
    // (This snapshot takes the lock once more.)
    let after = heap.stats();
    assert!(objs.iter().all(|p| heap.is_reserve_backed(p.as_ptr())));
    assert_eq!(after.reserve_slabs, 1, "{N} objects of one 64-byte slab");
    let rounds = after.lock_acquisitions - before;
    assert!(
        (2 * N..=2 * N + 1).contains(&rounds),
        "{rounds} heap-lock rounds for {N} reserve allocations"
    );
    free_all(&heap, objs, small());
    free_all(&heap, vec![first], small());
    assert_eq!(heap.stats().reserve_slabs, 0);
    free_all(&heap, blocks, two_pages());
}

/// Every object of a reserve-backed slab serves reserve allocations
/// before another slab is carved from the reserve: a reserve allocation
/// takes one object a claim, so the slab stays claimable (listed) down to
/// its last free object.
#[test]
fn a_reserve_slab_is_used_up_before_the_next_is_carved() {
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    heap.flush_caches();
    let first = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    let st = heap.stats();
    assert_eq!(st.reserve_slabs, 1);
    // The class that serves the request (larger under `debug`, by the
    // red zone), the only one with a live object.
    let class = st.classes.iter().find(|c| c.live_objects == 1).unwrap();
    let capacity = st.reserve_pages * PAGE / class.size;
    let mut objs = vec![first];
    while heap.stats().reserve_slabs == 1 {
        objs.push(heap.alloc(small(), AllocFlags::MEMALLOC).unwrap());
        assert!(objs.len() <= capacity + 1, "a second slab never came");
    }
    assert_eq!(
        objs.len(),
        capacity + 1,
        "the second reserve slab came before the first's {capacity} objects were used"
    );
    heap.verify().unwrap();
    // Another thread's free gives the full first slab one free object,
    // which is enough to list it (verify checks that it is listed).
    let freed = objs.swap_remove(0);
    let addr = freed.as_ptr() as usize;
    std::thread::scope(|t| {
        t.spawn(|| {
            // SAFETY: a live object of `heap`, freed once.
            unsafe { heap.dealloc(NonNull::new(addr as *mut u8).unwrap(), small()) };
        });
    });
    heap.verify().unwrap();
    free_all(&heap, objs, small());
    assert_eq!(heap.stats().reserve_slabs, 0);
    free_all(&heap, blocks, two_pages());
}

#[test]
fn reserve_flags_clear_when_pressure_lifts() {
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    heap.flush_caches();
    let a = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    let b = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    assert!(heap.is_reserve_backed(a.as_ptr()));
    free_all(&heap, blocks, two_pages());
    // Above `high` now; the next slow-path allocation lifts the flags.
    let big = heap.alloc(two_pages(), AllocFlags::NORMAL).unwrap();
    heap.flush_caches();
    let c = heap
        .alloc(
            Layout::from_size_align(24_000, 8).unwrap(),
            AllocFlags::NORMAL,
        )
        .unwrap();
    assert!(
        !heap.is_reserve_backed(a.as_ptr()),
        "flag must clear above high"
    );
    assert_eq!(heap.stats().reserve_slabs, 0);
    // SAFETY: all allocated above from this heap.
    unsafe {
        heap.dealloc(a, small());
        heap.dealloc(b, small());
        heap.dealloc(big, two_pages());
        heap.dealloc(c, Layout::from_size_align(24_000, 8).unwrap());
    }
}

#[test]
fn a_spent_reserve_slab_is_lifted_when_pressure_lifts() {
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    heap.flush_caches();
    let first = heap.alloc(small(), AllocFlags::MEMALLOC).unwrap();
    let st = heap.stats();
    let class = st.classes.iter().find(|c| c.live_objects == 1).unwrap();
    let capacity = st.reserve_pages * PAGE / class.size;
    // Every object of the slab handed out: it has none left to give.
    let mut objs = vec![first];
    while objs.len() < capacity {
        objs.push(heap.alloc(small(), AllocFlags::MEMALLOC).unwrap());
    }
    assert_eq!(heap.stats().reserve_slabs, 1, "one slab holds {capacity}");
    heap.verify().unwrap();
    free_all(&heap, blocks, two_pages());
    // Above `high` now; the next slow-path allocation lifts the reserve.
    heap.flush_caches();
    let other = Layout::from_size_align(24_000, 8).unwrap();
    let c = heap.alloc(other, AllocFlags::NORMAL).unwrap();
    let st = heap.stats();
    assert_eq!(
        (st.reserve_slabs, st.reserve_pages),
        (0, 0),
        "a reserve slab with no free object outlived the pressure"
    );
    assert!(!heap.is_reserve_backed(first.as_ptr()));
    heap.verify().unwrap();
    // Now an ordinary detached slab: another thread's frees of a quarter
    // of it list it (verify checks that it is listed).
    let rest = objs.split_off(capacity / 4);
    let addrs: Vec<usize> = objs.iter().map(|p| p.as_ptr() as usize).collect();
    std::thread::scope(|t| {
        t.spawn(|| {
            for &a in &addrs {
                // SAFETY: live objects of `heap`, each freed once.
                unsafe { heap.dealloc(NonNull::new(a as *mut u8).unwrap(), small()) };
            }
        });
    });
    heap.verify().unwrap();
    free_all(&heap, rest, small());
    // SAFETY: allocated above from this heap with this layout.
    unsafe { heap.dealloc(c, other) };
    heap.verify().unwrap();
}

#[test]
fn atomic_share_survives_a_memalloc_thread() {
    let heap = Heap::new(
        Config::new()
            .budget(8 * MIB)
            .min_free(96 * PAGE)
            .atomic_reserve(32 * PAGE),
    )
    .unwrap();
    let (normal, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    let (reserve, err) = exhaust(&heap, two_pages(), AllocFlags::MEMALLOC);
    assert_eq!(err, AllocError::Watermark);
    let free = heap.stats().free_pages;
    assert!(
        (32..34).contains(&free),
        "memalloc stopped at {free}, atomic share 32"
    );
    let (atomic, _) = exhaust(&heap, two_pages(), AllocFlags::ATOMIC);
    assert!(
        atomic.len() >= 16,
        "ATOMIC got {} blocks of the share",
        atomic.len()
    );
    assert!(heap.stats().free_pages < 2);
    free_all(&heap, atomic, two_pages());
    free_all(&heap, reserve, two_pages());
    free_all(&heap, normal, two_pages());
}

#[test]
fn reserve_user_bound_makes_others_wait_then_fail() {
    let heap = Heap::new(
        Config::new()
            .budget(8 * MIB)
            .min_free(96 * PAGE)
            .max_reserve_users(1)
            .reserve_wait_ms(50),
    )
    .unwrap();
    let (normal, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    let inside = Barrier::new(2);
    let done = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let g = lifeboat::memalloc_scope();
            let p = heap.alloc(two_pages(), AllocFlags::NORMAL).unwrap();
            assert_eq!(heap.stats().reserve_users, 1);
            inside.wait();
            done.wait();
            // SAFETY: allocated above.
            unsafe { heap.dealloc(p, two_pages()) };
            drop(g);
            assert_eq!(
                heap.stats().reserve_users,
                0,
                "the place is released with the scope"
            );
        });
        s.spawn(|| {
            inside.wait();
            let _g = lifeboat::memalloc_scope();
            assert_eq!(
                heap.alloc(two_pages(), AllocFlags::NORMAL),
                Err(AllocError::ReserveBusy)
            );
            let st = heap.stats();
            assert_eq!((st.reserve_waits, st.reserve_timeouts), (1, 1));
            done.wait();
        });
    });
    // With the first user gone, a new one gets in.
    let p = lifeboat::memalloc(|| heap.alloc(two_pages(), AllocFlags::NORMAL)).unwrap();
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, two_pages()) };
    assert_eq!(heap.stats().reserve_users, 0);
    free_all(&heap, normal, two_pages());
}

#[test]
fn mempool_makes_progress_on_an_exhausted_heap() {
    let heap = heap_with_min(8 * MIB, 96);
    let layout = Layout::from_size_align(1024, 8).unwrap();
    let pool = Mempool::in_heap(&heap, 4, layout).unwrap();
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    // Drain what the slabs still hold so the heap itself refuses.
    let (smalls, _) = exhaust(&heap, layout, AllocFlags::NORMAL);
    let per_thread = if cfg!(debug_assertions) { 200 } else { 2000 };
    let pool = Arc::new(pool);
    std::thread::scope(|s| {
        for _ in 0..3 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..per_thread {
                    let p = pool
                        .alloc_timeout(Duration::from_secs(10))
                        .expect("forward progress");
                    // SAFETY: the element is 1 KiB.
                    unsafe { p.as_ptr().write_bytes(i as u8, 1024) };
                    // SAFETY: from this pool.
                    unsafe { pool.free(p) };
                }
            });
        }
    });
    let st = pool.stats();
    assert_eq!(st.timeouts, 0);
    assert!(st.hits >= 3 * per_thread, "{st:?}");
    assert_eq!(st.pooled, 4);

    // All elements out: a waiter times out, or is woken by a free.
    let taken: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
    assert_eq!(
        pool.alloc_timeout(Duration::from_millis(20)),
        Err(AllocError::Timeout)
    );
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            pool.alloc_timeout(Duration::from_secs(10))
                .map(|p| p.as_ptr() as usize)
        });
        std::thread::sleep(Duration::from_millis(20));
        // SAFETY: from this pool.
        unsafe { pool.free(taken[0]) };
        let p = waiter.join().unwrap().expect("woken by the free");
        let p = NonNull::new(p as *mut u8).unwrap();
        // SAFETY: from this pool.
        unsafe { pool.free(p) };
    });
    for &p in &taken[1..] {
        // SAFETY: from this pool.
        unsafe { pool.free(p) };
    }
    drop(pool);
    free_all(&heap, smalls, layout);
    free_all(&heap, blocks, two_pages());
}

#[test]
fn reserve_allocator_serves_collections_below_min() {
    use allocator_api2::vec::Vec as RVec;
    let heap = heap_with_min(8 * MIB, 96);
    let (blocks, _) = exhaust(&heap, two_pages(), AllocFlags::NORMAL);
    assert!(heap.alloc(two_pages(), AllocFlags::NORMAL).is_err());
    let mut v: RVec<u64, _> = RVec::new_in(heap.reserve());
    for i in 0..10_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 10_000 * 9_999 / 2);
    assert!(heap.stats().reserve_pages > 0);
    // When the reserve is gone too, the collection reports an error.
    let mut huge: RVec<u8, _> = RVec::new_in(heap.reserve());
    assert!(huge.try_reserve(64 * MIB).is_err());
    drop(v);
    free_all(&heap, blocks, two_pages());
    assert_eq!(heap.stats().reserve_pages, 0);
}

/// A direct mapping taken again from the heap's cache of freed mappings
/// may be up to a quarter longer than the request; that extra is charged
/// with the caller's rights, so a caller without the memalloc right (here
/// one that refuses it outright) cannot take the heap below `min` by it.
#[test]
fn a_cached_mapping_reused_takes_no_reserve_pages() {
    // 128 MiB: mappings of up to 8 MiB are cached.
    let heap = Heap::new(Config::new().budget(128 * MIB)).unwrap();
    let min = heap.stats().min_pages;
    // A 5 MiB mapping (1280 pages) freed into the cache.
    let big = Layout::from_size_align(5 * MIB, 8).unwrap();
    let p = heap.alloc(big, AllocFlags::NORMAL).unwrap();
    // SAFETY: allocated just above with `big`, freed once.
    unsafe { heap.dealloc(p, big) };
    // 4 MiB and a page (1025 pages) would reuse it: fill the heap until
    // the request fits above `min`, but the cached mapping does not.
    let request = Layout::from_size_align(4 * MIB + PAGE, 8).unwrap();
    let block = Layout::from_size_align(64 << 10, 8).unwrap();
    let mut held = Vec::new();
    while heap.stats().free_pages >= min + 1025 + 100 {
        held.push(heap.alloc(block, AllocFlags::NORMAL).unwrap());
    }
    assert!(heap.stats().free_pages < min + 1280);
    let q = heap
        .alloc(request, AllocFlags::NOMEMALLOC | AllocFlags::NORETRY)
        .expect("the request itself fits above min");
    let after = heap.stats().free_pages;
    // SAFETY: allocated just above with `request`, freed once.
    unsafe { heap.dealloc(q, request) };
    free_all(&heap, held, block);
    assert!(
        after >= min,
        "free pages {after} below min {min} after a request without the right"
    );
}
