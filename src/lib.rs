//! lifeboat: a memory allocator that keeps memory-freeing code working when
//! memory runs out, with the Linux kernel's reserve machinery in user space.
//!
//! * A **buddy arena** of 4 KiB pages over one reserved virtual range, with
//!   **min/low/high watermarks** over a budget ([`Config`]).
//! * **Slab size classes** (8 B – 32 KiB) with **per-thread caches**.
//! * Thread-local **memalloc** rights ([`memalloc_scope`]) that open the
//!   reserve below `min`, a **nomemalloc** opt-out that wins, and tiers
//!   ([`AllocFlags`]).
//! * Slabs carved from the reserve are **reserve-backed**: their objects
//!   never go to a caller without the right.
//!
//! Install it globally:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();
//! # fn main() {}
//! ```
//!
//! or make a private, budgeted [`Heap`].
//!
//! # Bad input
//!
//! Detected, with a fixed message on stderr and `abort()`:
//! freeing a pointer outside every lifeboat mapping; freeing a pointer
//! inside the arena that is not the start of a live object or block
//! (checked on every path except the owner thread's fast path, which checks
//! only ownership); freeing the object at the head of its slab's free list
//! again, or one of the first objects a thread holds of another's slab (on
//! its foreign list or in its remote batch); a double free that would free
//! more objects than a slab holds; a second free of a large block; a write
//! after free that changes a free object's link word, when an allocation
//! reaches that link (`free list corrupted`). Not detected: a double free
//! of an object deeper in a free list, reads after free, and writes after
//! free past the link word. The `debug` feature adds poison, red zones and
//! an exact double-free check; the README's "Bad input" section lists
//! every message and what each check costs.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod arena;
mod block_cache;
mod config;
mod diag;
mod error;
mod fault;
mod flags;
mod foreign;
#[cfg(not(loom))]
mod global;
mod growth_run;
mod heap;
mod huge_cache;
mod memalloc;
mod mempool;
#[doc(hidden)]
pub mod model;
mod os;
mod reclaim;
mod remote_batch;
mod reserve;
mod slab;
mod stats;
mod sync;
mod target;
mod tcache;
mod throttle;
#[cfg(not(loom))]
mod verify;

pub use arena::buddy::MAX_ORDER;
pub use arena::watermark::{Tier, Watermarks};
pub use config::Config;
pub use error::{AllocError, Error};
pub use flags::AllocFlags;
#[cfg(not(loom))]
pub use global::{
    flush_thread_cache, free_without_layout, is_reserve_backed, owns, purge, register_shrinker,
    set_oom_handler, start_reclaimer, stats, unregister_shrinker, usable_size, Lifeboat,
};
pub use heap::Heap;
pub use memalloc::{mark_oom_victim, memalloc, memalloc_scope, nomemalloc_scope, ScopeGuard};
pub use mempool::{Mempool, MempoolStats, MEMPOOL_DEFAULT_WAIT};
pub use reclaim::shrinker::{RegisterError, ShrinkControl, ShrinkResult, Shrinker, MAX_SHRINKERS};
pub use reclaim::OomHandler;
pub use reserve::Reserve;
pub use slab::class::{MAX_SMALL_SIZE, NUM_CLASSES};
pub use stats::{ClassStats, ReclaimStats, Stats, TierCounts};
#[cfg(not(loom))]
pub use verify::VerifyError;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Size of a page, the unit of the budget.
pub const PAGE_SIZE: usize = os::PAGE_SIZE;
