//! Private heaps with small budgets: exhaustion returns `Err` (never an
//! abort), never hands out more than the budget, never lets a normal
//! allocation take free pages below `min`, and recovers after everything is
//! freed. Several heaps side by side stay independent.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::thread;

use lifeboat::{AllocFlags, Config, Heap, Stats, PAGE_SIZE};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Pages a heap may keep in cached empty slabs after everything is freed.
const SLACK_PAGES: usize = 64;

fn heap(budget: usize) -> Heap {
    Heap::new(Config::new().budget(budget))
        .unwrap_or_else(|e| panic!("Heap::new with budget {budget}: {e}"))
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// Allocates `size`-byte blocks until the heap refuses; checks that the
/// refusal sticks and returns the blocks.
fn exhaust(h: &Heap, size: usize, flags: AllocFlags) -> Vec<NonNull<u8>> {
    let l = layout(size);
    let mut v = Vec::new();
    let cap = h.stats().budget_pages * PAGE_SIZE / size.max(1) + 10;
    loop {
        match h.alloc(l, flags) {
            Ok(p) => {
                // Touch both ends so a block outside the arena would fault.
                // SAFETY: `p` is a live block of `size` bytes.
                unsafe {
                    p.as_ptr().write(0xC3);
                    p.as_ptr().add(size - 1).write(0x3C);
                }
                v.push(p);
                assert!(
                    v.len() <= cap,
                    "heap handed out more than {cap} blocks of {size} bytes: \
                     more than its budget\n{}",
                    h.stats()
                );
            }
            Err(e) => {
                // The error is printable and further requests keep failing.
                assert!(!e.to_string().is_empty());
                for _ in 0..10 {
                    if let Ok(p) = h.alloc(l, flags) {
                        // SAFETY: `p` was just allocated with `l`.
                        unsafe { h.dealloc(p, l) };
                        panic!("allocation of {size} succeeded right after a refusal");
                    }
                }
                return v;
            }
        }
    }
}

fn free_all(h: &Heap, blocks: Vec<NonNull<u8>>, size: usize) {
    let l = layout(size);
    for p in blocks {
        // SAFETY: every block came from `h.alloc` with layout `l` and is
        // freed exactly once.
        unsafe {
            assert_eq!(p.as_ptr().read(), 0xC3, "block start overwritten");
            assert_eq!(
                p.as_ptr().add(size - 1).read(),
                0x3C,
                "block end overwritten"
            );
            h.dealloc(p, l);
        }
    }
}

/// After a normal exhaustion: not below `min`, and not far above it.
fn assert_exhausted(st: &Stats, size: usize) {
    assert!(
        st.free_pages >= st.min_pages,
        "normal allocations of {size} took free pages below min:\n{st}"
    );
    let order_pages = size.div_ceil(PAGE_SIZE).next_power_of_two().max(16);
    assert!(
        st.free_pages < st.min_pages + order_pages + SLACK_PAGES,
        "exhaustion with {size}-byte blocks stopped with {} pages free (min {}):\n{st}",
        st.free_pages,
        st.min_pages
    );
}

fn assert_recovered(h: &Heap, what: &str) {
    let st = h.stats();
    assert!(
        st.free_pages + SLACK_PAGES >= st.budget_pages,
        "{what}: only {} of {} pages free after freeing everything:\n{st}",
        st.free_pages,
        st.budget_pages
    );
    // And allocation works again, at every tier of size.
    for size in [1, 64, 4096, 64 * KIB, 512 * KIB] {
        let l = layout(size);
        let p = h
            .alloc(l, AllocFlags::NORMAL)
            .unwrap_or_else(|e| panic!("{what}: alloc({size}) after recovery: {e}\n{st}"));
        // SAFETY: allocated just above with `l`.
        unsafe { h.dealloc(p, l) };
    }
}

/// Two exhaust/free cycles with one size: both refuse with Err, the second
/// gets at least as many blocks as the first (minus slack), pages recover.
fn two_cycles(budget: usize, size: usize) {
    let h = heap(budget);
    let st0 = h.stats();
    assert_eq!(st0.budget_pages, budget / PAGE_SIZE);
    assert_eq!(st0.free_pages, st0.budget_pages, "a new heap is all free");
    assert!(st0.min_pages > 0 && st0.min_pages < st0.budget_pages);

    let first = exhaust(&h, size, AllocFlags::NORMAL);
    let st = h.stats();
    assert_exhausted(&st, size);
    let n1 = first.len();
    // The budget was used: everything above min (minus slack) was handed
    // out; slab waste is at most 1/8.
    let usable = (st0.budget_pages - st0.min_pages).saturating_sub(SLACK_PAGES) * PAGE_SIZE;
    let per_block = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let per_block = if size <= lifeboat::MAX_SMALL_SIZE {
        if cfg!(feature = "debug") {
            // The object size the blocks took, from the heap's table: under
            // `debug` a larger class, which the red zone (and, for a
            // multiple of 16, its alignment) asks for.
            st.classes
                .iter()
                .max_by_key(|c| c.live_objects)
                .map_or(size, |c| c.size)
        } else {
            size
        }
    } else {
        per_block.next_power_of_two()
    };
    assert!(
        n1 * per_block >= usable * 7 / 8,
        "only {n1} blocks of {size} fit a {budget}-byte heap:\n{st}"
    );
    free_all(&h, first, size);
    assert_recovered(&h, &format!("budget {budget} size {size} cycle 1"));

    let second = exhaust(&h, size, AllocFlags::NORMAL);
    let n2 = second.len();
    let slack = (SLACK_PAGES * PAGE_SIZE / per_block).max(1);
    assert!(
        n2 + slack >= n1,
        "second cycle got {n2} blocks of {size}, first got {n1}"
    );
    assert_exhausted(&h.stats(), size);
    free_all(&h, second, size);
    assert_recovered(&h, &format!("budget {budget} size {size} cycle 2"));
}

#[test]
fn exhaust_small_4m() {
    two_cycles(4 * MIB, 64);
}

#[test]
fn exhaust_small_8m() {
    two_cycles(8 * MIB, 64);
}

#[test]
fn exhaust_large_4m() {
    two_cycles(4 * MIB, 64 * KIB);
}

#[test]
fn exhaust_large_8m() {
    two_cycles(8 * MIB, 64 * KIB);
}

#[test]
#[cfg_attr(
    feature = "debug",
    ignore = "counts objects per class; `debug` adds red zones, which change classes"
)]
fn exhaust_odd_sizes() {
    two_cycles(4 * MIB, 24);
    two_cycles(4 * MIB, 3000);
    two_cycles(4 * MIB, 32 * KIB + 1);
    two_cycles(8 * MIB, MIB);
}

