//! Every path of the global allocator, small enough to run under Miri
//! (`ci/miri.sh`), which then checks each pointer's provenance and borrow
//! tags, every access against its allocation, and the threads' accesses
//! for data races. Run natively it is an ordinary content check.
//!
//! The paths: a thread's own frees (fast path), frees into other threads'
//! slabs (foreign lists, remote batches, held-back frees, remote stacks),
//! frees into the slabs of threads that have exited (detached slabs,
//! settled and claimed again), blocks of whole pages (parked, cached) and
//! direct mappings, `realloc` in place and moved (growth runs), and
//! `alloc_zeroed`. Objects are smaller than their classes (a one-byte
//! `Box<[u8]>` in an 8-byte class), so a free that wrote its link through
//! the caller's pointer would be caught.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat =
    lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(if cfg!(miri) {
        64 << 20
    } else {
        256 << 20
    }));

mod common;
use common::Rng;

/// Operations per test: a hundred or two under Miri, where every access
/// is interpreted and checked; more natively.
const OPS: usize = if cfg!(miri) { 160 } else { 20_000 };

/// Largest block of whole pages the tests fill (filling is byte by byte,
/// slow when interpreted).
const PAGES_MAX: usize = if cfg!(miri) { 6_000 } else { 64_000 };

/// The byte at offset `i` of the block tagged `tag`.
fn pattern(tag: usize, i: usize) -> u8 {
    (tag.wrapping_mul(131) ^ i.wrapping_mul(7)) as u8
}

fn filled(tag: usize, size: usize) -> Box<[u8]> {
    (0..size).map(|i| pattern(tag, i)).collect()
}

fn check(tag: usize, b: &[u8]) {
    for (i, &x) in b.iter().enumerate() {
        assert_eq!(x, pattern(tag, i), "block {tag} corrupted at byte {i}");
    }
}

/// A size: mostly small (down to one byte), sometimes a medium class, and
/// now and then whole pages.
fn size_of_op(rng: &mut Rng) -> usize {
    match rng.below(50) {
        0 => 4096 + rng.below(PAGES_MAX - 4096),
        1..=5 => 512 + rng.below(4096),
        _ => 1 + rng.below(200),
    }
}

#[test]
fn own_frees_keep_every_byte() {
    let mut rng = Rng::new(0x5eed);
    let mut live: Vec<(usize, Box<[u8]>)> = Vec::new();
    for tag in 0..OPS {
        live.push((tag, filled(tag, size_of_op(&mut rng))));
        if live.len() > 64 || rng.below(2) == 0 {
            let (t, b) = live.swap_remove(rng.below(live.len()));
            check(t, &b);
        }
    }
    for (t, b) in &live {
        check(*t, b);
    }
}

#[test]
fn frees_from_other_threads_and_after_their_owners_exit() {
    // Producers allocate and exit; the consumer frees what they built in
    // an order of its own, allocating meanwhile (so its foreign lists hand
    // objects out again).
    let (tx, rx) = mpsc::channel::<Vec<(usize, Box<[u8]>)>>();
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(0x100 + p);
                for round in 0..4 {
                    let batch = (0..OPS / 8)
                        .map(|i| {
                            let tag = (p as usize * 10 + round) * OPS + i;
                            (tag, filled(tag, size_of_op(&mut rng)))
                        })
                        .collect();
                    tx.send(batch).expect("consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let mut rng = Rng::new(0x200);
        let mut mine = Vec::new();
        for mut batch in rx {
            while !batch.is_empty() {
                let (t, b) = batch.swap_remove(rng.below(batch.len()));
                check(t, &b);
                drop(b);
                if rng.below(3) == 0 {
                    let tag = usize::MAX - mine.len();
                    mine.push((tag, filled(tag, size_of_op(&mut rng))));
                }
            }
        }
        for (t, b) in &mine {
            check(*t, b);
        }
    });
    for p in producers {
        p.join().expect("producer");
    }
    consumer.join().expect("consumer");
}

#[test]
fn realloc_grows_and_shrinks_with_contents() {
    let mut rng = Rng::new(0x7e11);
    let rounds = if cfg!(miri) { 3 } else { 40 };
    for round in 0..rounds {
        let mut v: Vec<u8> = Vec::new();
        let target = 64 + rng.below(if cfg!(miri) { 20_000 } else { 300_000 });
        while v.len() < target {
            v.push(pattern(round, v.len()));
        }
        check(round, &v);
        v.truncate(v.len() / 3);
        v.shrink_to_fit();
        check(round, &v);
    }
}

#[test]
fn zeroed_blocks_are_zero_after_reuse() {
    let mut rng = Rng::new(0x2e40);
    for _ in 0..OPS / 10 {
        let size = size_of_op(&mut rng);
        let layout = Layout::from_size_align(size, 8).expect("layout");
        // SAFETY: non-zero size; the block is written, read and freed
        // with its layout.
        unsafe {
            let p = GLOBAL.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xa5, size);
            GLOBAL.dealloc(p, layout);
            let q = GLOBAL.alloc_zeroed(layout);
            assert!(!q.is_null());
            assert!(
                std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0),
                "alloc_zeroed of {size} bytes not zero"
            );
            GLOBAL.dealloc(q, layout);
        }
    }
}

#[test]
fn aligned_and_huge_blocks() {
    // Alignments up to 4 MiB, and a direct mapping above 4 MiB.
    let sizes = [1, 24, 3000, 70_000, 5 << 20];
    for &size in &sizes {
        for shift in [3, 6, 12, 16, 22] {
            let layout = Layout::from_size_align(size, 1 << shift).expect("layout");
            // SAFETY: non-zero size; last and first bytes written and read
            // back, then freed with the layout.
            unsafe {
                let p = GLOBAL.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
                p.add(size - 1).write(0x22);
                p.write(0x11);
                assert_eq!(p.read(), 0x11);
                assert_eq!(p.add(size - 1).read(), if size == 1 { 0x11 } else { 0x22 });
                GLOBAL.dealloc(p, layout);
            }
        }
    }
}
