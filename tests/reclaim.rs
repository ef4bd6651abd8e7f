//! Reclaim on private heaps with small budgets: shrinkers called under
//! pressure, no recursion into reclaim, the recursive (allocation-free)
//! round, the background reclaimer, capture for large requests, the OOM
//! handler, and purge returning memory to the OS.

use lifeboat::{AllocError, AllocFlags, Config, Heap, ShrinkControl, ShrinkResult, Shrinker};
use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn blocks(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE, pages * PAGE).unwrap()
}

/// A cache of equal blocks on one heap that a shrinker can empty.
struct BlockCache {
    heap: OnceLock<Heap>,
    layout: OnceLock<Layout>,
    items: Mutex<Vec<usize>>,
    scans: AtomicUsize,
    /// Behaviour switches, set per test.
    only_without_alloc: AtomicBool,
    alloc_inside: AtomicBool,
    inner_allocs: AtomicUsize,
    reentered: AtomicUsize,
}

impl BlockCache {
    const fn new() -> Self {
        Self {
            heap: OnceLock::new(),
            layout: OnceLock::new(),
            items: Mutex::new(Vec::new()),
            scans: AtomicUsize::new(0),
            only_without_alloc: AtomicBool::new(false),
            alloc_inside: AtomicBool::new(false),
            inner_allocs: AtomicUsize::new(0),
            reentered: AtomicUsize::new(0),
        }
    }

    fn heap(&self) -> &Heap {
        self.heap.get().unwrap()
    }

    /// Fills the cache until the heap refuses; returns the error.
    fn fill(&self) -> AllocError {
        let layout = *self.layout.get().unwrap();
        loop {
            match self
                .heap()
                .alloc(layout, AllocFlags::NORMAL | AllocFlags::NORETRY)
            {
                Ok(p) => self.items.lock().unwrap().push(p.as_ptr() as usize),
                Err(e) => return e,
            }
        }
    }

    fn free_n(&self, n: usize) -> usize {
        let layout = *self.layout.get().unwrap();
        let mut items = self.items.lock().unwrap();
        let k = n.min(items.len());
        for p in items.drain(..k) {
            // SAFETY: every item is a live block of this heap.
            unsafe {
                self.heap()
                    .dealloc(NonNull::new(p as *mut u8).unwrap(), layout)
            };
        }
        k
    }

    fn clear(&self) {
        self.free_n(usize::MAX);
    }
}

std::thread_local! {
    static IN_SCAN: Cell<bool> = const { Cell::new(false) };
}

impl Shrinker for BlockCache {
    fn count(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    fn scan(&self, sc: &ShrinkControl) -> ShrinkResult {
        if IN_SCAN.with(|s| s.replace(true)) {
            self.reentered.fetch_add(1, Ordering::Relaxed);
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let res = if self.only_without_alloc.load(Ordering::Relaxed) && sc.may_allocate {
            // Pretend this cache needs to allocate to write back; it only
            // works in the allocation-free round.
            ShrinkResult::Stop
        } else {
            if self.alloc_inside.load(Ordering::Relaxed) {
                // Writeback needs a buffer: an allocation from inside reclaim.
                let l = Layout::from_size_align(256, 8).unwrap();
                if let Ok(p) = self.heap().alloc(l, AllocFlags::NORMAL) {
                    self.inner_allocs.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: allocated just above.
                    unsafe { self.heap().dealloc(p, l) };
                }
            }
            ShrinkResult::Freed(self.free_n(sc.nr_to_scan))
        };
        IN_SCAN.with(|s| s.set(false));
        res
    }
}

fn setup(cache: &'static BlockCache, config: Config, layout: Layout) -> &'static Heap {
    cache.heap.set(Heap::new(config).unwrap()).ok().unwrap();
    cache.layout.set(layout).unwrap();
    let heap = cache.heap();
    heap.register_shrinker(cache).unwrap();
    heap
}

#[test]
fn shrinkers_free_memory_for_the_waiting_request() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(&CACHE, Config::new().budget(8 * MIB), blocks(2));
    assert_eq!(CACHE.fill(), AllocError::Watermark);
    let held = CACHE.count();
    // An ordinary request now has to reclaim: the shrinker frees blocks and
    // the request is served from them.
    let p = heap
        .alloc(blocks(4), AllocFlags::NORMAL)
        .expect("served after reclaim");
    assert!(CACHE.scans.load(Ordering::Relaxed) >= 1);
    assert!(CACHE.count() < held);
    let st = heap.stats();
    assert!(
        st.reclaim.direct_runs >= 1 && st.reclaim.shrinker_calls >= 1,
        "{st}"
    );
    assert!(st.reclaim.shrinker_freed >= 1);
    // NORETRY and ATOMIC never reclaim.
    CACHE.fill();
    let scans = CACHE.scans.load(Ordering::Relaxed);
    assert!(heap.alloc(blocks(2), AllocFlags::NORETRY).is_err());
    assert!(heap.alloc(blocks(64), AllocFlags::ATOMIC).is_err());
    assert_eq!(CACHE.scans.load(Ordering::Relaxed), scans);
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(4)) };
    CACHE.clear();
    assert!(heap.unregister_shrinker(&CACHE));
    assert!(!heap.unregister_shrinker(&CACHE));
}

