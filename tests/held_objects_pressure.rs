//! Objects a thread holds for slabs it does not own, under memory
//! pressure: foreign lists (`src/foreign.rs`, objects of exited threads'
//! slabs), remote batches (`src/remote_batch.rs`, objects of live
//! threads' slabs) and the frees a batch holds back while it is bypassed
//! (frees of one object a slab, in a row). A held object keeps its slab from being released, so
//! while the heap's free pages are below the `low` watermark a thread that
//! frees such objects gives them straight back to their slabs, holds
//! none, and gives back what it held before; and whatever it holds goes
//! back when it exits.
//!
//! Its own binary: it drives the process heap (a 256 MiB budget) below
//! `low`, which would disturb any other test. Without `debug` only: under
//! `debug` every free goes to its slab.
#![cfg(not(feature = "debug"))]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat =
    lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(256 << 20));

/// Sizes no other code in this binary is likely to use, one for each kind
/// of owner. (For live owners, 64 objects fit one slab of that class, so
/// they all stay in the owner's active slab: full slabs an owner leaves
/// are detached, and their objects go onto foreign lists.)
const SIZE_EXITED: usize = 1500;
const SIZE_LIVE: usize = 168;
const SIZE_SCATTERED: usize = 2000;

mod common;

/// Objects each step frees.
const N: usize = 64;

/// Whose slabs the objects a test thread frees belong to.
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// A thread that has exited: frees go onto foreign lists.
    Exited,
    /// A live thread: frees go into remote batches.
    Live,
    /// A thread that has exited, one object a slab, freed by a thread
    /// that does not allocate their class (so its foreign lists refuse
    /// them): every chain of the batch holds one object, and after a run
    /// of those the batch is bypassed and holds frees back.
    Scattered,
}

impl Owner {
    fn size(self) -> usize {
        match self {
            Owner::Exited => SIZE_EXITED,
            Owner::Live => SIZE_LIVE,
            Owner::Scattered => SIZE_SCATTERED,
        }
    }

    /// Whether the freeing thread allocates the class (and so lists
    /// objects of it on its foreign lists).
    fn allocates(self) -> bool {
        !matches!(self, Owner::Scattered)
    }

    /// The layout of the freeing thread's own object ([`start_freeing`]):
    /// of this kind's class when the thread allocates it, else of another.
    fn own_layout(self) -> Layout {
        if self.allocates() {
            Layout::from_size_align(self.size(), 8).unwrap()
        } else {
            Layout::new::<[u64; 5]>()
        }
    }

    /// Live objects of the process heap in the class of this kind's size.
    fn live_objects(self) -> usize {
        common::live_objects_of(self.size())
    }
}

/// The thread that allocated a set of objects, kept alive (owning their
/// slabs) until dropped.
struct LiveOwner(Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>);

impl Drop for LiveOwner {
    fn drop(&mut self) {
        if let Some((done, t)) = self.0.take() {
            drop(done);
            t.join().unwrap();
        }
    }
}

/// Sets of `N` objects of `Owner::Scattered`'s kind, made ahead by
/// [`make_scattered_sets`]: finding one allocates megabytes, which the
/// heap does not have to spare while it is short of memory.
static SCATTERED: std::sync::Mutex<Vec<Vec<usize>>> = std::sync::Mutex::new(Vec::new());

/// Makes `k` sets for [`SCATTERED`]. The objects allocated to find them
/// are freed by a thread that then exits, so that nothing of theirs is
/// held: each set's slabs keep just its objects.
fn make_scattered_sets(k: usize) {
    let l = Layout::from_size_align(SIZE_SCATTERED, 8).unwrap();
    for _ in 0..k {
        // 16 KiB apart: a slab of the class spans 16 KiB (eight
        // objects). Farther apart, the slabs they pin would leave no
        // 64 KiB block for `short_of_memory` to take. (Were the slabs
        // larger, two frees in a row could be of one slab, and the
        // scattered step would fail: "no free was held back".)
        let (v, rest) = common::scattered_orphans(SIZE_SCATTERED, N, 16 << 10);
        std::thread::spawn(move || {
            for p in rest {
                // SAFETY: allocated with `l`, freed once.
                unsafe { GLOBAL.dealloc(p as *mut u8, l) };
            }
        })
        .join()
        .unwrap();
        SCATTERED.lock().unwrap().push(v);
    }
}

