//! Statistics: counters kept by a heap, and [`Stats`], a snapshot that is
//! built without allocating and prints as a table (like `/proc/buddyinfo`,
//! `/proc/slabinfo` and `/proc/vmstat` in one).

use crate::arena::buddy::ORDERS;
use crate::arena::watermark::Tier;
use crate::slab::class::NUM_CLASSES;
use crate::sync::{AtomicUsize, Ordering};
use core::fmt;

/// Event counters of a heap (relaxed atomics, off the fast path).
pub(crate) struct Counters {
    pub(crate) huge_bytes: AtomicUsize,
    /// Objects and blocks served from reserve memory.
    pub(crate) reserve_allocs: AtomicUsize,
    pub(crate) reserve_waits: AtomicUsize,
    pub(crate) reserve_timeouts: AtomicUsize,
    grants: [AtomicUsize; 5],
    refusals: [AtomicUsize; 5],
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            huge_bytes: AtomicUsize::new(0),
            reserve_allocs: AtomicUsize::new(0),
            reserve_waits: AtomicUsize::new(0),
            reserve_timeouts: AtomicUsize::new(0),
            grants: core::array::from_fn(|_| AtomicUsize::new(0)),
            refusals: core::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    pub(crate) fn refuse(&self, tier: Tier) {
        self.refusals[tier_index(tier)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a page-level grant (a slab carved, a block or mapping made).
    pub(crate) fn grant(&self, tier: Tier) {
        self.grants[tier_index(tier)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn grants(&self) -> TierCounts {
        Self::per_tier(&self.grants)
    }

    pub(crate) fn refusals(&self) -> TierCounts {
        Self::per_tier(&self.refusals)
    }

    fn per_tier(a: &[AtomicUsize; 5]) -> TierCounts {
        let r = |t| a[tier_index(t)].load(Ordering::Relaxed);
        TierCounts {
            normal: r(Tier::Normal),
            high: r(Tier::High),
            oom_victim: r(Tier::OomVictim),
            atomic: r(Tier::Atomic),
            memalloc: r(Tier::Memalloc),
        }
    }
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Normal => 0,
        Tier::High => 1,
        Tier::OomVictim => 2,
        Tier::Atomic => 3,
        Tier::Memalloc => 4,
    }
}

/// A count per priority tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounts {
    /// Ordinary requests.
    pub normal: usize,
    /// `HIGH` requests.
    pub high: usize,
    /// Requests of OOM-victim threads.
    pub oom_victim: usize,
    /// `ATOMIC` requests.
    pub atomic: usize,
    /// Requests with reserve access.
    pub memalloc: usize,
}

/// One size class in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size of the class, bytes.
    pub size: usize,
    /// Slabs of the class (owned, detached or listed).
    pub slabs: usize,
    /// Objects handed out and not freed (remote frees not yet collected
    /// count as freed; objects a thread holds, on its foreign list for its
    /// own next allocations or in its remote batch, count as live).
    pub live_objects: usize,
}

/// A snapshot of a heap. Built without allocating; `Display` prints a table.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// The budget, in 4 KiB pages.
    pub budget_pages: usize,
    /// Pages of the budget not handed out (exact at the snapshot).
    pub free_pages: usize,
    /// The `min` watermark, pages.
    pub min_pages: usize,
    /// The `low` watermark, pages.
    pub low_pages: usize,
    /// The `high` watermark, pages.
    pub high_pages: usize,
    /// Free buddy blocks per order (like `/proc/buddyinfo`). Pages never
    /// touched yet are not in blocks and not counted here.
    pub free_blocks: [usize; ORDERS],
    /// Per size class (like `/proc/slabinfo`).
    pub classes: [ClassStats; NUM_CLASSES],
    /// Pages held by slabs.
    pub slab_pages: usize,
    /// Pages held by large (page-granular) allocations, including freed
    /// blocks parked for reuse and the room held above buffers that
    /// `realloc` is growing (both given back by reclaim and purge).
    pub large_pages: usize,
    /// Reserve-backed slabs alive.
    pub reserve_slabs: usize,
    /// Pages in use that were handed out from the reserve (below the
    /// caller's tier mark, by the memalloc right).
    pub reserve_pages: usize,
    /// Allocations served from reserve memory (objects of reserve-backed
    /// slabs, and blocks).
    pub reserve_allocs: usize,
    /// Threads inside the reserve now (when `max_reserve_users` is set).
    pub reserve_users: usize,
    /// Times a thread had to wait for a place in the reserve.
    pub reserve_waits: usize,
    /// Waits for a place in the reserve that timed out.
    pub reserve_timeouts: usize,
    /// Page-level grants (slabs carved, blocks taken, mappings made) per
    /// tier; reserve grants count under `memalloc`.
    pub grants: TierCounts,
    /// Refused allocations per tier (memalloc callers count under `memalloc`).
    pub refusals: TierCounts,
    /// Acquisitions of the heap lock (slab claims and carves, settling
    /// detached slabs, large blocks, statistics), and those that found it
    /// taken: a measure of how often threads meet outside their caches.
    pub lock_acquisitions: usize,
    /// See [`Stats::lock_acquisitions`].
    pub lock_contended: usize,
    /// Arena bytes ever touched plus direct mappings.
    pub mapped_bytes: usize,
    /// Resident bytes of the arena (by `mincore`) plus direct mappings.
    pub resident_bytes: usize,
    /// Bytes in direct mappings (requests above 4 MiB).
    pub huge_bytes: usize,
    /// Bytes of freed direct mappings kept mapped for reuse (not charged
    /// to the budget; dropped by reclaim and purge).
    pub huge_cached_bytes: usize,
    /// Reclaim, capture and OOM events.
    pub reclaim: ReclaimStats,
}