#[test]
fn huge_requests_beyond_budget_fail() {
    for budget in [4 * MIB, 8 * MIB] {
        let h = heap(budget);
        for size in [
            budget,
            budget + 1,
            budget + 4 * MIB,
            64 * MIB,
            1 << 30,
            isize::MAX as usize - 2 * MIB,
        ] {
            let l = layout(size);
            assert!(
                h.alloc(l, AllocFlags::NORMAL).is_err(),
                "alloc({size}) on a {budget}-byte heap succeeded"
            );
            assert!(h.alloc_zeroed(l, AllocFlags::NORMAL).is_err());
            assert!(h.alloc(l, AllocFlags::HIGH | AllocFlags::NORETRY).is_err());
        }
        // A realloc that would exceed the budget fails and keeps the block.
        let l = layout(100);
        let p = h.alloc(l, AllocFlags::NORMAL).expect("small alloc");
        // SAFETY: `p` is a live 100-byte block.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0x42, 100) };
        // SAFETY: `p` was allocated with `l`.
        let r = unsafe { h.realloc(p, l, budget * 2, AllocFlags::NORMAL) };
        assert!(r.is_err(), "realloc to twice the budget succeeded");
        // SAFETY: on failure the old block is still live with 100 bytes.
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), 100) };
        assert!(
            s.iter().all(|b| *b == 0x42),
            "failed realloc damaged the block"
        );
        // SAFETY: allocated with `l`, freed once.
        unsafe { h.dealloc(p, l) };
        assert_recovered(&h, "after huge refusals");
    }
}

/// Requests between 4 MiB and the budget: whatever is granted fits the
/// budget.
#[test]
fn huge_requests_within_budget_respect_it() {
    let budget = 8 * MIB;
    for size in [3 * MIB, 4 * MIB + 1, 5 * MIB, 6 * MIB] {
        let h = heap(budget);
        let blocks = exhaust(&h, size, AllocFlags::NORMAL);
        assert!(
            blocks.len() * size <= budget,
            "{} blocks of {size} from a {budget}-byte heap",
            blocks.len()
        );
        free_all(&h, blocks, size);
        assert_recovered(&h, &format!("huge {size}"));
    }
}

