//! Capture benchmark (issue 4): success rate and latency of order-5..8
//! requests under concurrent small-allocation churn on a tight budget,
//! with capture on and off, in one run.
//!
//! A 64 MiB private heap is filled by a cache of order-3 blocks that a
//! shrinker frees a few at a time, lowest address first. Two threads churn
//! order-3 blocks (`HIGH | NORETRY`), taking whatever reclaim frees. The
//! measuring thread asks for blocks of order 5..8; each request must go
//! through direct reclaim. Capture hands it the block a merge completes;
//! without capture the churn can split those pages before the request
//! retries. Rounds alternate between the two configurations.
//!
//! `cargo run --release -p lifeboat-bench --bin capture [-- ROUNDS]`
//!
//! Measured here (2 cores): no gain. Both settings serve 100 % of the
//! requests in about the same median time; capture takes the block in
//! most requests, but without it the retry finds the same merged block
//! still free, because the buddy lists hand out the smallest fitting
//! block first and the retry follows the shrinker within microseconds.

use lifeboat::{AllocFlags, Config, Heap, ShrinkControl, ShrinkResult, Shrinker};
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const BUDGET: usize = 64 << 20;
/// Blocks the shrinker frees per call: small, so a high-order request
/// needs several frees to merge into its block.
const FREE_PER_SCAN: usize = 8;
/// Pages per churn allocation: the same order-3 blocks the cache frees, so
/// churn competes for exactly the pages reclaim releases.
const CHURN_PAGES: usize = 8;

fn blocks(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE, pages * PAGE).unwrap()
}

struct Cache {
    heap: &'static Heap,
    items: Mutex<Vec<usize>>,
}

impl Cache {
    fn fill(&self) {
        let mut items = self.items.lock().unwrap();
        while let Ok(p) = self.heap.alloc(
            blocks(8),
            AllocFlags::NORMAL | AllocFlags::NORETRY | AllocFlags::NOWARN,
        ) {
            items.push(p.as_ptr() as usize);
        }
        // Highest address first in the vector, so pops free the lowest.
        items.sort_unstable_by(|a, b| b.cmp(a));
    }
}

impl Shrinker for Cache {
    fn count(&self) -> usize {
        self.items.try_lock().map_or(0, |v| v.len())
    }

    fn scan(&self, _sc: &ShrinkControl) -> ShrinkResult {
        let Ok(mut items) = self.items.try_lock() else {
            return ShrinkResult::Stop;
        };
        let mut n = 0;
        while n < FREE_PER_SCAN {
            let Some(p) = items.pop() else { break };
            // SAFETY: every item is a live block of this heap.
            unsafe {
                self.heap
                    .dealloc(NonNull::new(p as *mut u8).unwrap(), blocks(8))
            };
            n += 1;
        }
        ShrinkResult::Freed(n)
    }
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    lat_us: Vec<f64>,
    captures: usize,
}

fn run_round(capture: bool, order: usize, requests: usize, tally: &mut Tally) {
    let heap: &'static Heap = Box::leak(Box::new(
        Heap::new(Config::new().budget(BUDGET).capture(capture)).unwrap(),
    ));
    let cache: &'static Cache = Box::leak(Box::new(Cache {
        heap,
        items: Mutex::new(Vec::new()),
    }));
    heap.register_shrinker(cache).unwrap();
    cache.fill();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let stop = &stop;
            s.spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let f = AllocFlags::HIGH | AllocFlags::NORETRY | AllocFlags::NOWARN;
                    if let Ok(p) = heap.alloc(blocks(CHURN_PAGES), f) {
                        held.push(p);
                    }
                    if held.len() > 64 {
                        for p in held.drain(..32) {
                            // SAFETY: allocated above.
                            unsafe { heap.dealloc(p, blocks(CHURN_PAGES)) };
                        }
                    }
                    std::hint::spin_loop();
                }
                for p in held {
                    // SAFETY: allocated above.
                    unsafe { heap.dealloc(p, blocks(CHURN_PAGES)) };
                }
            });
        }
        let want = blocks(1 << order);
        for _ in 0..requests {
            let t = Instant::now();
            let r = heap.alloc(want, AllocFlags::NORMAL | AllocFlags::NOWARN);
            let dt = t.elapsed();
            match r {
                Ok(p) => {
                    tally.ok += 1;
                    tally.lat_us.push(dt.as_secs_f64() * 1e6);
                    // SAFETY: allocated above.
                    unsafe { heap.dealloc(p, want) };
                }
                Err(_) => tally.failed += 1,
            }
            cache.fill();
        }
        stop.store(true, Ordering::Relaxed);
    });
    tally.captures += heap.stats().reclaim.capture_hits;
    heap.unregister_shrinker(cache);
    let mut items = cache.items.lock().unwrap();
    for p in items.drain(..) {
        // SAFETY: live blocks of this heap.
        unsafe { heap.dealloc(NonNull::new(p as *mut u8).unwrap(), blocks(8)) };
    }
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let requests = 50;
    println!(
        "## capture on vs off: order-5..8 requests under 2-thread churn, {} MiB budget",
        BUDGET >> 20
    );
    println!();
    println!("{rounds} rounds x {requests} requests per order and setting, settings interleaved.");
    println!();
    println!("| order | capture | success | median µs | p90 µs | captures |");
    println!("|---:|---|---:|---:|---:|---:|");
    let start = Instant::now();
    for order in 5..=8 {
        let mut on = Tally::default();
        let mut off = Tally::default();
        for _ in 0..rounds {
            run_round(true, order, requests, &mut on);
            run_round(false, order, requests, &mut off);
        }
        for (name, t) in [("on", &mut on), ("off", &mut off)] {
            let total = t.ok + t.failed;
            let med = pct(&mut t.lat_us, 0.5);
            let p90 = pct(&mut t.lat_us, 0.9);
            println!(
                "| {order} | {name} | {:.1} % ({}/{}) | {med:.1} | {p90:.1} | {} |",
                100.0 * t.ok as f64 / total as f64,
                t.ok,
                total,
                t.captures
            );
        }
    }
    eprintln!("capture benchmark took {:?}", start.elapsed());
    let _ = Duration::ZERO;
}