/// `n` objects of `owner.size()` allocated by a thread of kind `owner`.
fn objects(owner: Owner, n: usize) -> (Vec<usize>, LiveOwner) {
    match owner {
        Owner::Exited => (common::orphans(SIZE_EXITED, n), LiveOwner(None)),
        Owner::Scattered => {
            let v = SCATTERED.lock().unwrap().pop().expect("a set made ahead");
            assert_eq!(v.len(), n);
            (v, LiveOwner(None))
        }
        Owner::Live => {
            let (tx, rx) = mpsc::channel();
            let (done, wait) = mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                let l = Layout::from_size_align(SIZE_LIVE, 8).unwrap();
                let v: Vec<usize> = (0..n)
                    // SAFETY: a non-zero size.
                    .map(|_| unsafe { GLOBAL.alloc(l) } as usize)
                    .collect();
                assert!(v.iter().all(|&p| p != 0));
                tx.send(v).unwrap();
                let _ = wait.recv(); // until the owner is dropped
            });
            (rx.recv().unwrap(), LiveOwner(Some((done, t))))
        }
    }
}

/// Prepares a thread that is about to free objects of `owner`'s kind:
/// arms its exit hook, and allocates one object of the class (unless
/// `owner` does not want the class allocated), which the caller frees at
/// the end with [`end_freeing`] (a thread lists foreign objects only of
/// classes it allocates). Call it before the objects to free exist, so
/// that the slab this object comes from holds none of them.
fn start_freeing(owner: Owner) -> *mut u8 {
    // SAFETY: a non-zero size.
    let p = unsafe { GLOBAL.alloc(owner.own_layout()) };
    assert!(!p.is_null());
    p
}

/// Frees the object of [`start_freeing`].
fn end_freeing(owner: Owner, p: *mut u8) {
    // SAFETY: allocated by `start_freeing` with this layout, freed once.
    unsafe { GLOBAL.dealloc(p, owner.own_layout()) };
}

/// A fresh thread prepares ([`start_freeing`]), gets `N` objects of
/// `owner`'s kind and frees them all. Returns how many of them it held
/// then (measured before it exits), and how many were still held after
/// its exit.
fn held_by_a_thread_freeing(owner: Owner) -> (usize, usize) {
    let l = Layout::from_size_align(owner.size(), 8).unwrap();
    let (held, before, owner_thread) = std::thread::spawn(move || {
        let own = start_freeing(owner);
        let (v, owner_thread) = objects(owner, N);
        // (Measured here, after the spawn's own allocations.)
        let before = owner.live_objects();
        for &p in &v {
            // SAFETY: each object is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        // Objects freed to their slabs leave the live count; held ones
        // stay in it.
        let held = owner.live_objects() + N - before;
        end_freeing(owner, own);
        // What the count comes back to once everything is given back.
        (
            held,
            before - N - usize::from(owner.allocates()),
            owner_thread,
        )
    })
    .join()
    .unwrap();
    let after_exit = owner.live_objects().saturating_sub(before);
    drop(owner_thread);
    (held, after_exit)
}

/// Runs `f` with the heap's free pages 72 pages above `min`, 56 below
/// `low` (the 256 MiB budget's marks are 512 and 640 pages), reached 64
/// KiB at a time, then two pages at a time: room enough below for what a
/// step allocates there (up to about 60 pages of slabs, with the test
/// harness's own allocations), and far enough below `low` that the slabs
/// its frees release (up to about 40 pages) do not lift the heap above it.
/// `None` if the heap could not be brought there. (`f` must not panic: the
/// panic machinery itself needs memory.)
fn short_of_memory<R>(f: impl FnOnce() -> R) -> Option<R> {
    // Two pages aligned to two pages come from the buddy arena directly.
    let blocks = [
        Layout::from_size_align(64 << 10, 8).unwrap(),
        Layout::from_size_align(8 << 10, 8 << 10).unwrap(),
    ];
    let mut held: [Vec<usize>; 2] = [Vec::with_capacity(4096), Vec::with_capacity(64)];
    let mut low = false;
    for (size, (block, held)) in [16, 2].into_iter().zip(blocks.iter().zip(&mut held)) {
        low = loop {
            let st = lifeboat::stats();
            let target = st.min_pages + 72;
            if st.free_pages < target + size || held.len() == held.capacity() {
                break st.free_pages < target + size;
            }
            // SAFETY: a non-zero size.
            let p = unsafe { GLOBAL.alloc(*block) };
            if p.is_null() {
                break false;
            }
            held.push(p as usize);
        };
        if !low {
            break;
        }
    }
    let st = lifeboat::stats();
    let low = low && st.free_pages < st.low_pages;
    let r = low.then(f);
    for (block, held) in blocks.iter().zip(&held) {
        for &p in held {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, *block) };
        }
    }
    r
}