#[test]
fn zero_size_layouts() {
    let h = heap(4 * MIB);
    for align in [1, 8, 64, 4096] {
        let l = Layout::from_size_align(0, align).expect("valid layout");
        let mut ps = Vec::new();
        for _ in 0..100 {
            let p = h
                .alloc(l, AllocFlags::NORMAL)
                .unwrap_or_else(|e| panic!("zero-size alloc align {align}: {e}"));
            assert_eq!(p.as_ptr() as usize % align, 0, "zero-size block misaligned");
            ps.push(p);
        }
        let z = h
            .alloc_zeroed(l, AllocFlags::NORMAL)
            .expect("zero-size zeroed");
        assert_eq!(z.as_ptr() as usize % align, 0);
        ps.push(z);
        for p in ps {
            // SAFETY: allocated from `h` with `l`, freed once.
            unsafe { h.dealloc(p, l) };
        }
    }
    // Growing a zero-size block.
    let l0 = Layout::from_size_align(0, 8).expect("valid layout");
    let p = h.alloc(l0, AllocFlags::NORMAL).expect("zero-size alloc");
    // SAFETY: `p` was allocated with `l0`.
    let q = unsafe { h.realloc(p, l0, 100, AllocFlags::NORMAL) }.expect("realloc from 0");
    // SAFETY: `q` has 100 bytes.
    unsafe { std::ptr::write_bytes(q.as_ptr(), 1, 100) };
    // SAFETY: `q` is live with size 100.
    unsafe { h.dealloc(q, layout(100)) };
    assert_recovered(&h, "zero-size");
}

