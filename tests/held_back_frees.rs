//! Frees a thread holds back while its remote batch is bypassed
//! (`src/remote_batch.rs`): frees of one object a slab in a row, of
//! slabs the thread does not own. A held-back object still counts as
//! live for its slab, so the slab stays; if the thread claims that slab
//! meanwhile (its own allocations of the class take it off the partial
//! list), the held-back free later goes onto the thread's own slab's
//! remote stack. Nothing is lost or handed out twice either way.
//!
//! Without `debug` only: under `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

mod common;

/// A size no other code in this binary allocates (its class, 2 KiB, is
/// allocated here only by the vectors `scattered_orphans` grows, which
/// run on the test's main thread).
const SIZE: usize = 2000;

#[test]
fn a_thread_claiming_the_slabs_of_its_held_back_frees_loses_nothing() {
    let l = Layout::from_size_align(SIZE, 8).unwrap();
    let baseline = common::live_objects_of(SIZE);
    // One object a slab (16 KiB: eight objects of the class), each slab's
    // other objects freed by a thread that exits: each slab is on its
    // class's partial list with one live object.
    let (v, rest) = common::scattered_orphans(SIZE, 64, 16 << 10);
    std::thread::spawn(move || {
        for p in rest {
            // SAFETY: allocated with `l`, freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
    })
    .join()
    .unwrap();
    assert_eq!(common::live_objects_of(SIZE), baseline + v.len());

    let held_slabs = std::thread::spawn(move || {
        // A thread that has not allocated the class: its foreign lists
        // refuse these objects, every chain holds one, and the last frees
        // are held back.
        let before = common::live_objects_of(SIZE);
        for &p in &v {
            // SAFETY: each object is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        let held = common::live_objects_of(SIZE) + v.len() - before;
        // Now allocate the class: the refills claim the listed slabs, those
        // of the held-back frees among them. Every object handed out is
        // distinct and none is one still held back.
        let mine: Vec<usize> = (0..8 * v.len())
            // SAFETY: a non-zero size.
            .map(|_| unsafe { GLOBAL.alloc(l) } as usize)
            .collect();
        assert!(mine.iter().all(|&p| p != 0));
        let distinct: HashSet<usize> = mine.iter().copied().collect();
        assert_eq!(distinct.len(), mine.len(), "an object handed out twice");
        for &p in &mine {
            // SAFETY: each object is live, `l`-sized, written once.
            unsafe { (p as *mut u8).write_bytes(0xa5, SIZE) };
        }
        // How many of the slabs of the frees held back this thread took
        // (an object of one of them handed out).
        let slab = |p: usize| p & !((16 << 10) - 1);
        let held_back: HashSet<usize> = v[v.len() - held..].iter().map(|&p| slab(p)).collect();
        let claimed = mine
            .iter()
            .filter(|&&p| held_back.contains(&slab(p)))
            .count();
        for &p in &mine {
            // SAFETY: allocated above with `l`, freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        (held, claimed)
    })
    .join()
    .unwrap();
    let (held, claimed) = held_slabs;
    assert!(held > 1, "no free was held back ({held} held)");
    assert!(
        claimed > 0,
        "the thread took none of the held-back frees' slabs"
    );
    // Everything the thread freed, held back or not, reached its slab.
    assert_eq!(
        common::live_objects_of(SIZE),
        baseline,
        "objects lost after the thread exited"
    );
}