#[test]
fn a_shrinker_that_allocates_does_not_reenter_reclaim() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(&CACHE, Config::new().budget(8 * MIB), blocks(2));
    CACHE.alloc_inside.store(true, Ordering::Relaxed);
    CACHE.fill();
    let p = heap
        .alloc(blocks(2), AllocFlags::NORMAL)
        .expect("served after reclaim");
    assert!(
        CACHE.inner_allocs.load(Ordering::Relaxed) >= 1,
        "the shrinker's own allocation must succeed"
    );
    assert_eq!(
        CACHE.reentered.load(Ordering::Relaxed),
        0,
        "reclaim recursed into a shrinker"
    );
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(2)) };
    CACHE.clear();
}

#[test]
fn recursive_round_runs_when_even_the_reserve_is_gone() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(&CACHE, Config::new().budget(8 * MIB), blocks(2));
    CACHE.only_without_alloc.store(true, Ordering::Relaxed);
    // The cache takes everything, reserve included.
    lifeboat::memalloc(|| {
        let layout = blocks(2);
        while let Ok(p) = heap.alloc(layout, AllocFlags::NORETRY) {
            CACHE.items.lock().unwrap().push(p.as_ptr() as usize);
        }
    });
    assert!(heap.stats().free_pages < 2);
    // A memalloc thread (a flusher) needs memory: only the allocation-free
    // round of this shrinker can provide it.
    let p = lifeboat::memalloc(|| heap.alloc(blocks(2), AllocFlags::NORMAL))
        .expect("recursive reclaim");
    let st = heap.stats();
    assert!(st.reclaim.recursive_rounds >= 1, "{st}");
    assert_eq!(
        st.reclaim.direct_runs, 0,
        "memalloc callers never direct-reclaim"
    );
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(2)) };
    CACHE.clear();
}

#[test]
fn background_reclaimer_reaches_high_and_sleeps() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(
        &CACHE,
        Config::new()
            .budget(8 * MIB)
            .background_reclaim(true)
            .purge_interval_ms(60_000),
        blocks(2),
    );
    // Filling stops at `min`, below `low`: that wakes the reclaimer (which
    // may already be at work by the time `fill` returns).
    assert_eq!(CACHE.fill(), AllocError::Watermark);
    let st = heap.stats();
    // Woken below `low`, it works until `high`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while heap.stats().free_pages < st.high_pages {
        assert!(
            Instant::now() < deadline,
            "background reclaim did not reach high:\n{}",
            heap.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let runs = heap.stats().reclaim.background_runs;
    assert!(runs >= 1);
    // Then it sleeps: no more rounds while nothing allocates.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        heap.stats().reclaim.background_runs,
        runs,
        "the reclaimer kept running"
    );
    assert!(CACHE.count() > 0, "it stopped at high, not at empty");
    CACHE.clear();
}

