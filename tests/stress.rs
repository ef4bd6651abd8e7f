//! Multi-threaded stress: random alloc / free / realloc of random sizes and
//! alignments; every object carries a pattern derived from its address and
//! size, checked before it is freed or reallocated; some objects are passed
//! to other threads through channels and freed there.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const THREADS: usize = 6;
const OPS: usize = if cfg!(debug_assertions) {
    200_000
} else {
    800_000
};
const SLOTS: usize = 256;
const MIB: usize = 1024 * 1024;

mod common;
use common::Rng;

/// 8 KiB of pseudo-random bytes; an object's pattern is this table read
/// from an offset derived from (address, size), repeated.
const TABLE_LEN: usize = 8192;
const WINDOW: usize = TABLE_LEN / 2;

fn table() -> &'static [u8; TABLE_LEN] {
    static TABLE: std::sync::OnceLock<Box<[u8; TABLE_LEN]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Rng::new(0xabcdef);
        let mut t = Box::new([0u8; TABLE_LEN]);
        for b in t.iter_mut() {
            *b = rng.next() as u8;
        }
        t
    })
}

fn seed_of(addr: usize, size: usize) -> usize {
    let h = (addr as u64 ^ (size as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize % WINDOW
}

/// An object handed out by the global allocator, with the pattern seed it
/// was filled with.
struct Obj {
    addr: usize,
    layout: Layout,
    seed: usize,
}

fn fill(p: *mut u8, size: usize, seed: usize) {
    let t = table();
    let mut off = 0;
    while off < size {
        let n = (size - off).min(WINDOW);
        // SAFETY: `p + off .. p + off + n` is inside the live allocation; the
        // source is inside the table (seed < WINDOW, n <= WINDOW).
        unsafe { std::ptr::copy_nonoverlapping(t.as_ptr().add(seed), p.add(off), n) };
        off += n;
    }
}

/// Checks the first `len` bytes of the object against its pattern.
fn verify(o: &Obj, len: usize, what: &str) {
    let t = table();
    // SAFETY: the object is live and its first `len` bytes were filled.
    let s = unsafe { std::slice::from_raw_parts(o.addr as *const u8, len) };
    for (k, chunk) in s.chunks(WINDOW).enumerate() {
        let want = &t[o.seed..o.seed + chunk.len()];
        if chunk != want {
            let at = chunk
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{what}: object {:#x} size {} align {} corrupted at byte {}",
                o.addr,
                o.layout.size(),
                o.layout.align(),
                k * WINDOW + at
            );
        }
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.below(100) {
        0..=1 => 70_001 + rng.below(MIB - 70_000),
        2..=11 => rng.below(70_001),
        12..=40 => rng.below(4097),
        _ => rng.below(257),
    };
    let align = match rng.below(20) {
        0 => 1 << (4 + rng.below(9)), // 16 .. 4096
        1..=3 => 1,
        _ => 8,
    };
    Layout::from_size_align(size.max(1), align).expect("valid layout")
}

fn new_obj(layout: Layout) -> Obj {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null(), "alloc({layout:?}) failed");
    assert_eq!(
        p as usize % layout.align(),
        0,
        "alloc({layout:?}) misaligned"
    );
    let seed = seed_of(p as usize, layout.size());
    fill(p, layout.size(), seed);
    Obj {
        addr: p as usize,
        layout,
        seed,
    }
}

fn free_obj(o: Obj, what: &str) {
    verify(&o, o.layout.size(), what);
    // SAFETY: the object was allocated with `o.layout` and is freed once.
    unsafe { dealloc(o.addr as *mut u8, o.layout) };
}

fn realloc_obj(o: Obj, new_size: usize) -> Obj {
    verify(&o, o.layout.size(), "before realloc");
    // SAFETY: live object allocated with `o.layout`; non-zero new size.
    let q = unsafe { realloc(o.addr as *mut u8, o.layout, new_size) };
    assert!(
        !q.is_null(),
        "realloc {} -> {new_size} failed",
        o.layout.size()
    );
    assert_eq!(q as usize % o.layout.align(), 0, "realloc lost alignment");
    let kept = Obj {
        addr: q as usize,
        layout: o.layout,
        seed: o.seed,
    };
    verify(&kept, o.layout.size().min(new_size), "after realloc");
    let layout = Layout::from_size_align(new_size, o.layout.align()).expect("valid layout");
    let seed = seed_of(q as usize, new_size);
    fill(q, new_size, seed);
    Obj {
        addr: q as usize,
        layout,
        seed,
    }
}

#[test]
fn random_alloc_free_realloc_across_threads() {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Obj>()).unzip();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let senders = senders.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 11);
                let mut slots: Vec<Option<Obj>> = (0..SLOTS).map(|_| None).collect();
                let (mut allocs, mut frees, mut reallocs, mut sent, mut got) = (0, 0, 0, 0, 0);
                barrier.wait();
                for _ in 0..OPS {
                    let i = rng.below(SLOTS);
                    match slots[i].take() {
                        None => {
                            slots[i] = Some(new_obj(random_layout(&mut rng)));
                            allocs += 1;
                        }
                        Some(o) => match rng.below(10) {
                            0..=4 => {
                                free_obj(o, "local free");
                                frees += 1;
                            }
                            5..=7 => {
                                let new_size = random_layout(&mut rng).size();
                                slots[i] = Some(realloc_obj(o, new_size));
                                reallocs += 1;
                            }
                            _ => {
                                let to = (t + 1 + rng.below(THREADS - 1)) % THREADS;
                                verify(&o, o.layout.size(), "before send");
                                senders[to].send(o).expect("receiver alive");
                                sent += 1;
                            }
                        },
                    }
                    if rng.below(16) == 0 {
                        while let Ok(o) = rx.try_recv() {
                            free_obj(o, "remote free");
                            got += 1;
                        }
                    }
                }
                for o in slots.into_iter().flatten() {
                    free_obj(o, "final free");
                }
                // Stop sending, then drain until every sender is gone.
                drop(senders);
                for o in rx.iter() {
                    free_obj(o, "drain");
                    got += 1;
                }
                (allocs, frees, reallocs, sent, got)
            })
        })
        .collect();
    drop(senders);
    let (mut allocs, mut frees, mut reallocs, mut sent, mut got) = (0, 0, 0, 0, 0);
    for h in handles {
        let r = h.join().expect("stress thread panicked");
        allocs += r.0;
        frees += r.1;
        reallocs += r.2;
        sent += r.3;
        got += r.4;
    }
    assert!(allocs > 0 && frees > 0 && reallocs > 0 && sent > 0);
    assert_eq!(sent, got, "objects sent between threads were lost");
}

