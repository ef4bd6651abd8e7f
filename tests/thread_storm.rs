//! Thread exit storm: 10,000 short-lived threads, each allocating a few
//! hundred objects and leaving some of them to be freed by the main thread.
//! Memory held for dead threads (caches, slabs they owned) must be recycled:
//! neither the pages in use between batches nor the arena's mapped bytes may
//! keep growing.
//!
//! This file holds a single test so that nothing else allocates in the
//! process while the mapped-bytes figures are taken.

use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const THREADS: usize = 10_000;
const CONCURRENT: usize = 16;
/// Objects allocated by each thread.
const PER_THREAD: usize = if cfg!(debug_assertions) { 200 } else { 400 };
/// Small sizes cycled through (several slab classes).
const SMALL: [usize; 6] = [8, 24, 64, 200, 1000, 3000];
/// Sizes near and above the small limit, used for every 25th object.
const LARGE: [usize; 3] = [20_000, 40_000, 70_000];
/// Objects a thread keeps at once (besides the ones it leaves behind), so
/// that 16 concurrent threads have a working set of a few MiB: mapped-bytes
/// growth then means leaked memory, not a bigger working set.
const WINDOW: usize = 24;
/// Warm-up batches run before the baseline is taken.
const WARMUP_BATCHES: usize = 64;
/// Allowed growth of mapped bytes after the warm-up.
const SLACK: usize = 4 << 20;

/// Fills a block with its tag byte (a memset, cheap even in debug builds).
fn fill(tag: usize, buf: &mut [u8]) {
    buf.fill(tag as u8);
}

/// Checks both ends of a block and a sample in between.
fn check(tag: usize, buf: &[u8]) -> bool {
    let want = tag as u8;
    let n = buf.len();
    buf.iter().take(32).all(|b| *b == want)
        && buf.iter().skip(n.saturating_sub(32)).all(|b| *b == want)
        && buf.iter().step_by(61).all(|b| *b == want)
}

/// The body of one storm thread: allocates `PER_THREAD` objects, frees
/// most of them as it goes and returns about a third, which the main thread
/// frees after this thread has exited.
fn worker(id: usize) -> Vec<(usize, Box<[u8]>)> {
    let mut window: std::collections::VecDeque<(usize, Box<[u8]>)> =
        std::collections::VecDeque::with_capacity(WINDOW + 1);
    let mut left = Vec::with_capacity(PER_THREAD / 3 + 1);
    for k in 0..PER_THREAD {
        let large = k % 25 == 0;
        let size = if large {
            LARGE[(id + k / 25) % LARGE.len()]
        } else {
            SMALL[(id + k) % SMALL.len()]
        };
        let tag = id * 1000 + k;
        let mut b = vec![0u8; size].into_boxed_slice();
        fill(tag, &mut b);
        // Leave every third small object (and the first large one) behind.
        if (k % 3 == 0 && !large) || k == 0 {
            left.push((tag, b));
        } else {
            window.push_back((tag, b));
            if window.len() > WINDOW {
                let (t, b) = window.pop_front().expect("non-empty window");
                assert!(check(t, &b), "thread {id}: object {t} corrupted");
            }
        }
    }
    for (t, b) in window {
        assert!(check(t, &b), "thread {id}: object {t} corrupted");
    }
    left
}

fn run_batch(first: usize, count: usize) -> usize {
    let handles: Vec<_> = (first..first + count)
        .map(|id| thread::spawn(move || worker(id)))
        .collect();
    let mut freed = 0;
    for h in handles {
        let left = h.join().expect("storm thread panicked");
        // The main thread frees what the dead thread left behind.
        for (tag, b) in left {
            assert!(
                check(tag, &b),
                "object {tag} corrupted after its thread exited"
            );
            freed += 1;
        }
    }
    freed
}

#[test]
fn ten_thousand_threads_do_not_grow_the_heap() {
    let batches = THREADS / CONCURRENT;
    let mut next = 0;
    // The baseline is the largest footprint seen during the warm-up: the
    // arena grows in 4 MiB blocks, and the warm-up shows what the working set
    // of 16 concurrent threads needs.
    let mut base = lifeboat::stats();
    for _ in 0..WARMUP_BATCHES {
        run_batch(next, CONCURRENT);
        next += CONCURRENT;
        let st = lifeboat::stats();
        if st.mapped_bytes > base.mapped_bytes {
            base = st;
        }
    }
    assert!(
        base.mapped_bytes > 0,
        "the storm allocated nothing from lifeboat"
    );
    // Pages in use between batches (everything the storm allocated is freed
    // by then; what remains is caches and the harness).
    let used = |st: &lifeboat::Stats| st.budget_pages - st.free_pages;
    let base_used = used(&lifeboat::stats());
    let mut peak = base.mapped_bytes;
    let mut freed = 0;
    for b in WARMUP_BATCHES..batches {
        freed += run_batch(next, CONCURRENT);
        next += CONCURRENT;
        if b % 64 == 0 {
            peak = peak.max(lifeboat::stats().mapped_bytes);
        }
    }
    let end = lifeboat::stats();
    peak = peak.max(end.mapped_bytes);
    assert_eq!(next, THREADS, "every storm thread ran");
    assert!(freed > 0);
    assert!(
        used(&end) <= base_used + SLACK / lifeboat::PAGE_SIZE,
        "pages in use grew from {base_used} to {} over {} thread exits\nfinal stats:\n{end}",
        used(&end),
        next - WARMUP_BATCHES * CONCURRENT,
    );
    assert!(
        peak <= base.mapped_bytes + SLACK,
        "mapped bytes grew from {} to {} (peak {}) over {} thread exits\n\
         baseline stats:\n{base}\nfinal stats:\n{end}",
        base.mapped_bytes,
        end.mapped_bytes,
        peak,
        next - WARMUP_BATCHES * CONCURRENT,
    );
}
