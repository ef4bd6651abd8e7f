//! `alloc_zeroed` returns zeroed memory even when it reuses memory that was
//! just freed dirty: small objects from a thread cache, large page blocks
//! and huge mappings; through the global allocator and private heaps.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};

use lifeboat::{AllocFlags, Config, Heap};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

const SMALL: [usize; 10] = [1, 8, 24, 64, 100, 1000, 2048, 4096, 10_000, 32 * KIB];
const LARGE: [usize; 5] = [32 * KIB + 1, 64 * KIB, 200_000, MIB, 4 * MIB];
const HUGE: [usize; 3] = [4 * MIB + 1, 8 * MIB, 12 * MIB + 4096];

const ROUNDS: usize = if cfg!(debug_assertions) { 4 } else { 10 };

/// Offset of the first non-zero byte, if any. Compares words for speed.
fn first_nonzero(p: *const u8, size: usize) -> Option<usize> {
    // SAFETY: `p` points to a live allocation of `size` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, size) };
    // SAFETY: any bit pattern is a valid u64.
    let (head, mid, tail) = unsafe { s.align_to::<u64>() };
    if let Some(i) = head.iter().position(|b| *b != 0) {
        return Some(i);
    }
    if let Some(w) = mid.iter().position(|w| *w != 0) {
        let base = head.len() + w * 8;
        return s[base..].iter().position(|b| *b != 0).map(|i| base + i);
    }
    let base = head.len() + mid.len() * 8;
    tail.iter().position(|b| *b != 0).map(|i| base + i)
}

/// Dirties blocks of `sizes` (several of each, so slabs and free lists
/// hold dirty memory), frees them, then checks `alloc_zeroed` of the same
/// sizes, dirtying those before freeing them too.
fn dirty_then_zeroed(sizes: &[usize], copies: usize, align: usize) {
    for round in 0..ROUNDS {
        let mut dirty = Vec::new();
        for &size in sizes {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            for _ in 0..copies {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "alloc({size}) failed");
                // SAFETY: fresh block of `size` bytes.
                unsafe { std::ptr::write_bytes(p, 0xAB, size) };
                dirty.push((p, layout));
            }
        }
        // Free in reverse so that LIFO caches hand the same blocks back.
        for (p, layout) in dirty.into_iter().rev() {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { dealloc(p, layout) };
        }
        let mut zeroed = Vec::new();
        for &size in sizes {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            for c in 0..copies {
                // SAFETY: non-zero size.
                let p = unsafe { alloc_zeroed(layout) };
                assert!(!p.is_null(), "alloc_zeroed({size}) failed");
                if let Some(at) = first_nonzero(p, size) {
                    panic!(
                        "alloc_zeroed({size}, align {align}) copy {c} round {round} at {p:p}: \
                         byte {at} is {:#x}",
                        // SAFETY: `at` is within the block.
                        unsafe { *p.add(at) }
                    );
                }
                zeroed.push((p, layout));
            }
        }
        for (p, layout) in zeroed {
            // SAFETY: live block of `layout.size()` bytes.
            unsafe { std::ptr::write_bytes(p, 0xAB, layout.size()) };
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { dealloc(p, layout) };
        }
    }
}

#[test]
fn small_zeroed_after_reuse() {
    dirty_then_zeroed(&SMALL, 64, 8);
}

#[test]
fn large_zeroed_after_reuse() {
    dirty_then_zeroed(&LARGE, 3, 8);
}

#[test]
fn huge_zeroed_after_reuse() {
    dirty_then_zeroed(&HUGE, 2, 8);
}

#[test]
fn aligned_zeroed_after_reuse() {
    dirty_then_zeroed(&[8, 100, 5000, 70_000, 5 * MIB], 4, 4096);
    dirty_then_zeroed(&[64, 33_000, 5 * MIB], 2, 2 * MIB);
}

/// One size at a time, the same block freed dirty and asked for zeroed
/// again: the most likely case for a stale "fresh memory" shortcut.
#[test]
fn single_block_ping_pong() {
    for &size in SMALL.iter().chain(&LARGE).chain(&HUGE) {
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        for round in 0..ROUNDS {
            // SAFETY: non-zero size.
            let p = unsafe { alloc_zeroed(layout) };
            assert!(!p.is_null());
            assert_eq!(
                first_nonzero(p, size),
                None,
                "alloc_zeroed({size}) round {round} not zero"
            );
            // SAFETY: live block of `size` bytes, then freed once.
            unsafe {
                std::ptr::write_bytes(p, 0xAB, size);
                dealloc(p, layout);
            }
        }
    }
}

/// A zeroed vector built with `vec![0; n]` (which uses `alloc_zeroed`).
#[test]
fn vec_of_zeros_after_dirty_vecs() {
    for &n in &[100usize, 5000, 40_000, 300_000, 5 * MIB] {
        for _ in 0..ROUNDS {
            let dirty = std::hint::black_box(vec![0xABu8; n]);
            drop(dirty);
            let clean = vec![0u8; n];
            assert_eq!(first_nonzero(clean.as_ptr(), n), None, "vec![0; {n}]");
        }
    }
}

#[test]
fn private_heap_zeroed_after_reuse() {
    let heap = Heap::new(Config::new().budget(32 << 20)).expect("heap");
    let sizes = [8, 64, 1000, 4096, 32 * KIB, 32 * KIB + 1, 300_000, 2 * MIB];
    for round in 0..ROUNDS {
        let mut dirty = Vec::new();
        for &size in &sizes {
            let layout = Layout::from_size_align(size, 8).expect("valid layout");
            for _ in 0..4 {
                let p = heap.alloc(layout, AllocFlags::NORMAL).expect("alloc");
                // SAFETY: fresh block of `size` bytes.
                unsafe { std::ptr::write_bytes(p.as_ptr(), 0xAB, size) };
                dirty.push((p, layout));
            }
        }
        for (p, layout) in dirty.into_iter().rev() {
            // SAFETY: allocated from `heap` with `layout`, freed once.
            unsafe { heap.dealloc(p, layout) };
        }
        let mut zeroed = Vec::new();
        for &size in &sizes {
            let layout = Layout::from_size_align(size, 8).expect("valid layout");
            for _ in 0..4 {
                let p = heap
                    .alloc_zeroed(layout, AllocFlags::NORMAL)
                    .expect("alloc_zeroed");
                assert_eq!(
                    first_nonzero(p.as_ptr(), size),
                    None,
                    "heap alloc_zeroed({size}) round {round} not zero"
                );
                zeroed.push((p, layout));
            }
        }
        for (p, layout) in zeroed {
            // SAFETY: live block from `heap`, dirtied, then freed once.
            unsafe {
                std::ptr::write_bytes(p.as_ptr(), 0xAB, layout.size());
                heap.dealloc(p, layout);
            }
        }
    }
}
