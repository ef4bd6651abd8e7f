//! Watermarks and tiers: who may take the last pages.
//!
//! The figures are the kernel's (`mm/page_alloc.c`):
//!
//! * `min = sqrt(budget_kb * 16)` KiB, clamped to [128 KiB, 256 MiB] (and,
//!   for tiny heaps, to a quarter of the budget);
//! * `gap = max(min / 4, budget * 10 / 10000)`; `low = min + gap`;
//!   `high = low + gap`.
//!
//! A request of `n` pages under tier `t` is granted only if
//! `free - n >= mark(t)`. The share of `min` a tier may dip into:
//! normal 0, `HIGH` 50 %, `ATOMIC` 62.5 %, OOM victim 50 %, memalloc 100 %.
//!
//! With an atomic reserve of `a` pages (Piggin's separation), memalloc may
//! go down to `a` only, and `ATOMIC` requests may use those last `a` pages
//! as well as their own share: reclaimers cannot starve atomic users.
//!
//! [`Watermarks::admit`] is the one place that decides.

/// The three watermarks of a heap, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Below this only privileged tiers allocate.
    pub min: usize,
    /// The fast path requires this much free.
    pub low: usize,
    /// Background reclaim stops here; reserve-backed slabs lose their flag.
    pub high: usize,
    /// Pages at the bottom that memalloc may not take (the atomic reserve).
    pub atomic_reserve: usize,
}

/// How a request was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Free pages stay at or above `low`.
    Fast,
    /// Below `low`, within the tier's own share.
    Slow,
    /// Only the memalloc right let it through: the pages are reserve.
    Reserve,
}

