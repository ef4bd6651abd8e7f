//! A heap: an arena, its slabs, its direct mappings, and the paths that
//! allocate and free through them. [`Heap`] is the public handle of a
//! private heap; the process heap behind [`crate::Lifeboat`] is the same
//! [`HeapInner`] with per-thread caches in thread-locals.
//!
//! Memory layout: one metadata mapping holds the `HeapInner`, the table of
//! direct mappings and the page descriptors; a second mapping, aligned to
//! 4 MiB, holds the pages. Both are reserved without commitment.
//!
//! Lock order: a shard lock, then the heap lock. The heap lock guards the
//! buddy lists, the partial lists and the direct-mapping table; it is never
//! held across a system call that maps or unmaps memory, nor across a copy.
//! Page blocks also change hands without it, each through a protocol of
//! its own: parked in a thread cache (`tcache.rs`) or the block cache
//! (`block_cache.rs`), and held above a growing buffer (`growth_run.rs`).
//!
//! This file holds the heap's state, its creation and locks, the entry
//! that sends a request to its path, and the statistics snapshot. The
//! paths are in the files beside it:
//!
//! * `small.rs`: small objects past the thread cache's fast paths, and
//!   the reserve's objects for memalloc callers;
//! * `pages.rs`: large blocks and direct mappings, and allocation with
//!   reclaim behind it;
//! * `free.rs`: frees of every kind, and the lookups by pointer;
//! * `held.rs`: what a thread cache holds of other threads' slabs;
//! * `resize.rs`: growth runs and the in-place cases of `realloc`;
//! * `private.rs`: [`Heap`], the public handle of a private heap.

use crate::arena::buddy::{order_for_pages, MAX_ORDER};
use crate::arena::desc::{PageDesc, FLAG_RESERVE, KIND_CACHED, KIND_LARGE, KIND_SLAB};
use crate::arena::watermark::{Admit, Tier, Watermarks};
use crate::arena::Arena;
use crate::block_cache::BlockCache;
use crate::config::Config;
use crate::diag::fatal;
use crate::error::{AllocError, Error};
use crate::flags::AllocFlags;
use crate::growth_run::GrowthRuns;
use crate::huge_cache::{self, HugeCache};
use crate::memalloc::Rights;
use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::reclaim::Reclaim;
use crate::slab::class::{class_for, CLASS_SIZE, SLAB_ORDER};
use crate::slab::remote::{self, rcnt};
use crate::slab::{self, SlabLists};
use crate::stats::{Counters, Stats};
use crate::sync::{Ordering, RawLock};
use crate::tcache::ThreadCache;
use crate::throttle::{Pass, ReserveGate};
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use crossbeam_utils::CachePadded;

mod free;
mod held;
mod pages;
mod private;
mod resize;
mod small;

pub use private::Heap;

/// Largest buddy block, in bytes; larger requests are mapped directly.
pub(crate) const MAX_BLOCK: usize = PAGE_SIZE << MAX_ORDER;

/// A `realloc` growth to at least this size that has to move goes to a
/// page block, which later growths extend in place, instead of a slab
/// object, which every class change would copy.
pub(crate) const GROWTH_BLOCK_MIN: usize = PAGE_SIZE;

/// What [`HeapInner::try_hold`] did with an object of another's slab.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Held by the cache: on its foreign list or in its remote batch.
    Held,
    /// Not held: it goes onto its slab's remote stack now.
    Remote,
    /// Not held: memory is short, a drain is pending, or the thread has
    /// only been freeing for a while (`ForeignLists::freeing_only`), so
    /// the cache must give back what it holds, and the object goes onto
    /// its slab's remote stack.
    GiveBack,
    /// Not held yet: the chain of its class is of another slab or full;
    /// that chain is to be pushed and a new one started with the object.
    NewChain,
    /// Not held yet: the batch is bypassed; the object is to be held back
    /// while its lines are fetched (`RemoteBatch::defer`).
    Defer,
}

/// The slot hint of a growth run's head (see `growth_run.rs`).
#[inline(always)]
fn run_slot(d: &PageDesc) -> usize {
    d.class.load(Ordering::Relaxed) as usize
}

