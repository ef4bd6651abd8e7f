//! [`Config`]: the budget and the watermark override, built in `const` context.

/// How a heap is sized. Built with `const fn`s so a configured global
/// allocator is still a `static`:
///
/// ```
/// static GLOBAL: lifeboat::Lifeboat =
///     lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(512 << 20));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) budget: usize,
    pub(crate) min_free: usize,
    pub(crate) atomic_reserve: usize,
    pub(crate) max_reserve_users: u32,
    pub(crate) reserve_wait_ms: u32,
    pub(crate) capture: bool,
    pub(crate) background_reclaim: bool,
    pub(crate) purge_interval_ms: u32,
    pub(crate) huge_pages: bool,
}

impl Config {
    /// The defaults: budget from `LIFEBOAT_BUDGET`, else the cgroup v2
    /// `memory.max`, else physical memory (for private heaps there is no
    /// default: [`Heap::new`](crate::Heap::new) needs a budget); `min` from
    /// the kernel's formula.
    pub const fn new() -> Self {
        Self {
            budget: 0,
            min_free: 0,
            atomic_reserve: 0,
            max_reserve_users: 0,
            reserve_wait_ms: 100,
            capture: true,
            background_reclaim: false,
            purge_interval_ms: 1000,
            huge_pages: true,
        }
    }

    /// The budget in bytes: the most memory the heap hands out, counted in
    /// whole 4 KiB pages (rounded down).
    pub const fn budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Overrides the `min` watermark (bytes). `low` and `high` follow from it
    /// by the kernel's gaps.
    pub const fn min_free(mut self, bytes: usize) -> Self {
        self.min_free = bytes;
        self
    }

    /// Keeps the last `bytes` of the reserve (at most `min`) for `ATOMIC`
    /// requests: memalloc threads cannot take them, so reclaim cannot starve
    /// callers that must not block. Default 0 (no separate share).
    pub const fn atomic_reserve(mut self, bytes: usize) -> Self {
        self.atomic_reserve = bytes;
        self
    }

    /// At most `n` threads inside the reserve at once (0, the default: no
    /// bound). A thread keeps its place until its outermost memalloc scope
    /// ends; others wait up to [`Config::reserve_wait_ms`] and then fail.
    pub const fn max_reserve_users(mut self, n: u32) -> Self {
        self.max_reserve_users = n;
        self
    }

    /// Capture of freed blocks for large requests in direct reclaim
    /// (default on); off lets its effect be measured.
    pub const fn capture(mut self, on: bool) -> Self {
        self.capture = on;
        self
    }

    /// Starts a background reclaimer thread with the heap (private heaps;
    /// for the process heap call [`start_reclaimer`](crate::start_reclaimer),
    /// since no thread may be spawned from inside `malloc`). Default off.
    pub const fn background_reclaim(mut self, on: bool) -> Self {
        self.background_reclaim = on;
        self
    }

    /// How often the background reclaimer returns free blocks to the OS
    /// (default 1000 ms): those of 64 KiB and up, or of 2 MiB and up with
    /// [`huge_pages`](Config::huge_pages).
    pub const fn purge_interval_ms(mut self, ms: u32) -> Self {
        self.purge_interval_ms = ms;
        self
    }

    /// Asks the kernel for transparent huge pages (`MADV_HUGEPAGE`) on the
    /// arena (slabs and page blocks) and on direct mappings, the requests
    /// above 4 MiB (default on). Their touched 2 MiB regions are then
    /// backed by huge pages where the kernel has them: far fewer TLB misses
    /// when frees and allocations land all over the heap (a thread freeing
    /// what others allocated), and fewer page faults. What the budget
    /// counts does not change: it charges pages as the arena hands them
    /// out, and a direct mapping's length.
    ///
    /// RSS then follows use in 2 MiB regions rather than 4 KiB pages: a
    /// region is backed whole once any byte of it is touched (never past
    /// the arena or the mapping, so never past the budget), and a program
    /// that touches little memory has up to 2 MiB more of it resident.
    /// The background reclaimer's periodic purge then returns only free
    /// blocks of whole huge pages (2 MiB and up, where it otherwise
    /// returns 64 KiB and up). An explicit purge (`purge()`,
    /// [`Heap::purge`](crate::Heap::purge)) still returns free pages
    /// inside a huge page (the kernel splits it), but the kernel's
    /// `khugepaged` may later collapse a region that still holds live
    /// pages back into a huge page, making purged pages of it resident
    /// (zero) again. Faults in advised regions may also compact memory to
    /// find a huge page, under the kernel's `defrag` setting. A program
    /// that needs page-exact RSS turns this off. Without THP in the kernel
    /// (`/sys/kernel/mm/transparent_hugepage/enabled` at `never`) this does
    /// nothing.
    pub const fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// How long a thread waits for a place in the reserve (default 100 ms).
    pub const fn reserve_wait_ms(mut self, ms: u32) -> Self {
        self.reserve_wait_ms = ms;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
