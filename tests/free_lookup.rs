//! The free fast path finds a slab's first page by rounding the freed
//! pointer's page index down to the smallest slab order, and falls back to
//! the page's `back` offset when that page is no slab head
//! (`block_head` in `src/arena/desc.rs`). Objects on every
//! page of many adjacent slabs, of classes with the smallest slabs and of
//! classes with bigger ones, freed by their owner and by another thread,
//! must each go back to their own slab: no object is handed out twice
//! afterwards, and none is overwritten; also once the pages of released
//! slabs carry bigger slabs and page blocks. The foreign lists' pop check
//! finds an object's slab by rounding down to its class's slab order
//! (`src/foreign.rs`), which objects of slabs of 8 and 16 pages exercise.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Sizes whose slabs have the smallest order (4 pages: up to 2 KiB) and
/// bigger ones (3 KiB and up).
const SIZES: [usize; 6] = [16, 64, 1000, 3000, 8000, 20_000];

/// Bytes of objects per size: many slabs of each class, side by side.
const BYTES: usize = 2 << 20;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn alloc_all(size: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            // SAFETY: a non-zero size.
            let p = unsafe { alloc(layout(size)) };
            assert!(!p.is_null());
            p as usize
        })
        .collect()
}

/// Writes a tag derived from the address into the first and last word.
fn mark(p: usize, size: usize) {
    // SAFETY: `p` is a live object of `size >= 16` bytes of ours.
    unsafe {
        *(p as *mut usize) = p ^ 0x5a5a;
        *((p + size - 8) as *mut usize) = !p;
    }
}

fn check(p: usize, size: usize) {
    // SAFETY: as for `mark`, which wrote these words.
    let (first, last) = unsafe { (*(p as *const usize), *((p + size - 8) as *const usize)) };
    assert_eq!(
        (first, last),
        (p ^ 0x5a5a, !p),
        "object {p:#x} of {size} B overwritten"
    );
}

fn free_all(objs: &[usize], size: usize) {
    for &p in objs {
        check(p, size);
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(p as *mut u8, layout(size)) };
    }
}

#[test]
fn frees_reach_their_own_slab_on_every_page() {
    for size in SIZES {
        churn(alloc_all(size, BYTES / size), size);
    }
}

/// The pages of a thread's released slabs of the smallest order, reused by
/// slabs of bigger classes and by page blocks of one and two pages (64 KiB
/// blocks shrunk in place): every object and block is still freed into
/// its own slab or block.
#[test]
fn pages_of_released_slabs_are_found_again() {
    // A thread fills many 4-page slabs, frees everything and exits: its
    // slabs are released to the arena.
    let (lo, hi) = thread::spawn(|| {
        let objs = alloc_all(16, BYTES / 16);
        free_all_unchecked(&objs, 16);
        (*objs.iter().min().unwrap(), *objs.iter().max().unwrap())
    })
    .join()
    .unwrap();
    let mut reused = 0;
    for size in [3000, 20_000] {
        let objs = alloc_all(size, BYTES / size);
        reused += objs.iter().filter(|&&p| (lo..=hi).contains(&p)).count();
        churn(objs, size);
    }
    for size in [4096 + 8, 2 * 4096] {
        // 64 KiB page blocks shrunk in place to one or two pages.
        let big = 64 << 10;
        let objs: Vec<usize> = alloc_all(big, BYTES / big)
            .into_iter()
            .map(|p| {
                // SAFETY: `p` is live with `layout(big)`; a smaller size.
                let q = unsafe { realloc(p as *mut u8, layout(big), size) };
                assert!(!q.is_null());
                q as usize
            })
            .collect();
        reused += objs.iter().filter(|&&p| (lo..=hi).contains(&p)).count();
        churn(objs, size);
    }
    // Only meaningful if the released pages were taken again (the arena's
    // free lists hand out the blocks freed last first).
    assert!(
        reused > 0,
        "no object or block reused a released slab's pages"
    );
}

/// Marks `objs`, frees every other one here and the rest on another
/// thread, then allocates as many twice over and checks that none is
/// handed out twice (an object freed into the wrong slab would be, or its
/// slab's count would run out: an abort).
fn churn(objs: Vec<usize>, size: usize) {
    for &p in &objs {
        mark(p, size);
    }
    let mine: Vec<usize> = objs.iter().copied().step_by(2).collect();
    let theirs: Vec<usize> = objs.iter().copied().skip(1).step_by(2).collect();
    free_all(&mine, size);
    thread::spawn(move || free_all(&theirs, size))
        .join()
        .unwrap();
    let again = alloc_all(size, 2 * objs.len());
    let mut sorted = again.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), again.len(), "an object was handed out twice");
    for &p in &again {
        mark(p, size);
    }
    free_all(&again, size);
}

/// A thread that allocates a class keeps the objects of others' slabs it
/// frees and hands them out again; the pop's check finds each object's
/// slab, of 8 or 16 pages, from the object's page. (Not under `debug`,
/// which has no foreign lists.)
#[cfg(not(feature = "debug"))]
#[test]
fn foreign_objects_of_big_slabs_are_handed_out_again() {
    for size in [3000, 20_000] {
        // Objects of this thread's slabs, all live: every fourth is given
        // to the other thread to free, so the slabs stay mostly live.
        let objs = alloc_all(size, 256);
        let given: Vec<usize> = objs.iter().copied().step_by(4).collect();
        let kept: Vec<usize> = objs
            .iter()
            .copied()
            .filter(|p| !given.contains(p))
            .collect();
        let (own, again) = thread::spawn(move || {
            // Allocating the class first (past its first slab) marks it as
            // one this thread allocates, which the foreign lists need.
            let own = alloc_all(size, 64);
            free_all_unchecked(&given, size);
            let again = alloc_all(size, given.len() + 64);
            let reused = again.iter().filter(|p| given.contains(p)).count();
            assert!(
                reused > 0,
                "no freed object came back from the foreign list"
            );
            (own, again)
        })
        .join()
        .unwrap();
        let mut all: Vec<usize> = kept.iter().chain(&own).chain(&again).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "an object was handed out twice");
        free_all_unchecked(&kept, size);
        free_all_unchecked(&own, size);
        free_all_unchecked(&again, size);
    }
}

fn free_all_unchecked(objs: &[usize], size: usize) {
    for &p in objs {
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(p as *mut u8, layout(size)) };
    }
}
