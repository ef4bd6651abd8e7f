//! Buddy index arithmetic (pure functions).
//!
//! Blocks of order `n` are `2^n` pages, start at page indices that are
//! multiples of `2^n` (the arena base is aligned to the largest block), and
//! a block's buddy is the block whose index differs in bit `n` only.

/// Largest buddy order: 2^10 pages = 4 MiB blocks.
pub const MAX_ORDER: usize = 10;
/// Number of free lists (orders 0..=MAX_ORDER).
pub(crate) const ORDERS: usize = MAX_ORDER + 1;

/// Index of the buddy of block `idx` at `order`.
#[inline]
pub(crate) const fn buddy_of(idx: usize, order: usize) -> usize {
    idx ^ (1 << order)
}

/// Smallest order whose block holds `pages` pages (`pages >= 1`).
#[inline]
pub(crate) const fn order_for_pages(pages: usize) -> usize {
    if pages <= 1 {
        0
    } else {
        (usize::BITS - (pages - 1).leading_zeros()) as usize
    }
}

/// The largest order that can start at `idx` and fits within `limit` pages
/// from it, capped at `MAX_ORDER`: how the untouched tail of the arena is
/// cut into aligned blocks.
pub(crate) const fn largest_fitting_order(idx: usize, limit: usize) -> usize {
    let mut o = MAX_ORDER;
    loop {
        if idx.is_multiple_of(1 << o) && (1 << o) <= limit {
            return o;
        }
        if o == 0 {
            return 0;
        }
        o -= 1;
    }
}

/// The largest order whose block is at most `budget_pages / share` pages
/// (capped at `MAX_ORDER`); `None` when even a page is more. For caches
/// that may hold a block of memory only while it is a small share of the
/// budget.
pub(crate) fn largest_order_within_share(budget_pages: usize, share: usize) -> Option<usize> {
    let pages = budget_pages / share;
    (pages > 0).then(|| (pages.ilog2() as usize).min(MAX_ORDER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buddies_pair_up() {
        assert_eq!(buddy_of(0, 0), 1);
        assert_eq!(buddy_of(1, 0), 0);
        assert_eq!(buddy_of(8, 3), 0);
        assert_eq!(buddy_of(0, 3), 8);
        assert_eq!(buddy_of(1024, 10), 0);
        for o in 0..=MAX_ORDER {
            for i in (0..8192).step_by(1 << o) {
                assert_eq!(buddy_of(buddy_of(i, o), o), i);
                assert_eq!(buddy_of(i, o) % (1 << o), 0);
            }
        }
    }

    #[test]
    fn orders_round_up() {
        assert_eq!(order_for_pages(1), 0);
        assert_eq!(order_for_pages(2), 1);
        assert_eq!(order_for_pages(3), 2);
        assert_eq!(order_for_pages(8), 3);
        assert_eq!(order_for_pages(9), 4);
        assert_eq!(order_for_pages(1024), 10);
    }

    #[test]
    fn tail_is_cut_into_aligned_blocks() {
        assert_eq!(largest_fitting_order(0, 5000), MAX_ORDER);
        assert_eq!(largest_fitting_order(1024, 3), 1);
        assert_eq!(largest_fitting_order(1026, 100), 1);
        assert_eq!(largest_fitting_order(1028, 100), 2);
        assert_eq!(largest_fitting_order(7, 100), 0);
    }
}
