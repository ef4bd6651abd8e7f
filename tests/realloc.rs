//! `realloc` growing and shrinking across small classes, the small/large
//! boundary (32 KiB), buddy orders and huge (> 4 MiB) mappings, with the
//! contents checked at every step; also over-aligned blocks.

use std::alloc::{alloc, dealloc, realloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Sizes walked up and then down again.
const LADDER: [usize; 34] = [
    1,
    7,
    8,
    9,
    16,
    24,
    63,
    64,
    65,
    100,
    128,
    500,
    1024,
    2000,
    4095,
    4096,
    4097,
    10_000,
    16 * KIB,
    32 * KIB - 1,
    32 * KIB,
    32 * KIB + 1,
    40 * KIB,
    64 * KIB,
    100_000,
    256 * KIB,
    MIB,
    2 * MIB + 3,
    4 * MIB - 1,
    4 * MIB,
    4 * MIB + 1,
    6 * MIB,
    9 * MIB + 5,
    16 * MIB,
];

/// The byte at offset `i` of a block tagged `seed`; position dependent, so
/// a block copied to the wrong offset does not match.
fn pat(seed: usize, i: usize) -> u8 {
    let x = (i as u32).wrapping_mul(2_654_435_761) ^ (seed as u32).wrapping_mul(0x85eb_ca6b);
    (x >> 24) as u8 ^ (i as u8)
}

fn fill(p: *mut u8, size: usize, seed: usize) {
    // SAFETY: `p` points to a live allocation of at least `size` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, size) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = pat(seed, i);
    }
}

/// The first offset below `size` whose byte does not match, if any.
fn first_mismatch(p: *const u8, size: usize, seed: usize) -> Option<usize> {
    // SAFETY: `p` points to a live allocation of at least `size` bytes, all
    // initialised by `fill`.
    let s = unsafe { std::slice::from_raw_parts(p, size) };
    s.iter().enumerate().position(|(i, b)| *b != pat(seed, i))
}

/// Walks `sizes` with one block of alignment `align`, checking the kept
/// prefix after every realloc and refilling the whole block.
fn walk(sizes: &[usize], align: usize, seed: usize) {
    let first = Layout::from_size_align(sizes[0], align).expect("valid layout");
    // SAFETY: non-zero size.
    let mut p = unsafe { alloc(first) };
    assert!(!p.is_null());
    let mut layout = first;
    fill(p, layout.size(), seed);
    for (step, &new_size) in sizes.iter().enumerate().skip(1) {
        let old = layout.size();
        // SAFETY: `p` was allocated with `layout`; `new_size` is non-zero and
        // does not overflow isize when rounded to `align`.
        let q = unsafe { realloc(p, layout, new_size) };
        assert!(
            !q.is_null(),
            "realloc {old} -> {new_size} (align {align}) returned null"
        );
        assert_eq!(
            q as usize % align,
            0,
            "realloc {old} -> {new_size} lost alignment {align}: {q:p}"
        );
        let kept = old.min(new_size);
        if let Some(at) = first_mismatch(q, kept, seed + step - 1) {
            panic!(
                "realloc {old} -> {new_size} (align {align}, step {step}, {p:p} -> {q:p}) \
                 lost contents at offset {at} of {kept}"
            );
        }
        p = q;
        layout = Layout::from_size_align(new_size, align).expect("valid layout");
        fill(p, new_size, seed + step);
    }
    assert_eq!(
        first_mismatch(p, layout.size(), seed + sizes.len() - 1),
        None
    );
    // SAFETY: `p` is live with `layout`.
    unsafe { dealloc(p, layout) };
}

#[test]
fn grow_then_shrink_ladder() {
    let mut sizes: Vec<usize> = LADDER.to_vec();
    sizes.extend(LADDER.iter().rev().skip(1));
    walk(&sizes, 1, 1);
    walk(&sizes, 8, 2);
}

#[test]
fn jumps_between_far_sizes() {
    // Straight from tiny to huge and back, and between the tiers.
    let sizes = [
        3,
        9 * MIB,
        5,
        64 * KIB,
        24,
        5 * MIB,
        32 * KIB + 1,
        32 * KIB,
        4 * MIB + 1,
        4 * MIB,
        7 * MIB,
        12 * MIB,
        100,
    ];
    walk(&sizes, 8, 100);
}