/// What the background reclaimer's periodic purge returns: on huge pages
/// only free blocks of whole huge pages (2 MiB and up), since purging part
/// of one would split it; on 4 KiB pages blocks of 64 KiB and up.
fn background_purge(huge_pages: bool) -> usize {
    let heap = Heap::new(
        Config::new()
            .budget(64 * MIB)
            .huge_pages(huge_pages)
            .background_reclaim(true)
            .purge_interval_ms(10),
    )
    .unwrap();
    // Two 64 KiB blocks, buddies carved from untouched pages, and a 2 MiB
    // block, all written; then the first small one and the big one freed.
    // The small one cannot merge (its buddy is live), the big one is a
    // whole huge page or more once freed.
    let small = blocks(16);
    let big = Layout::from_size_align(2 * MIB, 2 * MIB).unwrap();
    let a = heap.alloc(small, AllocFlags::NORMAL).unwrap();
    let b = heap.alloc(small, AllocFlags::NORMAL).unwrap();
    let c = heap.alloc(big, AllocFlags::NORMAL).unwrap();
    // SAFETY: the blocks are as large as their layouts.
    unsafe {
        a.as_ptr().write_bytes(1, small.size());
        b.as_ptr().write_bytes(1, small.size());
        c.as_ptr().write_bytes(1, big.size());
        heap.dealloc(a, small);
        heap.dealloc(c, big);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while heap.stats().reclaim.purged_bytes == 0 {
        assert!(Instant::now() < deadline, "the reclaimer never purged");
        std::thread::sleep(Duration::from_millis(5));
    }
    // (A round adds its bytes to the count once it is done.)
    let purged = heap.stats().reclaim.purged_bytes;
    // SAFETY: allocated above, freed once.
    unsafe { heap.dealloc(b, small) };
    purged
}

#[test]
fn the_background_purge_keeps_huge_pages_whole() {
    let purged = background_purge(true);
    assert!(purged >= 2 * MIB, "purged {purged}");
    assert_eq!(
        purged % (2 * MIB),
        0,
        "a block smaller than a huge page was purged ({purged} bytes)"
    );
    let purged = background_purge(false);
    assert_eq!(
        purged % (2 * MIB),
        64 << 10,
        "without huge pages the 64 KiB block is purged too ({purged} bytes)"
    );
}

#[test]
fn capture_hands_the_block_to_the_requester_under_churn() {
    static CACHE: BlockCache = BlockCache::new();
    // The cache holds order-4 blocks; the requester wants order 6 (four of
    // them merged) while another thread churns 2-page blocks.
    let heap = setup(&CACHE, Config::new().budget(16 * MIB), blocks(16));
    CACHE.fill();
    let stop = AtomicBool::new(false);
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(p) = heap.alloc(blocks(2), AllocFlags::HIGH | AllocFlags::NORETRY) {
                    held.push(p);
                }
                if held.len() > 8 {
                    for p in held.drain(..4) {
                        // SAFETY: allocated above.
                        unsafe { heap.dealloc(p, blocks(2)) };
                    }
                }
            }
            for p in held {
                // SAFETY: allocated above.
                unsafe { heap.dealloc(p, blocks(2)) };
            }
        });
        let r = heap.alloc(blocks(64), AllocFlags::NORMAL);
        stop.store(true, Ordering::Relaxed);
        r
    });
    let p = got.expect("the order-6 request is served");
    let st = heap.stats();
    assert!(st.reclaim.capture_hits >= 1, "capture was not used:\n{st}");
    assert!(st.reclaim.captured_pages >= 64);
    assert_eq!(heap.usable_size(p.as_ptr()), Some(64 * PAGE));
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(64)) };
    CACHE.clear();
    let st = heap.stats();
    assert_eq!(st.free_pages, st.budget_pages, "capture lost pages:\n{st}");
}

#[test]
fn capture_can_be_turned_off() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(
        &CACHE,
        Config::new().budget(16 * MIB).capture(false),
        blocks(16),
    );
    CACHE.fill();
    let p = heap
        .alloc(blocks(64), AllocFlags::NORMAL)
        .expect("served by retry");
    assert_eq!(heap.stats().reclaim.capture_hits, 0);
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(64)) };
    CACHE.clear();
}

static OOM_CALLS: AtomicUsize = AtomicUsize::new(0);
static OOM_FREES: OnceLock<&'static BlockCache> = OnceLock::new();

fn oom_handler(stats: &lifeboat::Stats) -> bool {
    OOM_CALLS.fetch_add(1, Ordering::SeqCst);
    assert!(stats.free_pages < stats.low_pages);
    // The first call frees memory; later ones cannot.
    match OOM_FREES.get() {
        Some(c) if OOM_CALLS.load(Ordering::SeqCst) == 1 => c.free_n(8) > 0,
        _ => false,
    }
}