/// Locked caches of a private heap (and of threads past their exit hook).
pub(crate) const SHARDS: usize = 4;

/// A thread cache behind a lock, for callers without a thread-local cache.
pub(crate) struct Shard {
    lock: RawLock,
    pub(crate) cache: UnsafeCell<ThreadCache>,
}

/// One direct mapping: address and length (0 address = empty slot).
#[derive(Clone, Copy)]
pub(crate) struct HugeEntry {
    pub(crate) addr: usize,
    pub(crate) len: usize,
}

pub(crate) struct HeapInner {
    pub(crate) arena: Arena,
    pub(crate) slabs: SlabLists,
    lock: RawLock,
    /// Padded so threads on different shards do not share cache lines.
    pub(crate) shards: [CachePadded<Shard>; SHARDS],
    /// The sentinel slab of the shard caches (kind `UNUSED`, empty lists);
    /// a pair, the second its owner line (`PageDesc::owner_line`).
    pub(crate) empty: [PageDesc; 2],
    pub(crate) huge: *mut HugeEntry,
    pub(crate) huge_mask: usize,
    /// Entries in the direct-mapping table (heap lock). At most
    /// `huge_mask`, so a probe always meets an empty slot.
    pub(crate) huge_used: crate::sync::RacyCell<usize>,
    meta: *mut u8,
    meta_len: usize,
    pub(crate) budget_pages: usize,
    huge_cache: HugeCache,
    /// Freed 512 KiB–4 MiB blocks of the process heap (`block_cache.rs`).
    pub(crate) block_cache: BlockCache,
    /// Room held above buffers that `realloc` grows (`growth_run.rs`).
    pub(crate) runs: GrowthRuns,
    pub(crate) config: Config,
    pub(crate) reclaim: Reclaim,
    pub(crate) counters: Counters,
    gate: ReserveGate,
}

// SAFETY: all shared state follows the protocols in the module docs of
// `arena`, `slab` and this file; raw pointers name memory the heap owns.
unsafe impl Send for HeapInner {}
// SAFETY: as above.
unsafe impl Sync for HeapInner {}