/// A small object's layout (8–256 B, 8-aligned), as most structures hold.
fn small_layout(rng: &mut Rng) -> Layout {
    Layout::from_size_align(8 + rng.below(249), 8).expect("valid layout")
}

/// Threads build sets of small objects; the test's thread tears them down
/// in random order, in runs of frees without an allocation between (long
/// enough that its foreign lists fill, give back and stop listing, and its
/// remote batch, every chain one object long, is bypassed and holds frees
/// back, `src/remote_batch.rs`), each run followed by allocations of the
/// same sizes (whose refills may claim the slabs of frees held back). In
/// half the rounds the builders stay alive and churn objects of their own
/// meanwhile, collecting the frees into their slabs; in the other half
/// they have exited. Every object's pattern is checked before it is
/// freed, so an object handed out twice, or a free pushed onto the wrong
/// slab, shows as a corrupted pattern if it does not abort first.
#[test]
fn random_order_teardown_of_other_threads_objects() {
    const BUILDERS: usize = 3;
    const PER_BUILDER: usize = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    const RUN: usize = 4096;
    for round in 0..4u64 {
        let live = round % 2 == 0;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Vec<Obj>>();
        let builders: Vec<_> = (0..BUILDERS as u64)
            .map(|b| {
                let tx = tx.clone();
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut rng = Rng::new(round * 16 + b + 1);
                    let objs = (0..PER_BUILDER)
                        .map(|_| new_obj(small_layout(&mut rng)))
                        .collect();
                    tx.send(objs).expect("the test thread receives");
                    let mut mine: Vec<Obj> = Vec::new();
                    while live && !stop.load(Ordering::Relaxed) {
                        if mine.len() < 256 {
                            mine.push(new_obj(small_layout(&mut rng)));
                        } else {
                            let k = rng.below(mine.len());
                            free_obj(mine.swap_remove(k), "builder's own");
                        }
                    }
                    for o in mine {
                        free_obj(o, "builder's own");
                    }
                })
            })
            .collect();
        drop(tx);
        let mut all: Vec<Obj> = rx.iter().take(BUILDERS).flatten().collect();
        let mut builders = Some(builders);
        if !live {
            for h in builders.take().into_iter().flatten() {
                h.join().expect("builder panicked");
            }
        }
        let mut rng = Rng::new(round + 100);
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i + 1));
        }
        let mut own: Vec<Obj> = Vec::new();
        let mut all = all.into_iter().peekable();
        while all.peek().is_some() {
            for o in all.by_ref().take(RUN) {
                free_obj(o, "teardown");
            }
            for _ in 0..64 {
                own.push(new_obj(small_layout(&mut rng)));
            }
            while own.len() > 1024 {
                let k = rng.below(own.len());
                free_obj(own.swap_remove(k), "teardown's own");
            }
        }
        for o in own {
            free_obj(o, "teardown's own");
        }
        stop.store(true, Ordering::Relaxed);
        for h in builders.into_iter().flatten() {
            h.join().expect("builder panicked");
        }
    }
}