#[test]
fn oom_handler_runs_once_per_failed_request() {
    // Blocks held by a cache that is NOT registered as a shrinker: only the
    // OOM handler can free them.
    static CACHE: BlockCache = BlockCache::new();
    CACHE
        .heap
        .set(Heap::new(Config::new().budget(8 * MIB)).unwrap())
        .ok()
        .unwrap();
    CACHE.layout.set(blocks(2)).unwrap();
    let heap = CACHE.heap();
    OOM_FREES.set(&CACHE).ok().unwrap();
    heap.set_oom_handler(Some(oom_handler));
    CACHE.fill();
    // The handler frees memory, the retry succeeds: one call.
    let p = heap
        .alloc(blocks(2), AllocFlags::NORMAL)
        .expect("served after the OOM handler");
    assert_eq!(OOM_CALLS.load(Ordering::SeqCst), 1);
    CACHE.fill();
    // Now the handler cannot help: one call, then the error.
    assert_eq!(
        heap.alloc(blocks(2), AllocFlags::NORMAL),
        Err(AllocError::Watermark)
    );
    assert_eq!(OOM_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(heap.stats().reclaim.oom_events, 2);
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, blocks(2)) };
    CACHE.clear();
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * PAGE
}

#[test]
fn rss_falls_after_purge() {
    let heap = Heap::new(Config::new().budget(256 * MIB)).unwrap();
    let layout = Layout::from_size_align(MIB, 8).unwrap();
    let mut v = Vec::new();
    for i in 0..64 {
        let p = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
        // SAFETY: the block is 1 MiB.
        unsafe { p.as_ptr().write_bytes(i as u8 | 1, MIB) };
        v.push(p);
    }
    let before = heap.stats().resident_bytes;
    assert!(before >= 64 * MIB);
    for p in v {
        // SAFETY: allocated above.
        unsafe { heap.dealloc(p, layout) };
    }
    assert!(
        heap.stats().resident_bytes >= 60 * MIB,
        "freed blocks stay resident until purged"
    );
    let rss_before = rss_bytes();
    let purged = heap.purge();
    assert!(purged >= 64 * MIB, "purged {purged}");
    let st = heap.stats();
    assert!(st.resident_bytes < 4 * MIB, "{st}");
    assert!(
        rss_bytes() + 48 * MIB < rss_before,
        "process RSS did not fall"
    );
    assert_eq!(st.reclaim.purged_bytes, purged);
    // Purged memory is reused, and reads as zero when zeroed allocation asks.
    let p = heap.alloc_zeroed(layout, AllocFlags::NORMAL).unwrap();
    // SAFETY: the block is 1 MiB.
    assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), MIB) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, layout) };
}

#[test]
fn shrinker_registry_rejects_duplicates() {
    static CACHE: BlockCache = BlockCache::new();
    let heap = setup(&CACHE, Config::new().budget(4 * MIB), blocks(2));
    assert_eq!(
        heap.register_shrinker(&CACHE),
        Err(lifeboat::RegisterError::Duplicate)
    );
    assert!(heap.unregister_shrinker(&CACHE));
    assert!(heap.register_shrinker(&CACHE).is_ok());
}

#[test]
fn freed_direct_mappings_are_reused_uncharged_and_purged() {
    let heap = Heap::new(Config::new().budget(256 * MIB)).unwrap();
    let layout = Layout::from_size_align(16 * MIB, 8).unwrap();
    let budget = heap.stats().budget_pages;
    let p = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
    assert_eq!(heap.stats().free_pages, budget - 4096);
    // SAFETY: allocated above.
    unsafe { heap.dealloc(p, layout) };
    let st = heap.stats();
    assert_eq!(st.free_pages, budget, "a cached mapping is not charged");
    assert_eq!(st.huge_cached_bytes, 16 * MIB);
    let q = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
    assert_eq!(q, p, "the cached mapping is reused");
    assert_eq!(heap.stats().huge_cached_bytes, 0);
    // SAFETY: allocated above.
    unsafe { heap.dealloc(q, layout) };
    assert!(heap.purge() >= 16 * MIB);
    assert_eq!(heap.stats().huge_cached_bytes, 0);
}
