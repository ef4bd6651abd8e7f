//! Handles on lifeboat's internal structures for the loom models in
//! `loom-tests/` (and white-box tests). **Not part of the public API**: no
//! semver promise covers anything here.
//!
//! A [`Cache`] is a real `ThreadCache` of a private [`Heap`], owned by one
//! model thread, so a model can make slabs owned by different threads and
//! exercise remote frees, detaching and claiming with the shipped code.
//!
//! Under `--cfg loom`, `Fault` and `inject` switch one deliberate fault
//! into a protocol step of the shipped code (the broken twins of the
//! models); the hooks are `fault_ordering!`/`fault_injected!`, which expand
//! to the original ordering or `false` in every other build.

use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::heap::Heap;
use crate::tcache::ThreadCache;
use core::alloc::Layout;
use core::ptr::NonNull;

/// A thread cache of a private heap, used by exactly one thread at a time.
pub struct Cache<'h> {
    heap: &'h Heap,
    // Boxed: the cache's address is its owner id and must not move.
    tc: Box<ThreadCache>,
}

// SAFETY: a Cache is used by one thread at a time (it is moved, never
// shared); the slabs it owns follow the ownership protocol of `slab`.
unsafe impl Send for Cache<'_> {}

impl<'h> Cache<'h> {
    /// An empty cache of `heap`.
    pub fn new(heap: &'h Heap) -> Self {
        let empty: *const _ = &heap.inner().empty[0];
        Self {
            heap,
            tc: Box::new(ThreadCache::new(empty)),
        }
    }

