//! Reclaim: making memory before refusing it.
//!
//! The slow path of every allocation ends in [`HeapInner::alloc_slowpath`]:
//!
//! 1. **Direct reclaim** (callers without the memalloc right that may
//!    block): wake the background reclaimer; if free pages are under half
//!    of `min` and it runs, wait briefly for it (throttling); take one of a
//!    bounded number of direct-reclaimer places; then, with the memalloc
//!    right set and reclaim marked on the thread (so shrinkers can allocate
//!    and never recurse into reclaim), run rounds — drain thread caches
//!    (a generation every cache checks on its slow path), call shrinkers —
//!    and retry, until 16 rounds make no progress. A request above order 3
//!    registers for capture meanwhile and takes the block a free hands it.
//! 2. **Recursive reclaim** (Lameter; memalloc callers, who never direct
//!    reclaim): when even the reserve cannot serve them, run one round in
//!    which shrinkers are told they may not allocate, with nomemalloc set
//!    so nothing inside can nest again; warn (at most once per 10 s); retry.
//! 3. **OOM**: call the application's handler (one caller at a time; the
//!    others wait for it), retry once, print a report (rate-limited), fail.
//!
//! `ATOMIC` and `NORETRY` requests skip all of this.

pub(crate) mod kswapd;
pub(crate) mod shrinker;

use crate::arena::desc::{FLAG_RESERVE, KIND_LARGE};
use crate::diag::{self, MsgBuf, Warn};
use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::heap::HeapInner;
use crate::memalloc::{self, resolve};
use crate::os::{self, PAGE_SHIFT};
use crate::stats::Stats;
use crate::sync::{wait_on, wake_all, AtomicU32, AtomicUsize, Ordering};
use kswapd::Kswapd;
use shrinker::{ShrinkControl, ShrinkResult, ShrinkerRef, ShrinkerRegistry, MAX_SHRINKERS};

/// Rounds without progress before the OOM path (the kernel's
/// `MAX_RECLAIM_RETRIES`).
pub(crate) const MAX_NO_PROGRESS: usize = 16;
/// Concurrent direct reclaimers; the others wait briefly and retry.
const MAX_DIRECT_RECLAIMERS: u32 = 4;
/// The kernel's `DEF_PRIORITY`: a round scans `count >> priority` objects
/// (at least a batch), and priority drops each round without progress.
const DEF_PRIORITY: u32 = 12;
const SCAN_BATCH: usize = 128;

/// Called when reclaim has failed; return true if memory was freed and the
/// allocation should be retried.
pub type OomHandler = fn(&Stats) -> bool;

/// Reclaim state of a heap.
pub(crate) struct Reclaim {
    pub(crate) shrinkers: ShrinkerRegistry,
    pub(crate) kswapd: Kswapd,
    /// Bumped to ask every thread cache to flush on its next slow path.
    pub(crate) drain_gen: AtomicUsize,
    direct: AtomicU32,
    /// 1 while a thread runs the OOM handler.
    oom_busy: AtomicU32,
    oom_handler: AtomicUsize,
    pub(crate) c: ReclaimCounters,
}

/// Reclaim event counters (see [`Stats`]).
pub(crate) struct ReclaimCounters {
    pub(crate) direct_runs: AtomicUsize,
    pub(crate) background_runs: AtomicUsize,
    pub(crate) reclaimed_pages: AtomicUsize,
    pub(crate) shrinker_calls: AtomicUsize,
    pub(crate) shrinker_freed: AtomicUsize,
    pub(crate) recursive_rounds: AtomicUsize,
    pub(crate) capture_hits: AtomicUsize,
    pub(crate) capture_misses: AtomicUsize,
    pub(crate) captured_pages: AtomicUsize,
    pub(crate) oom_events: AtomicUsize,
    pub(crate) purged_bytes: AtomicUsize,
}

impl Reclaim {
    pub(crate) fn new() -> Self {
        let z = || AtomicUsize::new(0);
        Self {
            shrinkers: ShrinkerRegistry::new(),
            kswapd: Kswapd::new(),
            drain_gen: z(),
            direct: AtomicU32::new(0),
            oom_busy: AtomicU32::new(0),
            oom_handler: z(),
            c: ReclaimCounters {
                direct_runs: z(),
                background_runs: z(),
                reclaimed_pages: z(),
                shrinker_calls: z(),
                shrinker_freed: z(),
                recursive_rounds: z(),
                capture_hits: z(),
                capture_misses: z(),
                captured_pages: z(),
                oom_events: z(),
                purged_bytes: z(),
            },
        }
    }

