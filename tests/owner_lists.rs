//! A slab's owner allocates from one list and frees onto another (see
//! `src/slab/mod.rs`): an object freed by its owner is not handed out
//! again while the allocation list has objects, comes back once that list
//! is used up, and nothing is lost when the cache gives its slabs up.

use std::alloc::Layout;
use std::ptr::NonNull;

use lifeboat::{AllocFlags, Config, Heap};

fn layout() -> Layout {
    Layout::from_size_align(48, 8).unwrap()
}

/// Live objects of the heap (all of this test's: `debug` builds serve
/// them from a bigger class, for the red zone).
fn live(heap: &Heap) -> usize {
    heap.stats().classes.iter().map(|c| c.live_objects).sum()
}

#[test]
fn an_owner_free_comes_back_after_the_allocation_list() {
    let heap = Heap::new(Config::new().budget(16 << 20)).unwrap();
    let alloc = || heap.alloc(layout(), AllocFlags::NORMAL).unwrap();
    let first = alloc();
    let second = alloc();
    // SAFETY: `first` came from this heap with this layout.
    unsafe { heap.dealloc(first, layout()) };
    // Objects linked before the free are handed out first: a loop that
    // frees and allocates does not wait on the free it just did.
    let next = alloc();
    assert_ne!(next, first, "the object just freed came straight back");
    // Both lists are consistent with the slab's counts meanwhile.
    heap.verify().unwrap();
    // Once the allocation list is used up, the freed object returns.
    let mut held: Vec<NonNull<u8>> = vec![second, next];
    let mut back = false;
    for _ in 0..1000 {
        let p = alloc();
        held.push(p);
        if p == first {
            back = true;
            break;
        }
    }
    assert!(back, "the freed object never came back");
    // A second free list must also survive the cache giving its slabs up.
    for &p in held.iter().step_by(2) {
        // SAFETY: each `p` came from this heap with this layout, freed once.
        unsafe { heap.dealloc(p, layout()) };
    }
    heap.verify().unwrap();
    heap.flush_caches();
    heap.verify().unwrap();
    assert_eq!(live(&heap), held.len() - held.len().div_ceil(2));
    for &p in held.iter().skip(1).step_by(2) {
        // SAFETY: as above; these were not freed yet.
        unsafe { heap.dealloc(p, layout()) };
    }
    heap.flush_caches();
    heap.verify().unwrap();
    assert_eq!(live(&heap), 0);
}

#[test]
fn verify_accepts_the_slabs_a_cache_keeps() {
    let heap = Heap::new(Config::new().budget(64 << 20)).unwrap();
    // Enough objects to fill many slabs: the cache keeps some of the full
    // ones owned (and one retiring), which `verify` checks with the rest.
    let held: Vec<NonNull<u8>> = (0..20_000)
        .map(|_| heap.alloc(layout(), AllocFlags::NORMAL).unwrap())
        .collect();
    heap.verify().unwrap();
    for &p in held.iter().step_by(3) {
        // SAFETY: each `p` came from this heap with this layout, freed once.
        unsafe { heap.dealloc(p, layout()) };
    }
    heap.verify().unwrap();
    for (i, &p) in held.iter().enumerate() {
        if i % 3 != 0 {
            // SAFETY: as above; the others were freed in the loop before.
            unsafe { heap.dealloc(p, layout()) };
        }
    }
    heap.flush_caches();
    heap.verify().unwrap();
    assert_eq!(live(&heap), 0);
}