impl HeapInner {
    /// Maps and initialises a heap. `budget == 0` in `config` means the
    /// machine default when `allow_default`, an error otherwise.
    pub(crate) fn create(
        config: &Config,
        allow_default: bool,
    ) -> Result<NonNull<HeapInner>, Error> {
        let budget = match config.budget {
            0 if allow_default => os::default_budget(),
            b => b,
        };
        if budget < Error::MIN_BUDGET {
            return Err(Error::BudgetTooSmall);
        }
        let npages = budget >> PAGE_SHIFT;
        if npages >= u32::MAX as usize || npages > (usize::MAX >> PAGE_SHIFT) / 2 {
            return Err(Error::BudgetTooLarge);
        }
        let huge_slots = ((npages >> MAX_ORDER) + 1).next_power_of_two() * 2;
        let inner_len = core::mem::size_of::<HeapInner>().next_multiple_of(64);
        let huge_len = (huge_slots * core::mem::size_of::<HugeEntry>()).next_multiple_of(64);
        let meta_len = (inner_len + huge_len + npages * core::mem::size_of::<PageDesc>())
            .next_multiple_of(PAGE_SIZE);
        let meta = os::reserve(meta_len, PAGE_SIZE).ok_or(Error::MapFailed)?;
        let Some(base) = os::reserve(npages << PAGE_SHIFT, MAX_BLOCK) else {
            // SAFETY: `meta` was just mapped with this length and is unused.
            unsafe { os::release(meta, meta_len) };
            return Err(Error::MapFailed);
        };
        if config.huge_pages {
            // Slabs and page blocks on huge pages: far fewer TLB misses
            // when frees and allocations land all over the heap (see
            // `Config::huge_pages`).
            // SAFETY: `base` is the range just reserved, of this length.
            unsafe { os::advise_huge_pages(base, npages << PAGE_SHIFT) };
        }
        let inner = meta.cast::<HeapInner>();
        // SAFETY: the metadata mapping is large enough for the three parts
        // at these offsets; fresh anonymous memory is zero, which is the
        // `UNUSED` descriptor and the empty huge-table slot.
        unsafe {
            let huge = meta.add(inner_len).cast::<HugeEntry>();
            let descs = meta.add(inner_len + huge_len).cast::<PageDesc>();
            #[cfg(loom)]
            for i in 0..npages {
                descs.add(i).write(PageDesc::new());
            }
            let marks = Watermarks::with_atomic_reserve(
                npages,
                config.min_free,
                config.atomic_reserve >> PAGE_SHIFT,
            );
            // Field by field, in place: the whole struct (four shard caches)
            // built on the stack first would not fit a small stack (loom's
            // model threads have 32 KiB). Every field is written once.
            use core::ptr::addr_of_mut as field;
            field!((*inner).arena).write(Arena::new(base, descs, npages, marks, config.capture));
            field!((*inner).slabs).write(SlabLists::new(slab::key::new_key(inner as usize)));
            field!((*inner).lock).write(RawLock::new_waited());
            field!((*inner).empty).write([PageDesc::new(), PageDesc::new()]);
            let empty: *const PageDesc = field!((*inner).empty).cast::<PageDesc>();
            crate::arena::desc::expose(empty);
            for i in 0..SHARDS {
                let mut cache = ThreadCache::new(empty);
                cache.key = (*inner).slabs.key;
                field!((*inner).shards[i]).write(CachePadded::new(Shard {
                    lock: RawLock::new(),
                    cache: UnsafeCell::new(cache),
                }));
            }
            field!((*inner).huge).write(huge);
            field!((*inner).huge_mask).write(huge_slots - 1);
            field!((*inner).huge_used).write(crate::sync::RacyCell::new(0));
            field!((*inner).meta).write(meta);
            field!((*inner).meta_len).write(meta_len);
            field!((*inner).budget_pages).write(npages);
            field!((*inner).huge_cache).write(HugeCache::new(npages << PAGE_SHIFT));
            field!((*inner).block_cache).write(BlockCache::new(npages));
            field!((*inner).runs).write(GrowthRuns::new(npages));
            field!((*inner).counters).write(Counters::new());
            field!((*inner).gate).write(ReserveGate::new(
                config.max_reserve_users,
                config.reserve_wait_ms,
            ));
            field!((*inner).config).write(*config);
            field!((*inner).reclaim).write(Reclaim::new());
            // (A field added to `HeapInner` must be written above: this
            // exhaustive pattern stops compiling until it is listed here.)
            let _: fn(&HeapInner) = |h| {
                let HeapInner {
                    arena: _,
                    slabs: _,
                    lock: _,
                    shards: _,
                    empty: _,
                    huge: _,
                    huge_mask: _,
                    huge_used: _,
                    meta: _,
                    meta_len: _,
                    budget_pages: _,
                    huge_cache: _,
                    block_cache: _,
                    runs: _,
                    config: _,
                    reclaim: _,
                    counters: _,
                    gate: _,
                } = h;
            };
            Ok(NonNull::new_unchecked(inner))
        }
    }

    /// Returns the blocks parked in the heap's block cache and the blocks
    /// held by growth runs to the arena; whether there were any.
    pub(crate) fn drop_block_cache(&self) -> bool {
        let mut any = false;
        self.block_cache.drain(|idx| {
            self.free_parked(idx);
            any = true;
        });
        self.runs.drain(|run| {
            self.release_run(run);
            any = true;
        });
        any
    }

    /// Unmaps the cached free direct mappings; returns their bytes.
    pub(crate) fn drop_huge_cache(&self) -> usize {
        let mut cached = [(0, 0); huge_cache::SLOTS];
        // SAFETY: under the heap lock.
        let n = self.with_lock(|| unsafe { self.huge_cache.drain(&mut cached) });
        let mut bytes = 0;
        for &(addr, len) in &cached[..n] {
            // SAFETY: cached mappings hold no live data and are ours.
            unsafe { os::release(addr as *mut u8, len) };
            bytes += len;
        }
        bytes
    }

