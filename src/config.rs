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
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