/// One test function: the steps read the process heap's counts and drive
/// it low, which a concurrent test in this binary would disturb.
#[test]
fn threads_hold_nothing_while_memory_is_short() {
    // A failure must report, not hang: the default hook's backtrace (with
    // RUST_BACKTRACE set) loads debug info in megabyte blocks, which the
    // 256 MiB heap, fragmented by the steps, may refuse, and std's
    // allocation-error handler then waits for the backtrace lock.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    for owner in [Owner::Exited, Owner::Live, Owner::Scattered] {
        short_of_memory_steps(owner);
    }
}

fn short_of_memory_steps(owner: Owner) {
    let l = Layout::from_size_align(owner.size(), 8).unwrap();
    if let Owner::Scattered = owner {
        make_scattered_sets(3); // one a step
    }
    // With memory to spare the freeing thread holds objects (so the
    // assertions below can fail), at most a chain's 64 in a batch, and
    // gives them all back when it exits.
    let (held, after_exit) = held_by_a_thread_freeing(owner);
    assert!(held > 0, "{owner:?}: no object was held");
    if let Owner::Live = owner {
        assert!(
            held <= 64,
            "{owner:?}: {held} objects held in one class's chain"
        );
    }
    if let Owner::Scattered = owner {
        // One object in the chain of the class; the rest held back.
        assert!(held > 1, "{owner:?}: no free was held back");
        assert!(held <= 64, "{owner:?}: {held} frees held back");
    }
    assert_eq!(
        after_exit, 0,
        "{owner:?}: objects still held after the thread exited"
    );

    // Short of memory, nothing is held.
    let (held, _) = short_of_memory(|| held_by_a_thread_freeing(owner))
        .expect("the heap never went below `low` with every request granted");
    assert_eq!(
        held, 0,
        "{owner:?}: a thread held objects below the low watermark"
    );

    // A thread that held objects while memory was plentiful gives them all
    // back at its first free once memory is short.
    static PHASE: AtomicUsize = AtomicUsize::new(0);
    PHASE.store(0, Ordering::Release);
    let wait_for = |phase| {
        while PHASE.load(Ordering::Acquire) != phase {
            std::thread::yield_now();
        }
    };
    let t = std::thread::spawn(move || {
        let own = start_freeing(owner);
        let (v, owner_thread) = objects(owner, N);
        let before = owner.live_objects();
        for &p in &v[..N - 1] {
            // SAFETY: each object is live and freed once.
            unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        }
        let held = owner.live_objects() + (N - 1) - before;
        PHASE.store(1, Ordering::Release);
        wait_for(2);
        let before = owner.live_objects();
        // SAFETY: the last object, live, freed once.
        unsafe { GLOBAL.dealloc(v[N - 1] as *mut u8, l) };
        let given_back = before - owner.live_objects();
        PHASE.store(3, Ordering::Release);
        end_freeing(owner, own);
        drop(owner_thread);
        (held, given_back)
    });
    wait_for(1);
    let reached = short_of_memory(|| {
        PHASE.store(2, Ordering::Release);
        wait_for(3);
    });
    let (held, given_back) = t.join().unwrap();
    assert!(reached.is_some(), "the heap never went below `low`");
    assert!(held > 0, "{owner:?}: no object was held");
    assert_eq!(
        given_back,
        held + 1,
        "{owner:?}: the free under pressure did not give back the {held} held objects"
    );
}