    /// Allocates through this cache.
    pub fn alloc(&mut self, layout: Layout, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let h = self.heap.inner();
        // SAFETY: the cache belongs to this heap and to the caller.
        let (p, _) = unsafe { h.alloc_with(&mut self.tc, layout, flags)? };
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    /// Frees through this cache (locally if it owns the slab, else remotely).
    ///
    /// # Safety
    /// `p` is a live allocation of this cache's heap.
    pub unsafe fn free(&mut self, p: NonNull<u8>) {
        let h = self.heap.inner();
        // SAFETY: forwarded from the caller.
        unsafe { h.free(&mut self.tc, p.as_ptr()) };
    }

    /// Frees `p`, an object of a slab another cache owns, into this
    /// cache's remote batch (`remote_batch.rs`): pushed onto the slab when
    /// a free of another slab of the class ends the chain, or at `flush`.
    /// (The process heap's caches do this for such frees; the policy of
    /// when to batch is left out here.)
    ///
    /// # Safety
    /// `p` is a live small object of this cache's heap, of a slab this
    /// cache does not own.
    pub unsafe fn free_batched(&mut self, p: NonNull<u8>) {
        let h = self.heap.inner();
        let idx = h.arena.page_of(p.as_ptr()).expect("an object of this heap");
        let d = h.arena.desc(idx);
        let s = h
            .arena
            .desc(idx - d.back.load(crate::sync::Ordering::Relaxed) as usize);
        assert!(
            !self.tc.owns(s.owner.load(crate::sync::Ordering::Relaxed)),
            "free_batched takes objects of other caches' slabs"
        );
        // SAFETY: forwarded from the caller; the cache is ours.
        unsafe { h.add_to_batch(&mut self.tc, s, p.as_ptr()) };
    }

    /// Detaches every slab the cache owns (what thread exit does).
    pub fn flush(&mut self) {
        // SAFETY: the cache is ours.
        unsafe { self.tc.flush(self.heap.inner()) };
    }

    /// Thread exit: flushes the cache and returns its memory, which the
    /// model keeps until its end. A dropped cache's memory could be reused
    /// at once for the next cache (loom runs every model thread on one OS
    /// thread), giving it the owner id of a cache that is gone, without the
    /// synchronisation through which a real thread's memory is reused.
    pub fn exit(mut self) -> Retired {
        self.flush();
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, so the box is
        // moved out exactly once.
        Retired(unsafe { core::ptr::read(&this.tc) })
    }
}

/// The memory of a cache that has exited (see [`Cache::exit`]); owns no slab.
pub struct Retired(#[allow(dead_code)] Box<ThreadCache>);

// SAFETY: a retired cache owns nothing and is never used again; it is only
// kept (and eventually freed) to keep its address unique.
unsafe impl Send for Retired {}

impl Drop for Cache<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Free pages of a heap's budget (exact).
pub fn free_pages(heap: &Heap) -> usize {
    heap.inner().arena.free_pages()
}

/// Address of the first page of a heap's arena (its pages are contiguous:
/// `free_pages` counts them, [`crate::PAGE_SIZE`] each).
pub fn arena_base(heap: &Heap) -> usize {
    heap.inner().arena.base as usize
}

/// Pages in a heap's budget.
pub fn budget_pages(heap: &Heap) -> usize {
    heap.inner().budget_pages
}

/// Live reserve-backed slabs of a heap (any state but released).
pub fn reserve_slabs(heap: &Heap) -> usize {
    heap.inner()
        .slabs
        .reserve_slabs
        .load(crate::sync::Ordering::Relaxed)
}

/// Lifts the reserve as an allocation's slow path does when free pages
/// are above `high` (every reserve-backed slab becomes ordinary):
/// `Some(spent slabs lifted)` if it took the lock to lift (some reserve
/// slab lived and free was above `high`), else `None`.
pub fn lift_reserve(heap: &Heap) -> Option<usize> {
    heap.inner().maybe_lift_reserve()
}

/// Whether the object at `p` (a live object of `heap`) is of a detached
/// slab on one of its class's lists (`LISTED`), read under the heap lock.
pub fn slab_listed(heap: &Heap, p: core::ptr::NonNull<u8>) -> bool {
    let h = heap.inner();
    h.with_lock(|| {
        let idx = h.arena.page_of(p.as_ptr()).expect("an object of this heap");
        let d = h.arena.desc(idx);
        let s = h
            .arena
            .desc(idx - d.back.load(crate::sync::Ordering::Relaxed) as usize);
        s.has_flag(crate::arena::desc::FLAG_LISTED)
    })
}

/// The `min` watermark of a heap, in pages.
pub fn min_pages(heap: &Heap) -> usize {
    heap.inner().arena.marks.min
}

/// The `low` watermark of a heap, in pages (below it the background
/// reclaimer is woken).
pub fn low_pages(heap: &Heap) -> usize {
    heap.inner().arena.marks.low
}

/// Pages in the blocks on a heap's free lists (which must equal
/// [`free_pages`] whenever no block is out for purging).
pub fn listed_pages(heap: &Heap) -> usize {
    let h = heap.inner();
    // SAFETY: under the heap lock.
    let blocks = h.with_lock(|| unsafe { h.arena.free_blocks() });
    blocks.iter().enumerate().map(|(o, n)| n << o).sum()
}

/// What [`direct_reclaim`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaimed {
    /// The retried allocation succeeded (from the free lists).
    Allocated(NonNull<u8>),
    /// A free handed its block to the capture slot.
    Captured(NonNull<u8>),
}

/// Runs the real direct reclaim of an unprivileged (`Tier::Normal`) page
/// request of `layout` (a page block: larger than the largest size class,
/// at most 4 MiB; above order 3 it registers for capture) that was just
/// refused; its retries are `Heap::alloc`'s attempt with `flags`.
/// Unlike `Heap::alloc`, it skips the slow path around direct reclaim
/// (the refusal checks, the OOM path).
pub fn direct_reclaim(
    heap: &Heap,
    layout: Layout,
    flags: AllocFlags,
) -> Result<Reclaimed, AllocError> {
    use crate::reclaim::Got;
    let h = heap.inner();
    let pages = layout.size().div_ceil(crate::PAGE_SIZE).max(1);
    let order = crate::arena::buddy::order_for_pages(pages).max(
        crate::arena::buddy::order_for_pages(layout.align() / crate::PAGE_SIZE),
    );
    let got = h.direct_reclaim(
        order,
        crate::arena::watermark::Tier::Normal,
        &mut || {
            // SAFETY: the shard cache belongs to this heap.
            h.with_shard(|tc| unsafe { h.alloc_with(tc, layout, flags) })
                .unwrap_or(Err(AllocError::Reentered))
        },
        &mut || {
            // SAFETY: as above.
            h.with_shard(|tc| unsafe { tc.flush(h) });
        },
    )?;
    let p = match got {
        Got::Alloc((p, _)) => NonNull::new(p).map(Reclaimed::Allocated),
        Got::Captured(idx) => NonNull::new(h.adopt_captured(idx)).map(Reclaimed::Captured),
    };
    p.ok_or(AllocError::Layout)
}

/// Declares that a background reclaimer runs for `heap` (the model plays
/// it with [`kswapd_turn`]), so allocations below `low` wake it.
pub fn kswapd_started(heap: &Heap) {
    heap.inner()
        .reclaim
        .kswapd
        .running
        .store(true, crate::sync::Ordering::Release);
}

/// One turn of the real background reclaimer's loop (`kswapd_loop`): its
/// decide-to-sleep step, then, if free pages are at or above `low`, its
/// sleep (blocking until a wake-up). Returns true, without sleeping, when
/// the reclaimer would balance (free pages below `low`); the balancing
/// itself is not run (it sets thread-local rights, which loom's threads
/// would share).
pub fn kswapd_turn(heap: &Heap) -> bool {
    let h = heap.inner();
    let (seen, work) = h.kswapd_check();
    if work {
        return true;
    }
    h.reclaim.kswapd.sleep(seen, 1000);
    false
}

/// The process heap's block cache (`block_cache.rs`) on its own: its
/// slots hold page indices, which a model treats as opaque block names.
pub struct BlockSlots(crate::block_cache::BlockCache);

impl BlockSlots {
    /// The smallest order the cache parks.
    pub const MIN_ORDER: usize = crate::block_cache::MIN_ORDER;