    pub(crate) fn set_oom_handler(&self, h: Option<OomHandler>) {
        self.oom_handler
            .store(h.map_or(0, |f| f as usize), Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> crate::stats::ReclaimStats {
        let c = &self.c;
        let l = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        crate::stats::ReclaimStats {
            direct_runs: l(&c.direct_runs),
            background_runs: l(&c.background_runs),
            reclaimed_pages: l(&c.reclaimed_pages),
            shrinker_calls: l(&c.shrinker_calls),
            shrinker_freed: l(&c.shrinker_freed),
            recursive_rounds: l(&c.recursive_rounds),
            capture_hits: l(&c.capture_hits),
            capture_misses: l(&c.capture_misses),
            captured_pages: l(&c.captured_pages),
            oom_events: l(&c.oom_events),
            purged_bytes: l(&c.purged_bytes),
        }
    }

    fn oom_handler(&self) -> Option<OomHandler> {
        let v = self.oom_handler.load(Ordering::Acquire);
        // SAFETY: a non-zero value was stored from an `OomHandler`.
        (v != 0).then(|| unsafe { core::mem::transmute::<usize, OomHandler>(v) })
    }
}

/// What the retry loop got: an allocation, or a block captured for it.
pub(crate) enum Got<T> {
    Alloc(T),
    Captured(usize),
}

impl HeapInner {
    /// The slow path around `attempt` (see the module docs). `flush_own`
    /// flushes the caller's own cache; `order` is the buddy order the
    /// request needs (for capture and shrinkers).
    pub(crate) fn alloc_slowpath<T>(
        &self,
        flags: AllocFlags,
        order: usize,
        attempt: &mut dyn FnMut() -> Result<T, AllocError>,
        flush_own: &mut dyn FnMut(),
    ) -> Result<Got<T>, AllocError> {
        let err = match attempt() {
            Ok(v) => return Ok(Got::Alloc(v)),
            Err(e) => e,
        };
        let res = self.slowpath_inner(flags, order, err, attempt, flush_own);
        if let Err(e) = res {
            self.refused(resolve(flags), order, e);
        }
        res
    }

    fn slowpath_inner<T>(
        &self,
        flags: AllocFlags,
        order: usize,
        err: AllocError,
        attempt: &mut dyn FnMut() -> Result<T, AllocError>,
        flush_own: &mut dyn FnMut(),
    ) -> Result<Got<T>, AllocError> {
        if !matches!(err, AllocError::Watermark | AllocError::Fragmented) {
            return Err(err);
        }
        self.reclaim.kswapd.wake();
        let r = resolve(flags);
        if r.flags.contains(AllocFlags::ATOMIC) || r.flags.contains(AllocFlags::NORETRY) {
            // No reclaim for these; blocks parked in the block cache are
            // free memory all the same.
            if self.drop_block_cache() {
                return attempt().map(Got::Alloc);
            }
            return Err(err);
        }
        let bits = memalloc::thread_bits();
        if r.memalloc || bits & memalloc::IN_RECLAIM != 0 {
            // Memalloc callers and reclaimers never direct-reclaim.
            if bits & memalloc::IN_RECURSIVE != 0 {
                return Err(err);
            }
            self.recursive_round(order);
            return attempt().map(Got::Alloc);
        }
        match self.direct_reclaim(order, r.tier, attempt, flush_own) {
            Ok(got) => return Ok(got),
            Err(e) if !matches!(e, AllocError::Watermark | AllocError::Fragmented) => {
                return Err(e)
            }
            Err(_) => {}
        }
        self.out_of_memory(attempt).map(Got::Alloc)
    }

    pub(crate) fn direct_reclaim<T>(
        &self,
        order: usize,
        tier: crate::arena::watermark::Tier,
        attempt: &mut dyn FnMut() -> Result<T, AllocError>,
        flush_own: &mut dyn FnMut(),
    ) -> Result<Got<T>, AllocError> {
        self.throttle();
        if !self.enter_direct() {
            // Enough reclaimers are at work: let them, then retry once.
            return attempt().map(Got::Alloc);
        }
        let floor = self.arena.marks.mark(tier);
        // SAFETY: under the heap lock.
        let slot = self.with_lock(|| unsafe { self.arena.capture.register(order, floor) });
        let mut no_progress = 0;
        let mut priority = DEF_PRIORITY;
        let mut result = Err(AllocError::Watermark);
        let mut reclaimable;
        // The last poll of the slot found a block (only the broken twin
        // `CaptureTrustsPoll` acts on it; the slot is always taken under
        // the lock at unregister, whatever the polls said).
        let mut polled = false;
        while no_progress < MAX_NO_PROGRESS {
            self.reclaim.c.direct_runs.fetch_add(1, Ordering::Relaxed);
            let before = self.arena.free_pages();
            {
                // Reclaim code may allocate from the reserve and must not
                // recurse into reclaim.
                let _g = memalloc::enter_bits(AllocFlags::MEMALLOC.0 | memalloc::IN_RECLAIM);
                flush_own();
                reclaimable = self.reclaim_round(order, true, priority).1;
            }
            if let Some(slot) = slot {
                // SAFETY: under the heap lock; we registered `slot`.
                polled = self.with_lock(|| unsafe { self.arena.capture.captured(slot) });
                if polled {
                    break; // taken at unregister below
                }
            }
            if let Ok(v) = attempt() {
                result = Ok(Got::Alloc(v));
                break;
            }
            let after = self.arena.free_pages();
            if after > before {
                self.reclaim
                    .c
                    .reclaimed_pages
                    .fetch_add(after - before, Ordering::Relaxed);
                no_progress = 0;
            } else if reclaimable == 0 && after == before {
                // Nothing left that reclaim could free (the kernel's
                // `should_reclaim_retry`): go to the OOM path now.
                break;
            } else {
                no_progress += 1;
                priority = priority.saturating_sub(1);
            }
        }
        if let Some(slot) = slot {
            // SAFETY: under the heap lock; we registered `slot`.
            let mut got = self.with_lock(|| unsafe { self.arena.capture.unregister(slot) });
            if crate::model::fault_injected!(CaptureTrustsPoll) && !polled {
                got = None; // the broken twin: "nothing was captured"
            }
            match got {
                Some(idx) => {
                    let pages = 1usize << self.arena.desc(idx).order();
                    self.reclaim.c.capture_hits.fetch_add(1, Ordering::Relaxed);
                    self.reclaim
                        .c
                        .captured_pages
                        .fetch_add(pages, Ordering::Relaxed);
                    if let Ok(Got::Alloc(v)) = result {
                        // Raced: the retry succeeded too. Give the block back.
                        // SAFETY: under the heap lock; the captured block is ours.
                        self.with_lock(|| unsafe {
                            self.arena.free(idx, self.arena.desc(idx).order())
                        });
                        result = Ok(Got::Alloc(v));
                    } else {
                        result = Ok(Got::Captured(idx));
                    }
                }
                None => {
                    self.reclaim
                        .c
                        .capture_misses
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.leave_direct();
        result
    }

    /// Waits (bounded) for the background reclaimer while free pages are
    /// under half of `min` (the kernel's `throttle_direct_reclaim`).
    fn throttle(&self) {
        let k = &self.reclaim.kswapd;
        for _ in 0..10 {
            if !k.running.load(Ordering::Relaxed)
                || self.arena.free_pages() >= self.arena.marks.min / 2
            {
                return;
            }
            let seen = k.progress.load(Ordering::Acquire);
            k.wake();
            wait_on(&k.progress, seen, 10);
        }
    }

    fn enter_direct(&self) -> bool {
        for _ in 0..10 {
            let n = self.reclaim.direct.load(Ordering::Relaxed);
            if n < MAX_DIRECT_RECLAIMERS {
                if self
                    .reclaim
                    .direct
                    .compare_exchange(n, n + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            wait_on(&self.reclaim.direct, n, 10);
        }
        false
    }

    fn leave_direct(&self) {
        self.reclaim.direct.fetch_sub(1, Ordering::Release);
        wake_all(&self.reclaim.direct);
    }

    /// One reclaim round: ask every cache to drain, call the shrinkers.
    /// Returns the objects the shrinkers reported freed, and how many they
    /// counted as freeable before.
    pub(crate) fn reclaim_round(
        &self,
        order: usize,
        may_allocate: bool,
        priority: u32,
    ) -> (usize, usize) {
        self.reclaim.drain_gen.fetch_add(1, Ordering::Release);
        self.drop_block_cache();
        let unmapped = self.drop_huge_cache();
        self.reclaim
            .c
            .purged_bytes
            .fetch_add(unmapped, Ordering::Relaxed);
        let mut list: [Option<ShrinkerRef>; MAX_SHRINKERS] = [None; MAX_SHRINKERS];
        let Some(n) = self.reclaim.shrinkers.snapshot(&mut list) else {
            // Registration holds the lock: say there may be more to find.
            return (0, 1);
        };
        let mut freed = 0;
        let mut reclaimable = 0;
        for s in list.iter().take(n).flatten() {
            let count = s.count();
            reclaimable += count;
            if count == 0 {
                continue;
            }
            let nr = (count >> priority).max(count.min(SCAN_BATCH));
            self.reclaim
                .c
                .shrinker_calls
                .fetch_add(1, Ordering::Relaxed);
            if let ShrinkResult::Freed(k) = s.scan(&ShrinkControl {
                nr_to_scan: nr,
                order,
                may_allocate,
            }) {
                freed += k;
            }
        }
        self.reclaim.shrinkers.done();
        self.reclaim
            .c
            .shrinker_freed
            .fetch_add(freed, Ordering::Relaxed);
        (freed, reclaimable)
    }

    /// Lameter's recursive reclaim: one round that may not allocate, run
    /// with nomemalloc so nothing inside can nest again.
    fn recursive_round(&self, order: usize) {
        self.reclaim
            .c
            .recursive_rounds
            .fetch_add(1, Ordering::Relaxed);
        if diag::warn_allowed(Warn::ReserveDepleted) {
            let mut m = MsgBuf::new();
            m.str("lifeboat: warning: memory reserves depleted (free ")
                .dec(self.arena.free_pages())
                .str(" pages); running allocation-free reclaim\n");
            m.emit();
        }
        let _g = memalloc::enter_bits(
            AllocFlags::NOMEMALLOC.0 | memalloc::IN_RECLAIM | memalloc::IN_RECURSIVE,
        );
        self.reclaim_round(order, false, 0);
    }

    /// The OOM path: the handler (one caller at a time), one retry, a report.
    fn out_of_memory<T>(
        &self,
        attempt: &mut dyn FnMut() -> Result<T, AllocError>,
    ) -> Result<T, AllocError> {
        if let Some(h) = self.reclaim.oom_handler() {
            // Not a lock: the handler runs application code that frees
            // through lifeboat, and must not look like a re-entrant call
            // made while a lifeboat lock is held.
            let busy = &self.reclaim.oom_busy;
            if busy
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.reclaim.c.oom_events.fetch_add(1, Ordering::Relaxed);
                let _g = memalloc::enter_bits(AllocFlags::MEMALLOC.0 | memalloc::IN_RECLAIM);
                let st = self.stats();
                h(&st);
                busy.store(0, Ordering::Release);
                wake_all(busy);
            } else {
                // Another thread runs the handler: wait for it to finish.
                while busy.load(Ordering::Acquire) == 1 {
                    wait_on(busy, 1, 100);
                }
            }
        } else {
            self.reclaim.c.oom_events.fetch_add(1, Ordering::Relaxed);
        }
        let res = attempt();
        if res.is_err() && diag::warn_allowed(Warn::OomReport) {
            self.oom_report();
        }
        res
    }

    /// Prints an OOM report (like the kernel's): watermarks, free blocks per
    /// order, per-tier counts, the top size classes. No allocation.
    fn oom_report(&self) {
        let st = self.stats();
        let mut m = MsgBuf::new();
        m.str("lifeboat: out of memory: free ")
            .dec(st.free_pages)
            .str(" of ")
            .dec(st.budget_pages)
            .str(" pages; min ")
            .dec(st.min_pages)
            .str(" low ")
            .dec(st.low_pages)
            .str(" high ")
            .dec(st.high_pages)
            .str("\nlifeboat:   free blocks per order:");
        for n in st.free_blocks {
            m.str(" ").dec(n);
        }
        m.str("\nlifeboat:   refused normal ")
            .dec(st.refusals.normal)
            .str(" high ")
            .dec(st.refusals.high)
            .str(" atomic ")
            .dec(st.refusals.atomic)
            .str(" oom-victim ")
            .dec(st.refusals.oom_victim)
            .str(" memalloc ")
            .dec(st.refusals.memalloc)
            .str("; reserve pages ")
            .dec(st.reserve_pages)
            .str("; slabs ")
            .dec(st.slab_pages)
            .str(" pages, large ")
            .dec(st.large_pages)
            .str(" pages, huge ")
            .dec(st.huge_bytes >> PAGE_SHIFT)
            .str(" pages\nlifeboat:   top classes (size x live):");
        let mut shown = [usize::MAX; 5];
        for slot in 0..shown.len() {
            let best = (0..st.classes.len())
                .filter(|c| !shown.contains(c))
                .max_by_key(|&c| st.classes[c].size * st.classes[c].live_objects);
            if let Some(c) = best {
                if st.classes[c].live_objects == 0 {
                    break;
                }
                shown[slot] = c;
                m.str(" ")
                    .dec(st.classes[c].size)
                    .str("x")
                    .dec(st.classes[c].live_objects);
            }
        }
        m.str("\n");
        m.emit();
    }

    /// Returns free blocks whose pages are not known to be zero to the OS
    /// (`MADV_DONTNEED`), in batches, without holding the heap lock across
    /// the system calls. Blocks below `min_order` are left alone. Returns
    /// the bytes purged.
    pub(crate) fn purge(&self, min_order: usize) -> usize {
        self.drop_block_cache();
        let mut total = self.drop_huge_cache();
        let mut batch = [(0u32, 0u8); 32];
        loop {
            // SAFETY: under the heap lock.
            let n = self.with_lock(|| unsafe { self.arena.take_for_purge(min_order, &mut batch) });
            if n == 0 {
                break;
            }
            for &(idx, order) in &batch[..n] {
                let bytes = 1usize << (order as usize + PAGE_SHIFT);
                // SAFETY: the block is free and off the lists (PURGING), so
                // nothing reads or writes it while it is purged.
                unsafe { os::purge(self.arena.page_addr(idx as usize), bytes) };
                total += bytes;
            }
            self.with_lock(|| {
                for &(idx, order) in &batch[..n] {
                    // SAFETY: under the heap lock; taken by take_for_purge.
                    unsafe { self.arena.purged(idx as usize, order as usize) };
                }
            });
        }
        self.reclaim
            .c
            .purged_bytes
            .fetch_add(total, Ordering::Relaxed);
        total
    }

    /// The background reclaimer's loop; returns when asked to stop.
    pub(crate) fn kswapd_loop(&self, purge_ms: u32) {
        let k = &self.reclaim.kswapd;
        let mut last_purge = diag::monotonic_millis();
        while !k.stop.load(Ordering::Acquire) {
            let (seen, work) = self.kswapd_check();
            if work {
                self.balance();
            }
            let now = diag::monotonic_millis();
            if now.saturating_sub(last_purge) >= purge_ms as u64 {
                self.purge(self.background_purge_order());
                last_purge = now;
            }
            let wait = (purge_ms as u64)
                .saturating_sub(now.saturating_sub(last_purge))
                .max(1);
            k.sleep(seen, wait);
        }
    }

    /// The smallest free block the background reclaimer's periodic purge
    /// returns to the OS. Small blocks stay: they are reused soonest. On
    /// huge pages, only whole huge pages go (a free block of that order is
    /// one aligned huge page or more, the arena being `MAX_BLOCK`-aligned):
    /// purging part of one would split it into 4 KiB pages, and the
    /// kernel's `khugepaged` may collapse it again later, filling the
    /// purged pages back in. `purge()` returns every free block.
    fn background_purge_order(&self) -> usize {
        if self.config.huge_pages {
            os::HUGE_PAGE_ORDER
        } else {
            4
        }
    }

    /// The reclaimer's decide-to-sleep step: the wake-up sequence it will
    /// sleep on, read *before* the free count (see `kswapd`), and whether
    /// free pages are below `low` (work to do). An allocation that crosses
    /// `low` after the read bumps the sequence, so the sleep on `seen`
    /// returns at once.
    pub(crate) fn kswapd_check(&self) -> (u32, bool) {
        let seen = self.reclaim.kswapd.seq.load(Ordering::Acquire);
        (seen, self.arena.free_pages() < self.arena.marks.low)
    }

    /// Reclaims until free pages reach `high`, or rounds stop helping.
    fn balance(&self) {
        let _g = memalloc::enter_bits(AllocFlags::MEMALLOC.0 | memalloc::IN_RECLAIM);
        let mut idle = 0;
        let mut priority = DEF_PRIORITY;
        while self.arena.free_pages() < self.arena.marks.high && idle < 3 {
            self.reclaim
                .c
                .background_runs
                .fetch_add(1, Ordering::Relaxed);
            let before = self.arena.free_pages();
            self.reclaim_round(0, true, priority);
            let after = self.arena.free_pages();
            if after > before {
                self.reclaim
                    .c
                    .reclaimed_pages
                    .fetch_add(after - before, Ordering::Relaxed);
                self.reclaim.kswapd.note_progress();
                idle = 0;
            } else {
                idle += 1;
                priority = priority.saturating_sub(4);
            }
        }
    }

    /// Turns a captured block into a large allocation of this heap.
    pub(crate) fn adopt_captured(&self, idx: usize) -> *mut u8 {
        let d = self.arena.desc(idx);
        d.back.store(0, Ordering::Relaxed);
        d.owner.store(0, Ordering::Relaxed);
        d.flags.fetch_and(!FLAG_RESERVE, Ordering::Relaxed);
        d.kind.store(KIND_LARGE, Ordering::Release);
        self.arena.page_addr(idx)
    }
}