#[test]
fn silly_budgets_are_rejected() {
    for budget in [0, 1, 4096, 8192, usize::MAX, usize::MAX / 2] {
        match Heap::new(Config::new().budget(budget)) {
            Ok(h) => panic!("Heap::new accepted budget {budget}: {}", h.stats()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn heaps_side_by_side_are_independent() {
    let heaps: Vec<Heap> = [4 * MIB, 8 * MIB, 4 * MIB, 8 * MIB]
        .into_iter()
        .map(heap)
        .collect();
    // Exhaust heap 0; the others still allocate normally.
    let b0 = exhaust(&heaps[0], 256, AllocFlags::NORMAL);
    for (i, h) in heaps.iter().enumerate().skip(1) {
        let l = layout(256);
        let p = h
            .alloc(l, AllocFlags::NORMAL)
            .unwrap_or_else(|e| panic!("heap {i} refused while heap 0 was full: {e}"));
        let st = h.stats();
        assert!(
            st.free_pages + SLACK_PAGES >= st.budget_pages,
            "heap {i} lost pages while heap 0 was exhausted:\n{st}"
        );
        // SAFETY: allocated from `h` with `l`.
        unsafe { h.dealloc(p, l) };
    }
    // Exhaust all of them, interleaved, with mixed sizes.
    let sizes = [64, 4000, 64 * KIB, 200 * KIB];
    let mut blocks: Vec<Vec<(NonNull<u8>, usize)>> = heaps.iter().map(|_| Vec::new()).collect();
    let mut done = [false; 4];
    let mut k = 0;
    while !done.iter().skip(1).all(|d| *d) {
        for (i, h) in heaps.iter().enumerate().skip(1) {
            if done[i] {
                continue;
            }
            let size = sizes[(k + i) % sizes.len()];
            match h.alloc(layout(size), AllocFlags::NORMAL) {
                Ok(p) => {
                    // SAFETY: `p` has `size` bytes.
                    unsafe { std::ptr::write_bytes(p.as_ptr(), i as u8, size) };
                    blocks[i].push((p, size));
                }
                Err(_) if size >= 64 * KIB => {}
                Err(_) => done[i] = true,
            }
        }
        k += 1;
    }
    // No block of one heap overlaps a block of another.
    let mut all: Vec<(usize, usize, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(i, v)| v.iter().map(move |(p, s)| (p.as_ptr() as usize, *s, i)))
        .chain(b0.iter().map(|p| (p.as_ptr() as usize, 256, 0)))
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        assert!(
            w[0].0 + w[0].1 <= w[1].0,
            "block {:#x}+{} of heap {} overlaps block {:#x} of heap {}",
            w[0].0,
            w[0].1,
            w[0].2,
            w[1].0,
            w[1].2
        );
    }
    for (i, h) in heaps.iter().enumerate().skip(1) {
        let st = h.stats();
        assert!(st.free_pages >= st.min_pages, "heap {i} below min:\n{st}");
        let mut handed = 0;
        for &(p, size) in &blocks[i] {
            // SAFETY: the block is live with `size` bytes written with `i`.
            let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            assert!(
                s.iter().all(|b| *b == i as u8),
                "heap {i} block overwritten"
            );
            handed += size;
        }
        assert!(handed <= st.budget_pages * PAGE_SIZE);
    }
    free_all(&heaps[0], b0, 256);
    for (i, h) in heaps.iter().enumerate() {
        for (p, size) in blocks[i].drain(..) {
            // SAFETY: allocated from `h` with `layout(size)`, freed once.
            unsafe { h.dealloc(p, layout(size)) };
        }
        assert_recovered(h, &format!("side-by-side heap {i}"));
    }
}

/// Addresses are sent between threads as integers.
#[derive(Clone, Copy)]
struct Addr(usize);

#[test]
fn shared_heap_exhausted_by_threads() {
    let h = Arc::new(heap(8 * MIB));
    let got: Arc<Mutex<Vec<(Addr, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let h = Arc::clone(&h);
            let got = Arc::clone(&got);
            thread::spawn(move || {
                let size = [64, 512, 8000, 40 * KIB][t];
                let mut mine = Vec::new();
                while let Ok(p) = h.alloc(layout(size), AllocFlags::NORMAL) {
                    // SAFETY: `p` has `size` bytes.
                    unsafe { std::ptr::write_bytes(p.as_ptr(), t as u8 + 1, size) };
                    mine.push((Addr(p.as_ptr() as usize), size));
                }
                got.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    let st = h.stats();
    assert!(
        st.free_pages >= st.min_pages,
        "threads took pages below min:\n{st}"
    );
    let blocks = std::mem::take(&mut *got.lock().expect("lock"));
    let total: usize = blocks.iter().map(|b| b.1).sum();
    assert!(total <= st.budget_pages * PAGE_SIZE);
    assert!(total >= 4 * MIB, "only {total} bytes from an 8 MiB heap");
    // Free everything from threads other than the allocating ones.
    let chunks: Vec<Vec<(Addr, usize)>> = blocks.chunks(997).map(|c| c.to_vec()).collect();
    let frees: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let h = Arc::clone(&h);
            thread::spawn(move || {
                for (Addr(a), size) in chunk {
                    let p = NonNull::new(a as *mut u8).expect("non-null");
                    // SAFETY: the block came from `h` with `layout(size)` and
                    // is freed exactly once.
                    unsafe { h.dealloc(p, layout(size)) };
                }
            })
        })
        .collect();
    for f in frees {
        f.join().expect("freeing thread panicked");
    }
    assert_recovered(&h, "shared heap");
}

/// The reserve below `min` opens only to `MEMALLOC`, and what it hands out
/// never goes to a normal request.
#[test]
fn reserve_is_only_for_memalloc() {
    let h = heap(4 * MIB);
    let normal = exhaust(&h, 64, AllocFlags::NORMAL);
    let l = layout(64);
    let min = h.stats().min_pages;
    // Keep going with MEMALLOC until the reserve below `min` is in use.
    let mut reserve = Vec::new();
    while h.stats().free_pages >= min {
        for _ in 0..64 {
            let p = h.alloc(l, AllocFlags::MEMALLOC).unwrap_or_else(|e| {
                panic!(
                    "MEMALLOC allocation refused after {} with free pages at/above min: {e}\n{}",
                    reserve.len(),
                    h.stats()
                )
            });
            reserve.push(p);
        }
        assert!(
            reserve.len() <= 4 * MIB / 64,
            "MEMALLOC never reached the reserve"
        );
    }
    assert!(
        reserve.iter().any(|p| h.is_reserve_backed(p.as_ptr())),
        "objects allocated below min with MEMALLOC are not reserve-backed:\n{}",
        h.stats()
    );
    // A normal request now: refused, or served from a slab that is not
    // reserve-backed.
    for _ in 0..100 {
        match h.alloc(l, AllocFlags::NORMAL) {
            Err(_) => {}
            Ok(p) => {
                assert!(
                    !h.is_reserve_backed(p.as_ptr()),
                    "a NORMAL allocation received a reserve-backed object"
                );
                // SAFETY: allocated just above with `l`.
                unsafe { h.dealloc(p, l) };
            }
        }
    }
    for p in reserve {
        // SAFETY: allocated from `h` with `l`, freed once.
        unsafe { h.dealloc(p, l) };
    }
    free_all(&h, normal, 64);
    assert_recovered(&h, "after reserve use");
}