    /// Empty slots, for a budget that parks every order.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::block_cache::BlockCache::new(usize::MAX >> 1))
    }

    /// Parks block `idx` of `order`; false if the slot is taken.
    pub fn park(&self, idx: usize, order: usize) -> bool {
        self.0.park(idx, order)
    }

    /// Takes the block parked for `order`, if any.
    pub fn take(&self, order: usize) -> Option<usize> {
        self.0.take(order)
    }

    /// Empties every slot; returns the blocks taken out.
    pub fn drain(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.0.drain(|idx| out.push(idx));
        out
    }
}

/// The heap's growth-run slots (`growth_run.rs`) on their own: a run is
/// `(head, order, top)`, with page indices and orders as opaque numbers.
pub struct RunSlots(crate::growth_run::GrowthRuns);

impl RunSlots {
    /// Empty slots, for a budget that allows every order.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::growth_run::GrowthRuns::new(usize::MAX >> 1))
    }

    /// Opens the run `(head, order, top)`; returns its slot, or `None`
    /// when every slot is taken.
    pub fn open(&self, head: usize, order: usize, top: usize) -> Option<usize> {
        self.0.open(crate::growth_run::Run { head, order, top })
    }

    /// Grows the run of the buffer at `head` (slot hint `slot`) from
    /// `from` to `to`; whether the held blocks `from..to` are now the
    /// caller's.
    pub fn grow(&self, slot: usize, head: usize, from: usize, to: usize) -> bool {
        self.0.grow(slot, head, from, to) == crate::growth_run::Grow::Grown
    }

    /// Closes the run of the buffer at `head` of `order`; its `(order,
    /// top)`, whose held blocks are now the caller's.
    pub fn close(&self, slot: usize, head: usize, order: usize) -> Option<(usize, usize)> {
        self.0.close(slot, head, order).map(|r| (r.order, r.top))
    }

    /// Empties every slot; returns the runs taken out.
    pub fn drain(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        self.0.drain(|r| out.push((r.head, r.order, r.top)));
        out
    }
}