/// Integer square root (floor), for the kernel formula.
pub(crate) const fn isqrt(n: usize) -> usize {
    if n < 2 {
        return n;
    }
    // Newton's method from a power of two above the root.
    let mut x = 1usize << ((usize::BITS - n.leading_zeros()).div_ceil(2));
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

impl Watermarks {
    /// Watermarks for a budget of `budget_pages` 4 KiB pages; `min_free` (bytes)
    /// overrides `min` when non-zero.
    pub const fn for_budget(budget_pages: usize, min_free: usize) -> Self {
        Self::with_atomic_reserve(budget_pages, min_free, 0)
    }

    /// As [`Watermarks::for_budget`], keeping `atomic_reserve` pages (at
    /// most `min`) away from memalloc.
    pub const fn with_atomic_reserve(
        budget_pages: usize,
        min_free: usize,
        atomic_reserve: usize,
    ) -> Self {
        let min_kb = if min_free != 0 {
            min_free / 1024
        } else {
            let v = isqrt(budget_pages.saturating_mul(4).saturating_mul(16));
            if v < 128 {
                128
            } else if v > 256 * 1024 {
                256 * 1024
            } else {
                v
            }
        };
        let mut min = min_kb / 4;
        if min > budget_pages / 4 {
            min = budget_pages / 4;
        }
        let mut gap = min / 4;
        let scaled = budget_pages * 10 / 10000;
        if scaled > gap {
            gap = scaled;
        }
        Self {
            min,
            low: min + gap,
            high: min + 2 * gap,
            atomic_reserve: if atomic_reserve > min {
                min
            } else {
                atomic_reserve
            },
        }
    }

    /// The mark a request of `tier` must stay at or above.
    pub const fn mark(&self, tier: Tier) -> usize {
        match tier {
            Tier::Normal => self.min,
            Tier::High => self.min - self.min / 2,
            Tier::Atomic if self.atomic_reserve > 0 => 0,
            Tier::Atomic => self.min - self.min / 2 - self.min / 8,
            Tier::OomVictim => self.min - self.min / 2,
            Tier::Memalloc => self.atomic_reserve,
        }
    }

    /// May `pages` be taken from `free` by a request of `tier`, with the
    /// memalloc right or not? The single admission rule of the heap.
    pub(crate) const fn admit(
        &self,
        free: usize,
        pages: usize,
        tier: Tier,
        memalloc: bool,
    ) -> Option<Admit> {
        let Some(left) = free.checked_sub(pages) else {
            return None;
        };
        if left >= self.low {
            Some(Admit::Fast)
        } else if left >= self.mark(tier) {
            Some(Admit::Slow)
        } else if memalloc && left >= self.mark(Tier::Memalloc) {
            Some(Admit::Reserve)
        } else {
            None
        }
    }
}

/// Priority tiers, from least to most privileged in the share of `min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Ordinary requests: nothing below `min`.
    Normal,
    /// `HIGH`: half of `min`.
    High,
    /// OOM victim: half of `min`.
    OomVictim,
    /// `ATOMIC`: 62.5 % of `min`.
    Atomic,
    /// memalloc: all of it.
    Memalloc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_floor_sqrt() {
        for n in 0..10_000usize {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "n={n} r={r}");
        }
        assert_eq!(isqrt(1 << 40), 1 << 20);
    }

    #[test]
    fn kernel_formula_for_one_gib() {
        // 1 GiB = 1048576 KiB; sqrt(1048576 * 16) = 4096 KiB = 1024 pages.
        let w = Watermarks::for_budget(262_144, 0);
        assert_eq!(w.min, 1024);
        // gap = max(256, 262144 * 10 / 10000 = 262) = 262
        assert_eq!(w.low, 1024 + 262);
        assert_eq!(w.high, 1024 + 2 * 262);
    }

    #[test]
    fn clamps_min_between_128k_and_256m() {
        // 64 GiB: sqrt(64Gi/1Ki*16) = 32768 KiB; 16 TiB would exceed 256 MiB.
        let big = Watermarks::for_budget(1 << 32, 0);
        assert_eq!(big.min, 256 * 1024 / 4);
        // 8 MiB: sqrt(8192 * 16) = 362 KiB -> 90 pages.
        let small = Watermarks::for_budget(2048, 0);
        assert_eq!(small.min, 362 / 4);
        // 1 MiB: sqrt(1024*16) = 128 KiB -> 32 pages, but capped at a quarter.
        let tiny = Watermarks::for_budget(256, 0);
        assert_eq!(tiny.min, 32);
        assert!(tiny.min <= 256 / 4);
    }

    #[test]
    fn min_free_overrides_min() {
        let w = Watermarks::for_budget(4096, 400 * 1024);
        assert_eq!(w.min, 100);
        assert_eq!(w.low, 125);
        assert_eq!(w.high, 150);
    }

    #[test]
    fn admission_to_the_page() {
        let w = Watermarks::for_budget(4096, 64 * 4096); // min 64, low 80
        assert_eq!(w.low, 80);
        assert_eq!(w.admit(81, 1, Tier::Normal, false), Some(Admit::Fast));
        assert_eq!(w.admit(80, 1, Tier::Normal, false), Some(Admit::Slow));
        assert_eq!(w.admit(65, 1, Tier::Normal, false), Some(Admit::Slow));
        assert_eq!(w.admit(64, 1, Tier::Normal, false), None);
        assert_eq!(w.admit(64, 1, Tier::Normal, true), Some(Admit::Reserve));
        assert_eq!(w.admit(33, 1, Tier::High, false), Some(Admit::Slow));
        assert_eq!(w.admit(32, 1, Tier::High, false), None);
        assert_eq!(w.admit(25, 1, Tier::Atomic, false), Some(Admit::Slow));
        assert_eq!(w.admit(24, 1, Tier::Atomic, false), None);
        assert_eq!(w.admit(1, 1, Tier::Normal, true), Some(Admit::Reserve));
        assert_eq!(w.admit(0, 1, Tier::Normal, true), None);
        assert_eq!(w.admit(8, 16, Tier::Normal, true), None);
    }

    #[test]
    fn atomic_reserve_is_kept_from_memalloc() {
        let w = Watermarks::with_atomic_reserve(4096, 64 * 4096, 16);
        assert_eq!(w.admit(17, 1, Tier::Normal, true), Some(Admit::Reserve));
        assert_eq!(w.admit(16, 1, Tier::Normal, true), None);
        assert_eq!(w.admit(16, 1, Tier::Atomic, false), Some(Admit::Slow));
        assert_eq!(w.admit(1, 1, Tier::Atomic, true), Some(Admit::Slow));
        // The share is capped at min.
        assert_eq!(
            Watermarks::with_atomic_reserve(4096, 64 * 4096, 1000).atomic_reserve,
            64
        );
    }

    #[test]
    fn tier_shares_of_min() {
        let w = Watermarks::for_budget(4096, 64 * 4096); // min = 64 pages
        assert_eq!(w.mark(Tier::Normal), 64);
        assert_eq!(w.mark(Tier::High), 32);
        assert_eq!(w.mark(Tier::OomVictim), 32);
        assert_eq!(w.mark(Tier::Atomic), 24); // 62.5 % of 64 = 40 usable
        assert_eq!(w.mark(Tier::Memalloc), 0);
    }
}