    /// Unmaps a heap made by [`HeapInner::create`], with its direct mappings.
    ///
    /// # Safety
    /// Nothing uses the heap or any memory it handed out any more.
    pub(crate) unsafe fn destroy(this: NonNull<HeapInner>) {
        // SAFETY: the caller gives up the heap; every mapping below is ours.
        unsafe {
            let h = this.as_ptr();
            for i in 0..=(*h).huge_mask {
                let e = *(*h).huge.add(i);
                if e.addr != 0 {
                    os::release(e.addr as *mut u8, e.len);
                }
            }
            let mut cached = [(0, 0); huge_cache::SLOTS];
            let n = (*h).huge_cache.drain(&mut cached);
            for &(addr, len) in &cached[..n] {
                os::release(addr as *mut u8, len);
            }
            let (base, npages) = ((*h).arena.base, (*h).arena.npages);
            let (meta, meta_len) = ((*h).meta, (*h).meta_len);
            os::release(base, npages << PAGE_SHIFT);
            // A thread whose memalloc scope still holds a place in this
            // heap's reserve gate will release it later: keep the metadata
            // (a few pages) mapped for it rather than let it write freed
            // memory.
            if (*h).gate.users() == 0 {
                ptr::drop_in_place(h);
                os::release(meta, meta_len);
            }
        }
    }

