//! Every power-of-two alignment from 1 B to 4 MiB against sizes around each
//! boundary of the allocator (size classes, page, small/large limit, 4 MiB
//! huge limit), through `std::alloc` with lifeboat as the global allocator.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

const SIZES: [usize; 19] = [
    1,
    7,
    8,
    9,
    24,
    63,
    64,
    65,
    100,
    1000,
    4095,
    4096,
    4097,
    32 * KIB,
    32 * KIB + 1,
    MIB,
    4 * MIB,
    4 * MIB + 1,
    9 * MIB,
];

fn alignments() -> impl Iterator<Item = usize> {
    (0..=22).map(|s| 1usize << s)
}

/// Distinct fill byte per (alignment, size) pair, never zero.
fn fill_byte(align: usize, size: usize) -> u8 {
    (((align.trailing_zeros() as usize) * 31 + size * 7) % 251 + 1) as u8
}

/// Checks the whole of a small block, and a sample of a big one (every
/// 509th byte plus both ends), for `byte`.
fn check(p: *const u8, size: usize, byte: u8) -> Result<(), usize> {
    // SAFETY: `p` points to a live allocation of `size` bytes that was fully
    // initialised with `write_bytes`.
    let s = unsafe { std::slice::from_raw_parts(p, size) };
    if size <= 64 * KIB {
        return match s.iter().position(|b| *b != byte) {
            Some(i) => Err(i),
            None => Ok(()),
        };
    }
    let mut i = 0;
    while i < size {
        if s[i] != byte {
            return Err(i);
        }
        i += 509;
    }
    let tail = size - 4096;
    match s[tail..].iter().position(|b| *b != byte) {
        Some(i) => Err(tail + i),
        None => Ok(()),
    }
}

/// For every alignment, allocates every size at once (so blocks coexist),
/// fills each with its own byte, checks alignment and that no block was
/// overwritten by another, then frees them.
#[test]
fn alignment_size_matrix() {
    let mut tried = 0;
    for align in alignments() {
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        for &size in &SIZES {
            let Ok(layout) = Layout::from_size_align(size, align) else {
                continue; // the only combinations skipped: Layout rejects them
            };
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "alloc failed for size {size} align {align}");
            assert_eq!(
                p as usize % align,
                0,
                "misaligned block {p:p} for size {size} align {align}"
            );
            let byte = fill_byte(align, size);
            // SAFETY: `p` is a fresh allocation of `size` bytes.
            unsafe { std::ptr::write_bytes(p, byte, size) };
            live.push((p, layout, byte));
            tried += 1;
        }
        // The blocks above 4 MiB are direct mappings, and they are live.
        let huge_live = SIZES.iter().filter(|s| **s > 4 * MIB).sum::<usize>();
        let st = lifeboat::stats();
        assert!(
            st.huge_bytes >= huge_live,
            "align {align}: {huge_live} bytes of huge blocks live, stats say {}",
            st.huge_bytes
        );
        for &(p, layout, byte) in &live {
            if let Err(at) = check(p, layout.size(), byte) {
                panic!(
                    "block of size {} align {} at {p:p} overwritten at offset {at}",
                    layout.size(),
                    layout.align()
                );
            }
        }
        for (p, layout, _) in live {
            // SAFETY: `p` was allocated with `layout` and is freed once.
            unsafe { dealloc(p, layout) };
        }
    }
    assert_eq!(tried, 23 * SIZES.len());
}

/// Small aligned objects in bulk: alignment must hold for every object of a
/// slab, not only the first.
#[test]
fn many_small_aligned_objects() {
    for align in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192] {
        for size in [1, 8, 24, 100, 500, 3000] {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            let mut ptrs = Vec::with_capacity(300);
            for k in 0..300u32 {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(
                    p as usize % align,
                    0,
                    "object {k} of size {size} align {align} misaligned: {p:p}"
                );
                // SAFETY: fresh allocation of `size` bytes.
                unsafe { std::ptr::write_bytes(p, k as u8, size) };
                ptrs.push(p);
            }
            for (k, &p) in ptrs.iter().enumerate() {
                assert_eq!(check(p, size, k as u8), Ok(()), "object {k} overwritten");
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { dealloc(p, layout) };
            }
        }
    }
}

/// `alloc_zeroed` honours alignment too.
#[test]
fn zeroed_aligned() {
    for align in alignments() {
        for &size in &[1, 64, 4097, 32 * KIB + 1, MIB, 4 * MIB + 1] {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            // SAFETY: non-zero size.
            let p = unsafe { alloc_zeroed(layout) };
            assert!(
                !p.is_null(),
                "alloc_zeroed failed: size {size} align {align}"
            );
            assert_eq!(p as usize % align, 0, "size {size} align {align}: {p:p}");
            assert_eq!(
                check(p, size, 0),
                Ok(()),
                "size {size} align {align} not zero"
            );
            // SAFETY: allocated above with `layout`.
            unsafe { dealloc(p, layout) };
        }
    }
}

/// Alignments above 4 MiB are not required, but a non-null answer must be
/// aligned and usable.
#[test]
fn over_aligned_beyond_max_order() {
    for align in [8 * MIB, 16 * MIB] {
        for &size in &[1, 4096, MIB, 5 * MIB] {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            if p.is_null() {
                continue;
            }
            assert_eq!(p as usize % align, 0, "size {size} align {align}: {p:p}");
            // SAFETY: fresh allocation of `size` bytes.
            unsafe { std::ptr::write_bytes(p, 0x5a, size) };
            assert_eq!(check(p, size, 0x5a), Ok(()));
            // SAFETY: allocated above with `layout`.
            unsafe { dealloc(p, layout) };
        }
    }
}

/// The promise beyond `Layout` (see `lifeboat::Lifeboat`): a block whose
/// size is a multiple of 16 is 16-byte aligned even when the layout asks
/// for 8, so that a C front can serve `malloc` with 8-aligned layouts. It
/// holds under the `debug` feature too, whose red zones grow requests.
#[test]
fn sizes_that_are_multiples_of_16_are_16_aligned() {
    for size in (16..=64 * KIB).step_by(16) {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // Several of each size, so that objects past a slab's first are
        // checked too.
        let ps: Vec<*mut u8> = (0..4)
            .map(|_| {
                // SAFETY: the size is non-zero.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "size {size}");
                p
            })
            .collect();
        for &p in &ps {
            assert_eq!(p as usize % 16, 0, "size {size}: {p:p}");
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { dealloc(p, layout) };
        }
    }
}
