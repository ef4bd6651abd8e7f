//! The free fast path finds a slab's first page by rounding the freed
//! pointer's page index down to the smallest slab order, and falls back to
//! the page's `back` offset when that page is no slab head
//! (`src/arena/desc.rs`, `free_desc` in `src/global.rs`). Objects on every
//! page of many adjacent slabs, of classes with the smallest slabs and of
//! classes with bigger ones, freed by their owner and by another thread,
//! must each go back to their own slab: no object is handed out twice
//! afterwards, and none is overwritten.

use std::alloc::{alloc, dealloc, Layout};
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
        let n = BYTES / size;
        let objs = alloc_all(size, n);
        for &p in &objs {
            mark(p, size);
        }
        // Every other object freed by its owner (this thread), the rest
        // by a thread that owns none of the slabs.
        let mine: Vec<usize> = objs.iter().copied().step_by(2).collect();
        let theirs: Vec<usize> = objs.iter().copied().skip(1).step_by(2).collect();
        free_all(&mine, size);
        thread::spawn(move || free_all(&theirs, size))
            .join()
            .unwrap();

        // Allocate as many again, twice over: an object that went back to
        // the wrong slab would be handed out twice, or its slab's count
        // would run out (an abort).
        let again = alloc_all(size, 2 * n);
        let mut sorted = again.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), again.len(), "an object was handed out twice");
        for &p in &again {
            mark(p, size);
        }
        free_all(&again, size);
    }
}
