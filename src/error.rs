//! Errors: [`Error`] when a heap cannot be built, [`AllocError`] when an
//! allocation is refused. Neither allocates.

use core::fmt;

/// Why a [`Heap`](crate::Heap) could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The budget is below the smallest workable heap ([`Error::MIN_BUDGET`]).
    BudgetTooSmall,
    /// The budget does not fit the address space.
    BudgetTooLarge,
    /// The OS refused to map the arena.
    MapFailed,
}

impl Error {
    /// The smallest budget a heap accepts: 1 MiB (64 KiB in loom builds,
    /// whose models use a handful of pages).
    pub const MIN_BUDGET: usize = if cfg!(loom) { 64 << 10 } else { 1 << 20 };
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::BudgetTooSmall => "lifeboat: budget is below the 1 MiB minimum",
            Error::BudgetTooLarge => "lifeboat: budget does not fit the address space",
            Error::MapFailed => "lifeboat: the OS refused to map the arena",
        })
    }
}

impl std::error::Error for Error {}

/// Why an allocation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// Granting it would take free pages below the caller's watermark.
    Watermark,
    /// The budget has room, but no free block is large enough (fragmentation).
    Fragmented,
    /// The size or alignment cannot be served (overflow, alignment > 4 MiB
    /// combined with a size beyond the budget, …).
    Layout,
    /// The OS refused a direct mapping.
    MapFailed,
    /// The reserve was needed, but `max_reserve_users` threads were inside
    /// it for longer than the configured wait.
    ReserveBusy,
    /// A [`Mempool`](crate::Mempool) waited for an element and none came back.
    Timeout,
    /// An allocation re-entered lifeboat (from a signal handler) while the
    /// interrupted code held the heap lock, or every shard lock; it fails
    /// instead of waiting for a lock that would never be released.
    Reentered,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocError::Watermark => "lifeboat: refused, free memory is below the watermark",
            AllocError::Fragmented => "lifeboat: refused, no free block is large enough",
            AllocError::Layout => "lifeboat: refused, the layout cannot be served",
            AllocError::MapFailed => "lifeboat: refused, the OS would not map memory",
            AllocError::ReserveBusy => "lifeboat: refused, too many threads inside the reserve",
            AllocError::Timeout => "lifeboat: refused, waited for a pool element and timed out",
            AllocError::Reentered => {
                "lifeboat: refused, re-entered from a signal handler while a lock was held"
            }
        })
    }
}

impl std::error::Error for AllocError {}
