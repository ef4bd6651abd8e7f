//! [`AllocFlags`]: the tier and modifiers of one explicit allocation.

use core::ops::{BitOr, BitOrAssign};

/// Tier and modifiers of an explicit allocation ([`Heap::alloc`](crate::Heap::alloc)),
/// the user-space `gfp_t`.
///
/// | flag | meaning |
/// |---|---|
/// | `NORMAL` | refused below `min` |
/// | `HIGH` | may use 50 % of `min` |
/// | `ATOMIC` | may use 62.5 % of `min`; never blocks, never reclaims |
/// | `MEMALLOC` | may use all of `min` (the reserve) |
/// | `NOMEMALLOC` | never touch the reserve; wins over `MEMALLOC` and thread scopes |
/// | `NOWARN` | no warning on failure |
/// | `NORETRY` | fail at once instead of retrying |
///
/// The thread's scopes ([`memalloc_scope`](crate::memalloc_scope) and friends)
/// are added to these flags on every allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllocFlags(pub(crate) u32);

impl AllocFlags {
    /// An ordinary allocation.
    pub const NORMAL: Self = Self(0);
    /// High priority: may dip into half of the `min` reserve.
    pub const HIGH: Self = Self(1 << 0);
    /// Cannot sleep: may dip into 62.5 % of `min`; never reclaims or waits.
    pub const ATOMIC: Self = Self(1 << 1);
    /// Reserve access, as in a memalloc scope.
    pub const MEMALLOC: Self = Self(1 << 2);
    /// Never use the reserve; wins over `MEMALLOC`.
    pub const NOMEMALLOC: Self = Self(1 << 3);
    /// Do not warn when the allocation fails.
    pub const NOWARN: Self = Self(1 << 4);
    /// Do not retry after a failed attempt.
    pub const NORETRY: Self = Self(1 << 5);

    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOr for AllocFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for AllocFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}