    /// Runs `f` under the heap lock.
    #[inline]
    pub(crate) fn with_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        self.lock.with(f)
    }

    /// Takes every lock of the heap (before `fork()`).
    #[cfg(not(loom))]
    pub(crate) fn lock_all(&self) {
        // Resolved once, before the first lock (see `HeldCount`).
        let held = crate::sync::HeldCount::current();
        for s in &self.shards {
            s.lock.lock_as(held);
        }
        self.lock.lock_as(held);
    }

    /// Releases every lock taken by [`HeapInner::lock_all`].
    ///
    /// # Safety
    /// The caller took them with `lock_all`; `child` is true in the child of
    /// a `fork()`, where the locks are reset instead.
    #[cfg(not(loom))]
    pub(crate) unsafe fn unlock_all(&self, child: bool) {
        // SAFETY: the caller holds all locks (or is the only thread left).
        unsafe {
            if child {
                self.lock.force_unlock();
                for s in &self.shards {
                    s.lock.force_unlock();
                }
            } else {
                self.lock.unlock();
                for s in &self.shards {
                    s.lock.unlock();
                }
            }
        }
    }

    /// Runs `f` with a shard cache chosen by the calling thread; `None`
    /// when the thread holds a lock already and every shard is taken.
    ///
    /// A thread that holds no lock waits for its shard. One that holds a
    /// lock is a nested allocation or free (a signal handler, or the
    /// loader's TLS update resolving a thread-local under a shard lock,
    /// see `sync::HeldCount`): it takes the first shard it can take
    /// without waiting, from its own on, and so never the one it holds.
    /// (The caller refuses first if the thread holds the heap lock:
    /// `sync::holds_waited_lock`.)
    pub(crate) fn with_shard<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        let first = shard_index();
        let held = crate::sync::HeldCount::current();
        let shard = if held.any() {
            (0..SHARDS)
                .map(|i| &self.shards[(first + i) % SHARDS])
                .find(|s| s.lock.try_lock_as(held))?
        } else {
            let s = &self.shards[first];
            s.lock.lock_as(held);
            s
        };
        // SAFETY: the shard lock gives exclusive use of its cache.
        let r = f(unsafe { &mut *shard.cache.get() });
        // SAFETY: locked above.
        unsafe { shard.lock.unlock() };
        Some(r)
    }

    /// Runs a reserve attempt with the caller admitted by the reserve-user
    /// bound; counts reserve grants.
    fn through_gate<T>(&self, f: impl FnOnce() -> Result<T, AllocError>) -> Result<T, AllocError> {
        let pass = self
            .gate
            .enter(crate::memalloc::in_memalloc_scope(), &self.counters)?;
        let res = f();
        if pass == Pass::Once {
            self.gate.leave();
        }
        res
    }

    /// Records how a page-level request of `r` was admitted.
    fn granted(&self, r: Rights, admit: Admit, pages: usize) {
        if admit != Admit::Fast {
            // Below `low`: the background reclaimer should start.
            self.reclaim.kswapd.wake();
        }
        if admit == Admit::Reserve {
            self.counters.grant(Tier::Memalloc);
            self.arena.reserve_pages.fetch_add(pages, Ordering::Relaxed);
            self.counters.reserve_allocs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.grant(r.tier);
        }
    }

    /// Allocates `layout` through `tc`; returns the pointer and whether it
    /// is known to be zero.
    ///
    /// # Safety
    /// `tc` is the caller's cache of this heap.
    pub(crate) unsafe fn alloc_with(
        &self,
        tc: &mut ThreadCache,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<(*mut u8, bool), AllocError> {
        // Under `debug` a small object has room for its red zone and size;
        // a size that is a multiple of 16 keeps its 16-byte alignment (the
        // promise of `Lifeboat`), which the grown size alone would not.
        #[cfg(feature = "debug")]
        let class = {
            let align = if layout.size().is_multiple_of(16) {
                layout.align().max(16)
            } else {
                layout.align()
            };
            class_for(layout.size() + slab::debug::RZ_EXTRA, align)
        };
        #[cfg(not(feature = "debug"))]
        let class = class_for(layout.size(), layout.align());
        match class {
            Some(c) => {
                // SAFETY: class_for returns classes in range; `tc` per caller.
                let p = unsafe { self.alloc_small(tc, c, flags) }?;
                #[cfg(feature = "debug")]
                // SAFETY: `p` was just handed out from its slab, for a class
                // of at least size + RZ_EXTRA bytes.
                unsafe {
                    slab::debug::arm_redzone(self.slab_of(p), p, layout.size())
                };
                Ok((p, false))
            }
            None => match self.take_parked(tc, layout) {
                Some(p) => Ok((p, false)),
                None => self.alloc_pages(layout.size(), layout.align(), flags),
            },
        }
    }

    /// The slab of `p`, an object this heap handed out.
    #[cfg(feature = "debug")]
    fn slab_of(&self, p: *const u8) -> &PageDesc {
        let Some(idx) = self.arena.page_of(p) else {
            fatal("invalid free (pointer not from this heap)", p as usize)
        };
        self.arena.block_head(idx)
    }

    /// A snapshot of the heap (walks the descriptors under the lock).
    pub(crate) fn stats(&self) -> Stats {
        let mut st = Stats::empty();
        st.budget_pages = self.budget_pages;
        st.min_pages = self.arena.marks.min;
        st.low_pages = self.arena.marks.low;
        st.high_pages = self.arena.marks.high;
        for (c, cs) in st.classes.iter_mut().enumerate() {
            cs.size = CLASS_SIZE[c] as usize;
        }
        let frontier = self.with_lock(|| {
            st.free_pages = self.arena.free_pages();
            // SAFETY: under the heap lock.
            st.free_blocks = unsafe { self.arena.free_blocks() };
            // SAFETY: under the heap lock.
            let frontier = unsafe { self.arena.frontier() };
            let mut i = 0;
            while i < frontier {
                let d = self.arena.desc(i);
                let order = d.order();
                match d.kind() {
                    KIND_SLAB => {
                        let c = d.class.load(Ordering::Relaxed) as usize;
                        // SAFETY: `d` heads a slab of this arena.
                        let (o, word) = unsafe { (d.owner_line(), remote::word(d)) };
                        let live = o
                            .used
                            .load(Ordering::Relaxed)
                            .saturating_sub(rcnt(word.load(Ordering::Relaxed)));
                        st.classes[c].slabs += 1;
                        st.classes[c].live_objects += live as usize;
                        st.slab_pages += 1 << order;
                        if d.has_flag(FLAG_RESERVE) {
                            st.reserve_slabs += 1;
                        }
                    }
                    KIND_LARGE | KIND_CACHED => st.large_pages += 1 << order,
                    _ => {}
                }
                i += 1 << order;
            }
            frontier
        });
        st.huge_bytes = self.counters.huge_bytes.load(Ordering::Relaxed);
        st.huge_cached_bytes = self.huge_cache.bytes();
        st.mapped_bytes = (frontier << PAGE_SHIFT) + st.huge_bytes;
        st.resident_bytes = (os::resident_pages(self.arena.base, frontier) << PAGE_SHIFT)
            + st.huge_bytes.min(st.mapped_bytes);
        st.reserve_pages = self.arena.reserve_pages.load(Ordering::Relaxed);
        st.reserve_allocs = self.counters.reserve_allocs.load(Ordering::Relaxed);
        st.reserve_users = self.gate.users() as usize;
        st.reserve_waits = self.counters.reserve_waits.load(Ordering::Relaxed);
        st.reserve_timeouts = self.counters.reserve_timeouts.load(Ordering::Relaxed);
        st.grants = self.counters.grants();
        st.refusals = self.counters.refusals();
        #[cfg(not(loom))]
        {
            (st.lock_acquisitions, st.lock_contended) = self.lock.acquisitions();
        }
        st.reclaim = self.reclaim.snapshot();
        st
    }
}