/// Faults a loom model can inject into the shipped protocol code, to show
/// that the model catches them (loom builds only). Each is read at exactly
/// one protocol step through [`fault`]; with no fault injected every hook is
/// inert.
#[cfg(loom)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `slab::remote::push` publishes its CAS with `Relaxed` instead of
    /// `AcqRel`: the freer's last writes to the object are not ordered
    /// before the owner's reuse of it.
    WeakRemotePush,
    /// `slab::settle` skips its re-check of `DETACHED` under the heap lock,
    /// trusting the event (a push that saw `DETACHED`) instead of the state:
    /// a slab claimed meanwhile is settled while owned.
    SettleSkipsRecheck,
    /// `RawLock` acquires with `Relaxed` instead of `Acquire`: the heap lock
    /// no longer orders the arena's lock-protected state.
    WeakLockAcquire,
    /// `slab::link` files a reserve-backed slab on the ordinary partial
    /// list, where unprivileged callers claim from.
    ReserveListedAsOrdinary,
    /// Direct reclaim trusts its last poll of its capture slot ("nothing
    /// captured") when it unregisters, instead of taking what the slot
    /// holds under the lock: a block captured after that poll is lost,
    /// neither with the requester nor on the free lists.
    CaptureTrustsPoll,
    /// `Kswapd::wake` bumps the wake-up sequence with `Relaxed` instead of
    /// `Release`: a reclaimer that sees the bump may still read the free
    /// count from before the allocation, and go to sleep for good.
    WeakKswapdWake,
    /// `Mempool::free` notifies waiters before it puts the element back
    /// (and outside the lock): a waiter that checks the pool in between
    /// sleeps through the only wake-up.
    MempoolNotifyEarly,
    /// `BlockCache::take` empties a slot with a load and a separate store
    /// instead of one swap: two takers can both get the same block.
    BlockCacheSplitTake,
    /// A push of a remote batch's chain onto a detached slab is judged as
    /// if it freed one object (`HeapInner::after_detached_push`): the push
    /// that frees the slab's last objects does not see it, and the slab is
    /// never released.
    ChainCountedAsOne,
    /// `slab::detach` sets `DETACHED` with a load and a separate store
    /// instead of one read-modify-write: a remote free pushed in between,
    /// which `detach` now leaves on the stack, is lost with its count, and
    /// the slab is never released.
    DetachSplitsWord,
    /// `GrowthRuns::grow` checks the slot and stores the grown run in two
    /// steps instead of one compare-and-swap: a drain in between and the
    /// holder both take the same held blocks.
    GrowthRunSplitGrow,
    /// `slab::settle` leaves a reserve-backed slab with no free object off
    /// every list (as before the spent list): lifting the reserve does not
    /// find it, and it stays reserve-backed until a free lists it.
    SpentLeftUnlisted,
}

#[cfg(loom)]
std::thread_local! {
    // Loom runs all threads of a model on the thread that called
    // `loom::model`, so a thread-local scopes the fault to one test.
    static FAULT: core::cell::Cell<Option<Fault>> = const { core::cell::Cell::new(None) };
}

/// Injects `f` (or nothing) into the protocol code run by this OS thread,
/// which is every thread of a loom model started from it. Returns the
/// previous setting.
#[cfg(loom)]
pub fn inject(f: Option<Fault>) -> Option<Fault> {
    FAULT.with(|c| c.replace(f))
}

/// Whether fault `f` is injected (the hook read at a protocol step).
#[cfg(loom)]
#[inline]
pub(crate) fn fault(f: Fault) -> bool {
    FAULT.with(|c| c.get()) == Some(f)
}

/// `$weak` if fault `$f` is injected, else `$strong`; outside loom builds
/// it expands to `$strong` alone, so shipped code is unchanged.
#[cfg(loom)]
macro_rules! fault_ordering {
    ($f:ident, $strong:expr, $weak:expr) => {
        if $crate::model::fault($crate::model::Fault::$f) {
            $weak
        } else {
            $strong
        }
    };
}
#[cfg(not(loom))]
macro_rules! fault_ordering {
    ($f:ident, $strong:expr, $weak:expr) => {
        $strong
    };
}
pub(crate) use fault_ordering;

/// Whether fault `$f` is injected; outside loom builds it expands to
/// `false`, so shipped code is unchanged.
#[cfg(loom)]
macro_rules! fault_injected {
    ($f:ident) => {
        $crate::model::fault($crate::model::Fault::$f)
    };
}
#[cfg(not(loom))]
macro_rules! fault_injected {
    ($f:ident) => {
        false
    };
}
pub(crate) use fault_injected;

// ------------------------------------------------------------------------
// Fault injection, heap verification and operation sequences (issue #7,
// branch harden-faults). Kept in this separate block.

pub use crate::fault::{fail_calls, fail_hits, fail_nth, fail_reset, FailPoint};

#[cfg(not(loom))]
pub mod ops;