/// Reclaim, capture and OOM events of a heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Direct reclaim rounds run by allocating threads.
    pub direct_runs: usize,
    /// Rounds run by the background reclaimer.
    pub background_runs: usize,
    /// Free pages gained across reclaim rounds.
    pub reclaimed_pages: usize,
    /// Calls to shrinkers' `scan`.
    pub shrinker_calls: usize,
    /// Objects the shrinkers reported freed.
    pub shrinker_freed: usize,
    /// Allocation-free rounds run because even the reserve was empty.
    pub recursive_rounds: usize,
    /// Large requests served by a captured block.
    pub capture_hits: usize,
    /// Large requests that registered for capture and got nothing.
    pub capture_misses: usize,
    /// Pages handed over by capture.
    pub captured_pages: usize,
    /// Times the OOM path ran.
    pub oom_events: usize,
    /// Bytes returned to the OS with `MADV_DONTNEED`.
    pub purged_bytes: usize,
}

impl Stats {
    pub(crate) fn empty() -> Self {
        Self {
            budget_pages: 0,
            free_pages: 0,
            min_pages: 0,
            low_pages: 0,
            high_pages: 0,
            free_blocks: [0; ORDERS],
            classes: [ClassStats::default(); NUM_CLASSES],
            slab_pages: 0,
            large_pages: 0,
            reserve_slabs: 0,
            reserve_pages: 0,
            reserve_allocs: 0,
            reserve_users: 0,
            reserve_waits: 0,
            reserve_timeouts: 0,
            grants: TierCounts::default(),
            refusals: TierCounts::default(),
            lock_acquisitions: 0,
            lock_contended: 0,
            mapped_bytes: 0,
            resident_bytes: 0,
            huge_bytes: 0,
            huge_cached_bytes: 0,
            reclaim: ReclaimStats::default(),
        }
    }

    /// The size class whose objects are `size` bytes, if any.
    pub fn class(&self, size: usize) -> Option<&ClassStats> {
        self.classes.iter().find(|c| c.size == size)
    }
}

struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 10 << 30 {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 10 << 20 {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 10 << 10 {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} B")
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pg = |p: usize| Bytes(p << 12);
        writeln!(
            f,
            "budget   {:>10} pages  ({})",
            self.budget_pages,
            pg(self.budget_pages)
        )?;
        writeln!(
            f,
            "free     {:>10} pages  ({})",
            self.free_pages,
            pg(self.free_pages)
        )?;
        writeln!(
            f,
            "min      {:>10} pages  ({})",
            self.min_pages,
            pg(self.min_pages)
        )?;
        writeln!(
            f,
            "low      {:>10} pages  ({})",
            self.low_pages,
            pg(self.low_pages)
        )?;
        writeln!(
            f,
            "high     {:>10} pages  ({})",
            self.high_pages,
            pg(self.high_pages)
        )?;
        writeln!(
            f,
            "slabs    {:>10} pages   large {} pages   huge {}",
            self.slab_pages,
            self.large_pages,
            Bytes(self.huge_bytes)
        )?;
        writeln!(
            f,
            "mapped   {:>10}   resident {}",
            Bytes(self.mapped_bytes).padded(),
            Bytes(self.resident_bytes)
        )?;
        writeln!(
            f,
            "reserve  {} pages in use, {} slabs, {} allocations; {} users, {} waits, {} timeouts",
            self.reserve_pages,
            self.reserve_slabs,
            self.reserve_allocs,
            self.reserve_users,
            self.reserve_waits,
            self.reserve_timeouts
        )?;
        writeln!(
            f,
            "lock     {} acquisitions, {} contended",
            self.lock_acquisitions, self.lock_contended
        )?;
        writeln!(
            f,
            "tier        normal     high oom-victim   atomic memalloc"
        )?;
        for (name, t) in [("granted", &self.grants), ("refused", &self.refusals)] {
            writeln!(
                f,
                "{name:<8} {:>9} {:>8} {:>10} {:>8} {:>8}",
                t.normal, t.high, t.oom_victim, t.atomic, t.memalloc
            )?;
        }
        let r = &self.reclaim;
        writeln!(
            f,
            "reclaim  direct {} background {} reclaimed {} pages; shrinkers {} calls {} freed; recursive {}",
            r.direct_runs, r.background_runs, r.reclaimed_pages, r.shrinker_calls, r.shrinker_freed, r.recursive_rounds
        )?;
        writeln!(
            f,
            "capture  {} hits {} misses {} pages; oom {}; purged {}",
            r.capture_hits,
            r.capture_misses,
            r.captured_pages,
            r.oom_events,
            Bytes(r.purged_bytes)
        )?;
        writeln!(f, "free blocks per order (buddyinfo):")?;
        for (o, n) in self.free_blocks.iter().enumerate() {
            writeln!(f, "  order {o:>2} ({:>8}): {n}", Bytes(4096 << o).padded())?;
        }
        writeln!(f, "size classes in use (slabinfo):")?;
        writeln!(f, "  {:>8} {:>8} {:>12}", "size", "slabs", "live objs")?;
        for c in self.classes.iter().filter(|c| c.slabs > 0) {
            writeln!(f, "  {:>8} {:>8} {:>12}", c.size, c.slabs, c.live_objects)?;
        }
        Ok(())
    }
}

impl Bytes {
    /// Right-aligned in 8 columns without allocating a String.
    fn padded(self) -> Padded {
        Padded(self)
    }
}

struct Padded(Bytes);

impl fmt::Display for Padded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Count the width first with a counting writer.
        struct Count(usize);
        impl fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let mut c = Count(0);
        fmt::write(&mut c, format_args!("{}", self.0))?;
        for _ in c.0..8 {
            f.write_str(" ")?;
        }
        write!(f, "{}", self.0)
    }
}