/// The buddy order a request needs: its slab's order for small sizes, its
/// block's order for large ones, beyond `MAX_ORDER` for direct mappings.
fn request_order(layout: Layout) -> usize {
    match class_for(layout.size(), layout.align()) {
        Some(c) => SLAB_ORDER[c] as usize,
        None if layout.size() > MAX_BLOCK || layout.align() > MAX_BLOCK => MAX_ORDER + 1,
        None => order_for_pages(layout.size().div_ceil(PAGE_SIZE).max(1))
            .max(order_for_pages(layout.align() >> PAGE_SHIFT)),
    }
}

/// Aborts if `p` is not the start of an object of slab `s`, whose class
/// `slab::class_index` gave as `class`.
#[inline]
pub(crate) fn check_object_start(s: &PageDesc, class: usize, p: *mut u8) {
    // SAFETY: `lo` and `span` are fixed while the slab is live (and zero,
    // so nothing passes, on a released one).
    let (lo, span) = unsafe { (s.lo.get(), s.span.get()) };
    let off = (p as usize).wrapping_sub(lo);
    // `off < span` (at most a slab, far below 2^32) first: the multiple
    // test needs it. The class is fixed while the slab is live.
    if off >= span || !slab::class::is_object_offset(off, class) {
        fatal("invalid free (not the start of an object)", p as usize);
    }
}

#[inline]
fn hash(addr: usize) -> usize {
    (addr >> PAGE_SHIFT).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20
}

/// The shard of the calling thread: a hash of a thread-local's address.
fn shard_index() -> usize {
    #[cfg(not(loom))]
    {
        std::thread_local! { static ANCHOR: u8 = const { 0 } }
        crate::sync::check_thread_local_allowed();
        let a = ANCHOR.with(|a| a as *const u8 as usize);
        (a >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 2)
    }
    #[cfg(loom)]
    {
        0
    }
}

const _: () = assert!(SHARDS == 4, "shard_index takes the top 2 bits");

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A nested allocation or free (a signal handler, the loader's TLS
    /// update) on a thread that holds shard locks goes through a shard it
    /// does not hold, without waiting; one on a thread that holds the heap
    /// lock, or every shard, is refused.
    #[test]
    fn nested_calls_take_a_free_shard_and_never_wait() {
        let heap = Heap::new(Config::new().budget(16 << 20)).unwrap();
        let h = heap.inner();
        let l = Layout::from_size_align(100, 8).unwrap();
        let nested = || -> Result<(), AllocError> {
            let p = heap.alloc(l, AllocFlags::NORMAL)?;
            // SAFETY: allocated just above.
            unsafe { heap.dealloc(p, l) };
            Ok(())
        };
        assert_eq!(h.with_shard(|_| nested()), Some(Ok(())));
        assert_eq!(
            h.with_shard(|_| h.with_shard(|_| h.with_shard(|_| nested()))),
            Some(Some(Some(Ok(()))))
        );
        // All four shards held by this thread: no shard left, refused.
        assert_eq!(
            h.with_shard(|_| h.with_shard(|_| h.with_shard(|_| h.with_shard(|_| nested())))),
            Some(Some(Some(Some(Err(AllocError::Reentered)))))
        );
        assert_eq!(h.with_lock(nested), Err(AllocError::Reentered));
        // Nothing stranded: the nested objects went back to the shards.
        heap.flush_caches();
        heap.verify().unwrap();
    }
}