#[test]
fn aligned_realloc() {
    let sizes = [
        8,
        100,
        4096,
        5000,
        32 * KIB + 1,
        200 * KIB,
        5 * MIB,
        3000,
        64,
    ];
    for (k, align) in [16, 64, 256, 4096, 8192, 64 * KIB, 2 * MIB, 4 * MIB]
        .into_iter()
        .enumerate()
    {
        walk(&sizes, align, 1000 * k);
    }
}

#[test]
fn same_size_realloc_keeps_contents() {
    for (k, &size) in LADDER.iter().enumerate() {
        walk(&[size, size, size], 8, 50 * k);
    }
}

/// Growing one byte at a time (as `Vec::push` without amortisation would),
/// with other blocks allocated in between so growth cannot always happen
/// in place.
#[test]
fn byte_by_byte_growth_interleaved() {
    let limit = if cfg!(debug_assertions) {
        40_000
    } else {
        150_000
    };
    let mut blocks: Vec<(*mut u8, usize)> = Vec::new();
    for b in 0..3 {
        let layout = Layout::from_size_align(1, 1).expect("valid layout");
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` has one byte.
        unsafe { *p = b as u8 };
        blocks.push((p, 1));
    }
    let mut fillers = Vec::new();
    for n in 1..limit {
        for (b, (p, size)) in blocks.iter_mut().enumerate() {
            let layout = Layout::from_size_align(*size, 1).expect("valid layout");
            // SAFETY: `*p` was allocated with `layout`; n + 1 is non-zero.
            let q = unsafe { realloc(*p, layout, n + 1) };
            assert!(!q.is_null());
            // Check the last byte written before and a sample of older ones.
            // SAFETY: `q` has n + 1 bytes, the first n initialised.
            unsafe {
                assert_eq!(
                    *q.add(n - 1),
                    ((n - 1) ^ b) as u8,
                    "byte {} of block {b}",
                    n - 1
                );
                assert_eq!(*q.add((n - 1) / 2), (((n - 1) / 2) ^ b) as u8);
                *q.add(n) = (n ^ b) as u8;
            }
            *p = q;
            *size = n + 1;
        }
        if n % 97 == 0 {
            fillers.push(vec![n as u8; n % 5000]);
        }
    }
    for (b, (p, size)) in blocks.into_iter().enumerate() {
        // SAFETY: `p` has `size` initialised bytes.
        let s = unsafe { std::slice::from_raw_parts(p, size) };
        for (i, x) in s.iter().enumerate() {
            assert_eq!(*x, (i ^ b) as u8, "block {b} byte {i}");
        }
        let layout = Layout::from_size_align(size, 1).expect("valid layout");
        // SAFETY: allocated with this layout.
        unsafe { dealloc(p, layout) };
    }
    for (k, f) in fillers.iter().enumerate() {
        let n = (k + 1) * 97;
        assert!(f.iter().all(|x| *x == n as u8));
    }
}

/// Vec growth and shrink through the global allocator across every tier.
#[test]
fn vec_reserve_and_shrink() {
    let mut v: Vec<u32> = Vec::new();
    for round in 0..3u32 {
        for i in 0..(3 * MIB as u32) {
            v.push(i ^ round);
        }
        v.truncate(10_000);
        v.shrink_to_fit();
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, i as u32 ^ round);
        }
        v.truncate(3);
        v.shrink_to_fit();
        v.clear();
    }
}

/// Grows a buffer of `heap` by `factor` (in eighths) from `from` bytes to
/// `to`, checking contents; returns how many steps to a page or more
/// moved the buffer.
fn grow_on_heap(heap: &lifeboat::Heap, from: usize, to: usize, eighths: usize) -> usize {
    use lifeboat::AllocFlags;
    use std::ptr::NonNull;
    let mut layout = Layout::from_size_align(from, 8).unwrap();
    let mut p = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
    fill(p.as_ptr(), from, 7);
    let mut moves = 0;
    while layout.size() < to {
        let n = (layout.size() * eighths / 8).min(to);
        // SAFETY: `p` is live with `layout`.
        let q: NonNull<u8> = unsafe { heap.realloc(p, layout, n, AllocFlags::NORMAL) }.unwrap();
        assert_eq!(first_mismatch(q.as_ptr(), layout.size(), 7), None);
        fill(q.as_ptr(), n, 7);
        moves += usize::from(q != p && n >= 4 * KIB);
        p = q;
        layout = Layout::from_size_align(n, 8).unwrap();
    }
    // SAFETY: `p` is live with `layout`.
    unsafe { heap.dealloc(p, layout) };
    moves
}

/// A buffer that outgrows the slab classes moves once into a page block
/// with room held above it (a growth run); from there, with memory
/// plentiful, it grows in place up to 256 times its size. Nothing is lost
/// on the way.
#[test]
fn growth_from_a_page_stays_in_place() {
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(64 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    for eighths in [16, 12, 9] {
        // From a slab object to a page block: one move, then none.
        assert_eq!(
            grow_on_heap(&heap, 2 * KIB, MIB, eighths),
            1,
            "x{eighths}/8"
        );
        // The same from a page block that is surrounded by live blocks.
        let l = Layout::from_size_align(8 * KIB, 8).unwrap();
        let block = heap.alloc(l, lifeboat::AllocFlags::NORMAL).unwrap();
        assert!(grow_on_heap(&heap, 4 * KIB, MIB, eighths) <= 1);
        // SAFETY: `block` is live with `l`.
        unsafe { heap.dealloc(block, l) };
    }
    heap.flush_caches();
    assert_eq!(heap.stats().free_pages, free);
}

/// The room for growth is found even when no free block big enough is on
/// the lists: the growth run's block is cut fresh from the untouched part
/// of the arena rather than from a small listed block whose buddy is live
/// (which would make the buffer move again at the next order).
#[test]
fn growth_room_comes_from_fresh_memory_when_lists_are_short() {
    use lifeboat::AllocFlags;
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(64 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    // Cutting the first 64 KiB block lists one free block of each order
    // from 64 KiB to 2 MiB; `b` takes the 64 KiB one, and `held` the
    // others, so after `a` is freed the lists hold only `a`, at 64 KiB,
    // beside the live `b`.
    let l64 = Layout::from_size_align(64 * KIB, 8).unwrap();
    let a = heap.alloc(l64, AllocFlags::NORMAL).unwrap();
    let b = heap.alloc(l64, AllocFlags::NORMAL).unwrap();
    let held: Vec<_> = (5..=9)
        .map(|order| {
            let l = Layout::from_size_align((4 * KIB) << order, 8).unwrap();
            (heap.alloc(l, AllocFlags::NORMAL).unwrap(), l)
        })
        .collect();
    // SAFETY: `a` is live with `l64`.
    unsafe { heap.dealloc(a, l64) };
    assert_eq!(grow_on_heap(&heap, 4 * KIB, MIB, 16), 1);
    // SAFETY: each block is live with its layout.
    unsafe {
        heap.dealloc(b, l64);
        for (p, l) in held {
            heap.dealloc(p, l);
        }
    }
    heap.flush_caches();
    assert_eq!(heap.stats().free_pages, free);
}

/// Shrinking a page block keeps it in place while it stays at least a page
/// (its upper halves go back to the arena); below a page it moves to a slab.
#[test]
fn shrinking_page_blocks() {
    use lifeboat::AllocFlags;
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(64 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    let l = Layout::from_size_align(MIB, 8).unwrap();
    let p = heap.alloc(l, AllocFlags::NORMAL).unwrap();
    fill(p.as_ptr(), MIB, 3);
    // SAFETY: `p` is live with `l`.
    let q = unsafe { heap.realloc(p, l, 5 * KIB, AllocFlags::NORMAL) }.unwrap();
    assert_eq!(q, p);
    assert_eq!(first_mismatch(q.as_ptr(), 5 * KIB, 3), None);
    assert_eq!(heap.stats().free_pages, free - 2);
    let l = Layout::from_size_align(5 * KIB, 8).unwrap();
    // SAFETY: `q` is live with `l`.
    let r = unsafe { heap.realloc(q, l, 100, AllocFlags::NORMAL) }.unwrap();
    assert_ne!(r, q);
    assert_eq!(first_mismatch(r.as_ptr(), 100, 3), None);
    // SAFETY: `r` is live with 100 bytes.
    unsafe { heap.dealloc(r, Layout::from_size_align(100, 8).unwrap()) };
    heap.flush_caches();
    assert_eq!(heap.stats().free_pages, free);
}

/// Checks that every page of `heap` is free again (`free` of them, as at
/// the start) once its caches are flushed, and that its structures check.
fn assert_all_back(heap: &lifeboat::Heap, free: usize) {
    heap.flush_caches();
    heap.verify().unwrap();
    assert_eq!(heap.stats().free_pages, free);
}

/// Moves a 4 KiB buffer of `heap` into a page block (8 KiB, filled with
/// `seed`); returns it and its layout.
fn moved_to_pages(heap: &lifeboat::Heap, seed: usize) -> (std::ptr::NonNull<u8>, Layout) {
    use lifeboat::AllocFlags;
    let l = Layout::from_size_align(4 * KIB, 8).unwrap();
    let p = heap.alloc(l, AllocFlags::NORMAL).unwrap();
    // SAFETY: `p` is live with `l`.
    let q = unsafe { heap.realloc(p, l, 8 * KIB, AllocFlags::NORMAL) }.unwrap();
    fill(q.as_ptr(), 8 * KIB, seed);
    (q, Layout::from_size_align(8 * KIB, 8).unwrap())
}

/// Grows `p` (live with `layout`, filled with `seed`) to `to` bytes in
/// doublings, checking contents; returns the new pointer and layout, and
/// whether every step stayed in place.
fn double_to(
    heap: &lifeboat::Heap,
    mut p: std::ptr::NonNull<u8>,
    mut layout: Layout,
    to: usize,
    seed: usize,
) -> (std::ptr::NonNull<u8>, Layout, bool) {
    let mut in_place = true;
    while layout.size() < to {
        let n = layout.size() * 2;
        // SAFETY: `p` is live with `layout`.
        let q = unsafe { heap.realloc(p, layout, n, lifeboat::AllocFlags::NORMAL) }.unwrap();
        assert_eq!(first_mismatch(q.as_ptr(), layout.size(), seed), None);
        fill(q.as_ptr(), n, seed);
        in_place &= q == p;
        p = q;
        layout = Layout::from_size_align(n, 8).unwrap();
        heap.verify()
            .unwrap_or_else(|e| panic!("grown to {n}: {e:?}"));
    }
    (p, layout, in_place)
}

/// The room held above a growing buffer is memory like any other: the
/// heap's checks pass with it held, a purge (as reclaim does) takes it back
/// while the buffer lives, the buffer still grows afterwards, and freeing
/// the buffer returns every page, whether or not its room was taken.
#[test]
fn growth_room_is_held_checked_and_given_back() {
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(64 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    let pages = |l: Layout| l.size() / (4 * KIB);

    // Held while growing, freed with the buffer.
    let (p, l) = moved_to_pages(&heap, 1);
    heap.verify().unwrap();
    // (To 1 MiB: the run's top under this budget, where it ends.)
    let (p, l, in_place) = double_to(&heap, p, l, MIB, 1);
    assert!(in_place);
    heap.verify().unwrap();
    // SAFETY: `p` is live with `l`.
    unsafe { heap.dealloc(p, l) };
    heap.flush_caches();
    heap.verify().unwrap();
    assert_eq!(heap.stats().free_pages, free);

    // Taken back while the buffer lives: only the buffer stays allocated.
    let (p, l) = moved_to_pages(&heap, 2);
    let (p, l, _) = double_to(&heap, p, l, 64 * KIB, 2);
    heap.flush_caches(); // (the slab the 4 KiB object came from)
    heap.purge();
    heap.verify().unwrap();
    assert_eq!(heap.stats().free_pages, free - pages(l));
    let (p, l, _) = double_to(&heap, p, l, MIB, 2);
    heap.verify().unwrap();
    // SAFETY: `p` is live with `l`.
    unsafe { heap.dealloc(p, l) };
    assert_all_back(&heap, free);
}

/// More buffers growing at once than there are growth runs: the first
/// ones get runs, the others grow the ordinary way. Contents survive, the
/// checks pass, and no page is lost.
#[test]
fn more_growing_buffers_than_runs() {
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(256 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    let mut bufs: Vec<_> = (0..20).map(|i| moved_to_pages(&heap, i)).collect();
    heap.verify().unwrap();
    for round in 0..5 {
        for (i, (p, l)) in bufs.iter_mut().enumerate() {
            let (q, m, _) = double_to(&heap, *p, *l, l.size() * 2, i);
            (*p, *l) = (q, m);
        }
        heap.verify()
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
    }
    for (p, l) in bufs {
        // SAFETY: each buffer is live with its layout.
        unsafe { heap.dealloc(p, l) };
    }
    assert_all_back(&heap, free);
}

/// Many small buffers, each moved into a page block by a growth and kept:
/// they must not each keep a block of a run's top order split (2 MiB
/// here, for an 8 KiB buffer). With runs evicted for new ones, 200 such
/// buffers left a 256 MiB heap, 99 % free, without one free 4 MiB block;
/// a panic's backtrace (its symbolizer grows a hundred buffers at once)
/// then failed to allocate.
#[test]
fn growing_buffers_leave_the_big_blocks_free() {
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(256 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    let bufs: Vec<_> = (0..200).map(|i| moved_to_pages(&heap, i)).collect();
    let big = Layout::from_size_align(3 * MIB, 8).unwrap();
    let blocks: Vec<_> = (0..16)
        .map(|i| {
            heap.alloc(big, lifeboat::AllocFlags::NORMAL)
                .unwrap_or_else(|e| panic!("3 MiB block {i} refused: {e:?}"))
        })
        .collect();
    heap.verify().unwrap();
    for (i, (p, l)) in bufs.into_iter().enumerate() {
        assert_eq!(first_mismatch(p.as_ptr(), l.size(), i), None);
        // SAFETY: each buffer is live with its layout.
        unsafe { heap.dealloc(p, l) };
    }
    for b in blocks {
        // SAFETY: each block is live with `big`.
        unsafe { heap.dealloc(b, big) };
    }
    assert_all_back(&heap, free);
}

/// A buffer that moves to another thread and is freed there: the freeing
/// thread takes its growth run back with it; nothing is lost.
#[test]
fn growing_buffer_freed_by_another_thread() {
    let heap = lifeboat::Heap::new(lifeboat::Config::new().budget(64 * MIB)).unwrap();
    let free = heap.stats().free_pages;
    let (p, l) = moved_to_pages(&heap, 3);
    let (p, l, in_place) = double_to(&heap, p, l, 32 * KIB, 3);
    assert!(in_place);
    let addr = p.as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            let p = std::ptr::NonNull::new(addr as *mut u8).unwrap();
            // Grown further, then freed, on this thread.
            let (p, l, _) = double_to(&heap, p, l, 128 * KIB, 3);
            // SAFETY: the buffer was handed to this thread, live with `l`.
            unsafe { heap.dealloc(p, l) };
        });
    });
    assert_all_back(&heap, free);
}

/// Through the global allocator: a buffer grown with `realloc` from a slab
/// object to 1 MiB and back keeps its contents (the process heap's runs are
/// shared with every test of this binary running at the same time).
#[test]
fn global_growth_and_shrink_keep_contents() {
    for round in 0..50 {
        let mut layout = Layout::from_size_align(3000, 8).unwrap();
        // SAFETY: a non-zero size.
        let mut p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        fill(p, layout.size(), round);
        for n in [6000, 12_000, 100_000, 300_000, MIB, 200_000, 9000, 100] {
            // SAFETY: `p` is live with `layout`; `n` is non-zero.
            let q = unsafe { realloc(p, layout, n) };
            assert!(!q.is_null());
            assert_eq!(first_mismatch(q, layout.size().min(n), round), None);
            fill(q, n, round);
            p = q;
            layout = Layout::from_size_align(n, 8).unwrap();
        }
        // SAFETY: `p` is live with `layout`.
        unsafe { dealloc(p, layout) };
    }
}

/// A move to another small class takes the object of that class this
/// thread freed last (its lines are likely still in cache), not the next
/// one of the allocation list. (Not under `debug`, where every `realloc`
/// takes the general path.)
#[cfg(not(feature = "debug"))]
#[test]
fn a_move_between_small_classes_reuses_the_object_freed_last() {
    let small = Layout::from_size_align(100, 8).unwrap();
    let big = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: non-zero sizes; every block is freed once, with its layout.
    unsafe {
        let x = alloc(big);
        let y = alloc(big);
        assert!(!x.is_null() && !y.is_null());
        dealloc(x, big);
        let p = alloc(small);
        assert!(!p.is_null());
        p.write_bytes(0x5c, small.size());
        let q = realloc(p, small, big.size());
        assert_eq!(q, x, "the move took another object than the one freed last");
        assert!((0..small.size()).all(|i| *q.add(i) == 0x5c));
        dealloc(q, big);
        dealloc(y, big);
    }
}
