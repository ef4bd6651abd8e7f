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

use crate::arena::buddy::{order_for_pages, MAX_ORDER};
use crate::arena::desc::{
    PageDesc, FLAG_RESERVE, FLAG_RUN, KIND_CACHED, KIND_LARGE, KIND_SLAB, KIND_TAIL,
};
use crate::arena::watermark::{Admit, Tier, Watermarks};
use crate::arena::Arena;
use crate::block_cache::BlockCache;
use crate::config::Config;
use crate::diag::fatal;
use crate::error::{AllocError, Error};
use crate::flags::AllocFlags;
use crate::growth_run::{Grow, GrowthRuns, Run};
use crate::huge_cache::{self, HugeCache};
use crate::memalloc::{resolve, Rights};
use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::reclaim::shrinker::{RegisterError, Shrinker};
use crate::reclaim::{Got, OomHandler, Reclaim};
use crate::remote_batch::Chain;
use crate::slab::class::{class_for, CLASS_SIZE, NUM_CLASSES, SLAB_ORDER};
use crate::slab::remote::{self, rcnt, DETACHED};
use crate::slab::{self, SlabLists};
use crate::stats::{Counters, Stats};
use crate::sync::{Ordering, RawLock};
use crate::tcache::ThreadCache;
use crate::throttle::{Pass, ReserveGate};
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use crossbeam_utils::CachePadded;

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

    // ---------------------------------------------------------------- small

    /// Allocates an object of `class` through `tc`.
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `tc` belongs to this heap and to the caller.
    #[inline]
    pub(crate) unsafe fn alloc_small(
        &self,
        tc: &mut ThreadCache,
        class: usize,
        flags: AllocFlags,
    ) -> Result<*mut u8, AllocError> {
        // SAFETY: as guaranteed by the caller.
        let p = unsafe { tc.alloc_fast(class) };
        if !p.is_null() {
            return Ok(p);
        }
        // SAFETY: as guaranteed by the caller.
        let p = unsafe { tc.take_frees(class) };
        if !p.is_null() {
            return Ok(p);
        }
        // SAFETY: as guaranteed by the caller.
        let p = unsafe { self.pop_foreign(tc, class) };
        if !p.is_null() {
            return Ok(p);
        }
        // SAFETY: as guaranteed by the caller.
        unsafe { self.alloc_small_slow(tc, class, resolve(flags)) }
    }

    /// The order of the slow path: the cache's own slab (bump region, then
    /// remote frees); an ordinary slab (listed, else carved under the tier's
    /// mark); and only for memalloc callers refused by the mark, an object
    /// of a listed reserve slab, or of a new one carved from the reserve
    /// ([`HeapInner::alloc_from_reserve`]).
    ///
    /// # Safety
    /// As for [`HeapInner::alloc_small`].
    #[cold]
    unsafe fn alloc_small_slow(
        &self,
        tc: &mut ThreadCache,
        class: usize,
        r: Rights,
    ) -> Result<*mut u8, AllocError> {
        let gen = self.reclaim.drain_gen.load(Ordering::Acquire);
        if tc.drain_seen != gen {
            // Reclaim asked every cache to give its slabs back.
            tc.drain_seen = gen;
            // SAFETY: `tc` is the caller's cache of this heap.
            unsafe { tc.flush(self) };
        }
        self.maybe_lift_reserve();
        // SAFETY: `tc` is the caller's cache of this heap.
        unsafe {
            // (Served by the thread's own slabs: its foreign lists may
            // hand out objects again, see `foreign::POPS_BEFORE_REFILL`.)
            let p = tc.refill_slot(self, class);
            if !p.is_null() {
                tc.foreign.note_allocation();
                return Ok(p);
            }
            let retiring = tc.take_retiring(self);
            let err = match self.new_slab(tc, class, r, retiring) {
                Ok(s) => {
                    tc.foreign.note_allocation();
                    return Ok(tc.install(self, class, s));
                }
                Err(e) => e,
            };
            if r.memalloc && err == AllocError::Watermark {
                return self.through_gate(|| self.alloc_from_reserve(tc, class, r));
            }
            Err(err)
        }
    }

    /// An ordinary slab for `class`, owned by `tc`: a listed one, else one
    /// carved under the tier's mark. `retiring`, a slab `tc` gave up and
    /// detached (`ThreadCache::take_retiring`), is settled in the same lock
    /// round, first, whatever the outcome.
    ///
    /// # Safety
    /// `tc` is the caller's cache of this heap; `retiring` is a detached
    /// slab of this heap.
    unsafe fn new_slab(
        &self,
        tc: &ThreadCache,
        class: usize,
        r: Rights,
        retiring: Option<&PageDesc>,
    ) -> Result<&PageDesc, AllocError> {
        let order = SLAB_ORDER[class] as usize;
        self.with_lock(|| {
            // SAFETY: under the heap lock; `retiring` is a detached slab of
            // this heap (caller's promise).
            unsafe {
                if let Some(s) = retiring {
                    // First, so a claim may take it if it became partial.
                    slab::settle(&self.arena, &self.slabs, s);
                }
                if let Some(s) = slab::claim(&self.arena, &self.slabs, class, false, tc.id()) {
                    return Ok(s);
                }
                let b = self.arena.alloc(order, r.tier, false)?;
                self.granted(r, b.admit, 1 << order);
                Ok(slab::carve(
                    &self.arena,
                    &self.slabs,
                    b.idx,
                    class,
                    tc.id(),
                    false,
                ))
            }
        })
    }

    /// One object of `class` for a memalloc caller whom the tier's mark
    /// refused: from a listed reserve-backed slab, else from a slab carved
    /// from the reserve. That slab is owned only inside this lock round
    /// ([`slab::LOCK_HOLDER`]), which detaches and settles it again, so no
    /// cache keeps a reserve-backed slab: the frees that empty one, by any
    /// thread, return its pages to the reserve at once, and neither free
    /// fast path can meet one owned by its thread. (A cache that kept one
    /// between reserve allocations kept its pages, once other threads had
    /// emptied it, until that thread next flushed.) The reserve path is
    /// rare, so one lock round an object is cheap; the detach may walk
    /// the slab's `frees` list under the lock, which holds only remote
    /// frees the claim took.
    ///
    /// A block that the caller's own mark admits after all (others freed
    /// memory since the refusal) becomes an ordinary slab of `tc`, as
    /// [`HeapInner::new_slab`] would have made it.
    ///
    /// # Safety
    /// `tc` is the caller's cache of this heap.
    unsafe fn alloc_from_reserve(
        &self,
        tc: &mut ThreadCache,
        class: usize,
        r: Rights,
    ) -> Result<*mut u8, AllocError> {
        let order = SLAB_ORDER[class] as usize;
        let key = self.slabs.key;
        let (arena, lists) = (&self.arena, &self.slabs);
        let got = self.with_lock(|| {
            // SAFETY: under the heap lock. A claimed or carved slab is the
            // lock holder's (`LOCK_HOLDER`) until its detach, so its
            // owner's lists are ours; settled under the same lock.
            unsafe {
                if let Some(s) = slab::claim(arena, lists, class, true, slab::LOCK_HOLDER) {
                    self.counters.reserve_allocs.fetch_add(1, Ordering::Relaxed);
                    let p = slab::take_object(arena, s, 1, key);
                    slab::detach(s, key);
                    slab::settle(arena, lists, s);
                    // (A listed slab has objects to give: `settle` lists
                    // only those; the carve below covers a miscount.)
                    if !p.is_null() {
                        return Ok(Ok(p));
                    }
                }
                let b = arena.alloc(order, r.tier, true)?;
                self.granted(r, b.admit, 1 << order);
                if b.admit != Admit::Reserve {
                    let s = slab::carve(arena, lists, b.idx, class, tc.id(), false);
                    return Ok(Err(s));
                }
                let s = slab::carve(arena, lists, b.idx, class, slab::LOCK_HOLDER, true);
                // A fresh slab gives its first object.
                let p = slab::take_object(arena, s, 1, key);
                slab::detach(s, key);
                slab::settle(arena, lists, s);
                Ok(Ok(p))
            }
        })?;
        match got {
            Ok(p) => Ok(p),
            Err(ordinary) => {
                tc.foreign.note_allocation();
                // SAFETY: `tc` owns the fresh slab, not reserve-backed; its
                // class's active slot is the sentinel (the slow path
                // emptied it before trying to carve).
                Ok(unsafe { tc.install(self, class, ordinary) })
            }
        }
    }

    /// Counts a refusal and warns (rate-limited, unless `NOWARN`).
    #[cold]
    pub(crate) fn refused(&self, r: Rights, order: usize, err: AllocError) {
        self.counters
            .refuse(if r.memalloc { Tier::Memalloc } else { r.tier });
        if r.flags.contains(AllocFlags::NOWARN)
            || !crate::diag::warn_allowed(crate::diag::Warn::AllocFailure)
        {
            return;
        }
        let mut m = crate::diag::MsgBuf::new();
        m.str("lifeboat: warning: allocation refused (")
            .str(match err {
                AllocError::Watermark => "below watermark",
                AllocError::Fragmented => "fragmented",
                AllocError::Layout => "layout",
                AllocError::MapFailed => "mmap failed",
                AllocError::ReserveBusy => "reserve busy",
                AllocError::Timeout => "timeout",
                AllocError::Reentered => "re-entered",
            })
            .str("): order ")
            .dec(order)
            .str(", free ")
            .dec(self.arena.free_pages())
            .str(" pages, min ")
            .dec(self.arena.marks.min)
            .str(" low ")
            .dec(self.arena.marks.low)
            .str(" high ")
            .dec(self.arena.marks.high)
            .str("\n");
        m.emit();
    }

    /// When pressure has lifted (free above `high`), reserve-backed slabs
    /// serve everyone again: listed ones move to the ordinary lists. (The
    /// others, detached with too few free objects to be listed, keep the
    /// flag until they are released or listed and lifted then.)
    fn maybe_lift_reserve(&self) {
        if self.slabs.reserve_slabs.load(Ordering::Relaxed) == 0
            || self.arena.free_pages() <= self.arena.marks.high
        {
            return;
        }
        self.with_lock(|| {
            for class in 0..NUM_CLASSES {
                // SAFETY: under the heap lock.
                unsafe { slab::unreserve_listed(&self.arena, &self.slabs, class) };
            }
        });
    }

    // ---------------------------------------------------------------- pages

    /// Allocates whole pages (large) or a direct mapping (huge). Returns the
    /// pointer and whether its memory is known to be zero.
    pub(crate) fn alloc_pages(
        &self,
        size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<(*mut u8, bool), AllocError> {
        let r = resolve(flags);
        if size > MAX_BLOCK || align > MAX_BLOCK {
            return self.alloc_huge(size, align, r);
        }
        let pages = size.div_ceil(PAGE_SIZE).max(1);
        let order = order_for_pages(pages).max(order_for_pages(align >> PAGE_SHIFT));
        let take = |memalloc: bool| {
            self.with_lock(|| {
                // SAFETY: under the heap lock.
                let b = unsafe { self.arena.alloc(order, r.tier, memalloc) }?;
                self.granted(r, b.admit, 1 << order);
                let d = self.arena.desc(b.idx);
                d.back.store(0, Ordering::Relaxed);
                d.order.store(order as u8, Ordering::Relaxed);
                d.owner.store(0, Ordering::Relaxed);
                d.flags.store(
                    if b.admit == Admit::Reserve {
                        FLAG_RESERVE
                    } else {
                        0
                    },
                    Ordering::Relaxed,
                );
                d.kind.store(KIND_LARGE, Ordering::Release);
                Ok(b)
            })
        };
        let got = match take(false) {
            Err(AllocError::Watermark) if r.memalloc => self.through_gate(|| take(true)),
            res => res,
        };
        match got {
            Ok(b) => Ok((self.arena.page_addr(b.idx), b.zeroed)),
            Err(e) => Err(e),
        }
    }

    fn alloc_huge(
        &self,
        size: usize,
        align: usize,
        r: Rights,
    ) -> Result<(*mut u8, bool), AllocError> {
        // A zero-size request (here only with an alignment above 4 MiB)
        // still gets a page: a zero-length mapping would be no mapping.
        let len = size
            .max(1)
            .checked_add(PAGE_SIZE - 1)
            .ok_or(AllocError::Layout)?
            & !(PAGE_SIZE - 1);
        let pages = len >> PAGE_SHIFT;
        let align = align.max(PAGE_SIZE);
        // One locked section charges the request and, when a cached mapping
        // fits, takes and records it: a reuse costs one lock round trip.
        let charge_and_reuse = |memalloc: bool| {
            // SAFETY: under the heap lock.
            self.with_lock(|| unsafe {
                let admit = self.arena.charge(pages, r.tier, memalloc)?;
                Ok((admit, self.reuse_cached_huge(len, align, r.tier, memalloc)))
            })
        };
        let (admit, cached) = match charge_and_reuse(false) {
            Err(AllocError::Watermark) if r.memalloc => {
                self.through_gate(|| charge_and_reuse(true))
            }
            res => res,
        }?;
        if let Some((addr, real)) = cached {
            return Ok(self.huge_granted(addr as *mut u8, real, admit, r, false));
        }
        let thp = self.config.huge_pages && len >= os::HUGE_PAGE_SIZE;
        let map_align = if thp {
            align.max(os::HUGE_PAGE_SIZE)
        } else {
            align
        };
        let Some(p) = os::reserve(len, map_align) else {
            // SAFETY: charged just above.
            self.with_lock(|| unsafe { self.arena.uncharge(pages) });
            return Err(AllocError::MapFailed);
        };
        if thp {
            // SAFETY: the whole mapping just made.
            unsafe { os::advise_huge_pages(p, len) };
        }
        // SAFETY: under the heap lock.
        if !self.with_lock(|| unsafe { self.huge_insert(p as usize, len) }) {
            // The table is full (many small mappings with alignments above
            // 4 MiB): refuse rather than probe forever.
            // SAFETY: charged above; the mapping is ours and unused.
            unsafe {
                self.with_lock(|| self.arena.uncharge(len >> PAGE_SHIFT));
                os::release(p, len);
            }
            return Err(AllocError::MapFailed);
        }
        Ok(self.huge_granted(p, len, admit, r, true))
    }

    /// A cached direct mapping for a charged request of `len` bytes at
    /// `align`, its extra length charged too (at the request's `tier`,
    /// with the reserve only if `memalloc`: a caller without the right
    /// must not take pages below `min` this way either) and the mapping
    /// recorded in the table; `None` (nothing taken) when none fits, the
    /// extra cannot be charged, or the table is full.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    unsafe fn reuse_cached_huge(
        &self,
        len: usize,
        align: usize,
        tier: Tier,
        memalloc: bool,
    ) -> Option<(usize, usize)> {
        // SAFETY: under the heap lock (caller).
        unsafe {
            // Checked first, so that the insert below cannot fail.
            if self.huge_used.get() >= self.huge_mask {
                return None;
            }
            let (addr, real) = self.huge_cache.take(len, align)?;
            // The extra length (at most a quarter) is charged too.
            if self
                .arena
                .charge((real - len) >> PAGE_SHIFT, tier, memalloc)
                .is_err()
            {
                let mut out = [(0, 0); huge_cache::SLOTS + 1];
                let n = self.huge_cache.keep(addr, real, &mut out);
                debug_assert_eq!(n, 0);
                return None;
            }
            let inserted = self.huge_insert(addr, real);
            debug_assert!(inserted);
            Some((addr, real))
        }
    }

    /// Counts a direct mapping of `len` bytes handed out; returns it with
    /// whether it is known to be zero.
    fn huge_granted(
        &self,
        p: *mut u8,
        len: usize,
        admit: Admit,
        r: Rights,
        zeroed: bool,
    ) -> (*mut u8, bool) {
        // Direct mappings are counted as granted but never as reserve pages:
        // they go back to the budget the moment they are freed.
        self.counters.grant(if admit == Admit::Reserve {
            Tier::Memalloc
        } else {
            r.tier
        });
        self.counters.huge_bytes.fetch_add(len, Ordering::Relaxed);
        (p, zeroed)
    }

    /// Records a direct mapping; false if the table is full (it keeps one
    /// slot empty, so that every probe ends).
    ///
    /// # Safety
    /// The caller holds the heap lock.
    unsafe fn huge_insert(&self, addr: usize, len: usize) -> bool {
        // SAFETY: under the heap lock (caller).
        let used = unsafe { self.huge_used.get() };
        if used >= self.huge_mask {
            return false;
        }
        let mut i = hash(addr) & self.huge_mask;
        // SAFETY: indices are masked into the table of huge_mask + 1 slots,
        // at least one of them empty; under the heap lock.
        unsafe {
            while (*self.huge.add(i)).addr != 0 {
                i = (i + 1) & self.huge_mask;
            }
            *self.huge.add(i) = HugeEntry { addr, len };
            self.huge_used.set(used + 1);
        }
        true
    }

    /// Finds (and with `remove`, removes) a direct mapping; returns its length.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn huge_find(&self, addr: usize, remove: bool) -> Option<usize> {
        let mut i = hash(addr) & self.huge_mask;
        // SAFETY: indices are masked into the table; under the heap lock.
        unsafe {
            loop {
                let e = *self.huge.add(i);
                if e.addr == 0 {
                    return None;
                }
                if e.addr == addr {
                    if remove {
                        self.huge_remove_at(i);
                    }
                    return Some(e.len);
                }
                i = (i + 1) & self.huge_mask;
            }
        }
    }

    /// Linear-probing deletion with backward shift (no tombstones).
    ///
    /// # Safety
    /// The caller holds the heap lock; `hole` is an occupied slot.
    unsafe fn huge_remove_at(&self, mut hole: usize) {
        let mask = self.huge_mask;
        // SAFETY: indices are masked into the table; under the heap lock.
        unsafe {
            let mut j = hole;
            loop {
                j = (j + 1) & mask;
                let e = *self.huge.add(j);
                if e.addr == 0 {
                    break;
                }
                let home = hash(e.addr) & mask;
                // Move e into the hole unless its home lies cyclically in (hole, j].
                let between = if hole <= j {
                    hole < home && home <= j
                } else {
                    hole < home || home <= j
                };
                if !between {
                    *self.huge.add(hole) = e;
                    hole = j;
                }
            }
            *self.huge.add(hole) = HugeEntry { addr: 0, len: 0 };
            self.huge_used.set(self.huge_used.get() - 1);
        }
    }

    // ---------------------------------------------------------------- free

    /// Frees any pointer this heap handed out; `tc` is the caller's cache.
    ///
    /// # Safety
    /// `p` was returned by this heap and is not used after; `tc` is the
    /// caller's cache of this heap.
    pub(crate) unsafe fn free(&self, tc: &mut ThreadCache, p: *mut u8) {
        let Some(idx) = self.arena.page_of(p) else {
            // SAFETY: forwarded.
            return unsafe { self.free_huge(p) };
        };
        let d = self.arena.desc(idx);
        match d.kind() {
            KIND_LARGE => {
                if p != self.arena.page_addr(idx) {
                    fatal(
                        "invalid free (pointer inside a large allocation)",
                        p as usize,
                    );
                }
                if self.park_block(tc, idx, d) {
                    return;
                }
                self.with_lock(|| {
                    if d.kind() != KIND_LARGE {
                        fatal("double free (large allocation)", p as usize);
                    }
                    if d.has_flag(FLAG_RESERVE) {
                        d.set_flag(FLAG_RESERVE, false);
                        self.arena
                            .reserve_pages
                            .fetch_sub(1 << d.order(), Ordering::Relaxed);
                    }
                    // SAFETY: under the heap lock; the block is the caller's.
                    unsafe { self.arena.free(idx, d.order()) };
                });
            }
            KIND_CACHED => fatal("double free (large allocation)", p as usize),
            KIND_SLAB | KIND_TAIL => {
                let s = self
                    .arena
                    .desc(idx - d.back.load(Ordering::Relaxed) as usize);
                if s.kind() != KIND_SLAB {
                    fatal(
                        "invalid or double free (pointer in no live allocation)",
                        p as usize,
                    );
                }
                let class = slab::class_index(s);
                check_object_start(s, class, p);
                #[cfg(feature = "debug")]
                {
                    if !slab::debug::is_live(s, p) {
                        fatal("double free (the object is not live)", p as usize);
                    }
                    // SAFETY: `p` is a live object start of `s`.
                    unsafe { slab::debug::check_redzone(s, p) };
                }
                let owner = s.owner.load(Ordering::Relaxed);
                if tc.owns(owner) {
                    // SAFETY: we own the slab; `p` is one of its objects.
                    unsafe { tc.free_local(s, p) };
                    return;
                }
                // Another's object stays with this thread when it can, for
                // its next allocation of the class (`foreign.rs`).
                // SAFETY: `p` is a live object start of `s` (checked above),
                // given up by the caller; `tc` belongs to this heap.
                let listed = unsafe { self.list_foreign(tc, s, class, p) };
                if !listed {
                    // SAFETY: `p` is a live object of `s` (caller).
                    unsafe { self.free_remote(s, p) };
                }
            }
            _ => fatal(
                "invalid or double free (pointer in no live allocation)",
                p as usize,
            ),
        }
    }

    /// Frees an object of a slab the caller does not own.
    ///
    /// # Safety
    /// `p` is a live object of slab `s`.
    #[inline]
    pub(crate) unsafe fn free_remote(&self, s: &PageDesc, p: *mut u8) {
        // Read before the push: once `p` is pushed the slab may be emptied,
        // released and carved anew by other threads.
        // Fixed while the slab has live objects (`p` is one).
        let cap = slab::capacity(s);
        // SAFETY: forwarded from the caller.
        let w = unsafe { remote::push(s, p, self.slabs.key, cap) };
        if w & DETACHED != 0 {
            self.after_detached_push(s, w, 1, cap);
        }
    }

    /// Pushes a remote batch's chain onto its slab's remote stack.
    ///
    /// # Safety
    /// The chain came from a `RemoteBatch` of a cache of this heap: its
    /// objects are distinct live objects of its slab, given up.
    #[inline(never)]
    pub(crate) unsafe fn free_chain(&self, c: Chain) {
        // SAFETY: the chain's slab is a live slab of this heap (its objects
        // are live); read before the push, as in `free_remote`.
        let s = unsafe { &*c.slab };
        let cap = slab::capacity(s);
        // SAFETY: forwarded from the caller.
        let w = unsafe { remote::push_chain(s, c.head, c.tail, c.objects, self.slabs.key, cap) };
        if w & DETACHED != 0 {
            self.after_detached_push(s, w, c.objects, cap);
        }
    }

    /// After a remote push of `k` objects onto the detached slab `s` (the
    /// word was `w` before it, the capacity is `cap`): settles the slab
    /// when the push freed its last live object or brought its free
    /// objects to the listing threshold. (Inline: a push onto a detached
    /// slab, most of the frees of a thread tearing down what exited
    /// threads built, nearly always finds no settle to do; the settle is
    /// out of line.)
    #[inline(always)]
    fn after_detached_push(&self, s: &PageDesc, w: u64, k: u32, cap: u32) {
        let k = if crate::model::fault_injected!(ChainCountedAsOne) {
            1
        } else {
            k
        };
        let n = rcnt(w) + k;
        // SAFETY: `s` was a slab's first page at the caller's push, so the
        // descriptor after it exists. (The slab may have been released,
        // or carved anew, since: the count is then stale or another's, a
        // harmless extra settle, which decides from the slab's state.)
        let used = unsafe { s.owner_line() }.used.load(Ordering::Acquire);
        // Each push adds its objects to the free count, so exactly one
        // pusher sees the count cross the listing threshold. (A stale
        // `used` after a claim only adds a harmless extra settle, or skips
        // one that the new owner does not need.)
        let avail = cap.saturating_sub(used.saturating_sub(n));
        let before = avail.saturating_sub(k);
        let threshold = slab::list_threshold(cap);
        if n == used || (before < threshold && avail >= threshold) {
            self.settle_after_push(s);
        }
    }

    /// Settles the detached slab `s` under the heap lock, for
    /// [`HeapInner::after_detached_push`].
    #[cold]
    #[inline(never)]
    fn settle_after_push(&self, s: &PageDesc) {
        // SAFETY: `s` is a descriptor of this heap; under the lock.
        self.with_lock(|| unsafe { slab::settle(&self.arena, &self.slabs, s) });
    }

    /// Parks the ordinary large block at `idx` (descriptor `d`, kind
    /// `LARGE`, being freed) in `tc` or in the heap's block cache, without
    /// a lock; false: not parked (a reserve block, no room, or memory
    /// short), the caller frees it to the arena.
    #[inline]
    fn park_block(&self, tc: &mut ThreadCache, idx: usize, d: &PageDesc) -> bool {
        if d.has_flag(FLAG_RUN) {
            self.absorb_run(idx, d);
        }
        if d.has_flag(FLAG_RESERVE) {
            return false;
        }
        if tc.park_large(idx, d.order()) {
            d.kind.store(KIND_CACHED, Ordering::Relaxed);
            return true;
        }
        // Parked only while free pages are above `low`: under pressure the
        // pages go back to the free count, where the watermarks govern
        // who gets them.
        if tc.per_thread()
            && self.block_cache.caches(d.order())
            && self.arena.free_pages() >= self.arena.marks.low
        {
            // Published by the slot's release: set it first.
            d.kind.store(KIND_CACHED, Ordering::Relaxed);
            if self.block_cache.park(idx, d.order()) {
                return true;
            }
            d.kind.store(KIND_LARGE, Ordering::Relaxed);
        }
        false
    }

    /// Parks a large block that `p` starts and whose descriptor `d` the
    /// global allocator's inline free path found (see
    /// [`HeapInner::park_block`]); false: not such a block, or not parked
    /// (the full free path decides and reports).
    ///
    /// # Safety
    /// `d` is a descriptor of this heap's arena; `p` was returned by this
    /// heap and is not used after if this returns true; `tc` belongs to
    /// this heap and to the caller.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn try_park_block(
        &self,
        tc: &mut ThreadCache,
        d: &PageDesc,
        p: *mut u8,
    ) -> bool {
        let idx = slab::slab_index(&self.arena, d);
        d.kind() == KIND_LARGE && p == self.arena.page_addr(idx) && self.park_block(tc, idx, d)
    }

    /// Frees a direct mapping (a pointer outside the arena).
    ///
    /// # Safety
    /// As for [`HeapInner::free`].
    unsafe fn free_huge(&self, p: *mut u8) {
        let mut unmap = [(0, 0); huge_cache::SLOTS + 1];
        // SAFETY: under the heap lock.
        let found = self.with_lock(|| unsafe {
            let len = self.huge_find(p as usize, true)?;
            self.arena.uncharge(len >> PAGE_SHIFT);
            self.counters.huge_bytes.fetch_sub(len, Ordering::Relaxed);
            Some(self.huge_cache.keep(p as usize, len, &mut unmap))
        });
        let Some(n) = found else {
            fatal("invalid free (pointer not from this heap)", p as usize)
        };
        for &(addr, len) in &unmap[..n] {
            // SAFETY: mappings of ours that nothing uses any more.
            unsafe { os::release(addr as *mut u8, len) };
        }
    }

    /// The usable size of an allocation.
    pub(crate) fn usable_size(&self, p: *const u8) -> Option<usize> {
        match self.arena.page_of(p) {
            None => self.with_lock(|| {
                // SAFETY: under the heap lock.
                unsafe { self.huge_find(p as usize, false) }
            }),
            Some(idx) => {
                let d = self.arena.desc(idx);
                match d.kind() {
                    KIND_LARGE => Some(PAGE_SIZE << d.order()),
                    KIND_SLAB | KIND_TAIL => {
                        let s = self
                            .arena
                            .desc(idx - d.back.load(Ordering::Relaxed) as usize);
                        if s.kind() != KIND_SLAB {
                            return None;
                        }
                        #[cfg(feature = "debug")]
                        if slab::debug::is_live(s, p) {
                            // SAFETY: `p` is a live object start of `s`.
                            return Some(unsafe { slab::debug::stored_size(s, p) });
                        }
                        Some(CLASS_SIZE[s.class.load(Ordering::Relaxed) as usize] as usize)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Whether `p` is an object of a reserve-backed slab.
    pub(crate) fn is_reserve_backed(&self, p: *const u8) -> bool {
        let Some(idx) = self.arena.page_of(p) else {
            return false;
        };
        let d = self.arena.desc(idx);
        match d.kind() {
            KIND_LARGE => d.has_flag(FLAG_RESERVE),
            KIND_SLAB | KIND_TAIL => {
                let s = self
                    .arena
                    .desc(idx - d.back.load(Ordering::Relaxed) as usize);
                s.kind() == KIND_SLAB && s.has_flag(FLAG_RESERVE)
            }
            _ => false,
        }
    }

    // ---------------------------------------------------------------- front

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

    /// What `tc` keeps for `layout` without the heap lock: an object on its
    /// foreign list of the class (`foreign.rs`), or a parked large block
    /// (see [`HeapInner::take_parked`]). For the global allocator.
    ///
    /// # Safety
    /// `tc` belongs to this heap and to the caller.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn take_cached(
        &self,
        tc: &mut ThreadCache,
        layout: Layout,
    ) -> Option<*mut u8> {
        if layout.size() <= crate::slab::class::MAX_SMALL_SIZE && layout.align() <= PAGE_SIZE {
            // (Under `debug` the lists are off and classes include the red
            // zone: the slow path decides.)
            if cfg!(feature = "debug") {
                return None;
            }
            let class = class_for(layout.size(), layout.align())?;
            // SAFETY: as guaranteed by the caller.
            let p = unsafe { self.pop_foreign(tc, class) };
            return (!p.is_null()).then_some(p);
        }
        self.take_parked(tc, layout)
    }

    /// An object of `class` on `tc`'s foreign list (`foreign.rs`), if any,
    /// with nothing called out of line. For the global allocator, whose
    /// inline path knows the class and found the class's active slab
    /// empty: with a drain pending this takes nothing, and the slow path
    /// that follows (`alloc_small`, which the empty slab leads to
    /// `alloc_small_slow`) answers the drain, giving back what `tc` holds.
    ///
    /// # Safety
    /// `tc` belongs to this heap and to the caller; `class < NUM_CLASSES`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn take_foreign(
        &self,
        tc: &mut ThreadCache,
        class: usize,
    ) -> Option<*mut u8> {
        if !crate::foreign::ENABLED || self.drain_pending(tc) {
            return None;
        }
        // SAFETY: as guaranteed by the caller; the lists use the heap's key.
        let p = unsafe { tc.foreign.pop(&self.arena, class, self.slabs.key) };
        (!p.is_null()).then_some(p)
    }

    /// Whether a drain that `tc` has not answered yet is pending: its slow
    /// path must flush the foreign lists, not use them.
    #[inline]
    fn drain_pending(&self, tc: &ThreadCache) -> bool {
        tc.drain_seen != self.reclaim.drain_gen.load(Ordering::Relaxed)
    }

    /// Lists `p`, an object of the slab `s` that `tc` does not own, on
    /// `tc`'s foreign list when memory is not short, no drain is pending
    /// and there is room; false: nothing done.
    ///
    /// # Safety
    /// `p` is a live object start of `s`, a slab of this heap, given up by
    /// the caller; `class` is the slab's class (`slab::class_index`); `tc`
    /// belongs to this heap and to the caller.
    #[inline]
    pub(crate) unsafe fn list_foreign(
        &self,
        tc: &mut ThreadCache,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
    ) -> bool {
        // SAFETY: `tc` belongs to this heap and to the caller.
        if !tc.per_thread() || !unsafe { self.may_hold(tc) } {
            return false;
        }
        // SAFETY: as guaranteed by the caller; the lists use the heap's key.
        let listed = unsafe { tc.foreign.push(s, class, p, self.slabs.key) };
        if !listed && tc.foreign.freeing_only() {
            // SAFETY: as guaranteed by the caller.
            unsafe { self.give_back_held(tc) };
        }
        listed
    }

    /// Whether `tc` may hold objects of slabs it does not own (on its
    /// foreign lists or in its remote batch): not while memory is short or
    /// a drain is pending, since a held object pins its slab, which
    /// reclaim could otherwise release. When it may not, this gives back
    /// everything `tc` holds.
    ///
    /// # Safety
    /// `tc` belongs to this heap and to the caller.
    #[inline]
    unsafe fn may_hold(&self, tc: &mut ThreadCache) -> bool {
        if self.must_give_back(tc) {
            // SAFETY: as guaranteed by the caller.
            unsafe { self.give_back_held(tc) };
            return false;
        }
        true
    }

    /// Whether `tc` may list a freed object without reading its slab's
    /// descriptor (`ForeignLists::unchecked_room`): no slab of this heap
    /// is reserve-backed, so the object is of an ordinary one, memory is
    /// not short and no drain is pending.
    ///
    /// (The count of reserve slabs is read relaxed. A reserve slab's
    /// count went up before any of its objects was handed out, and the
    /// free of such an object happens after its allocation, so the read
    /// sees that slab counted, unless it was unreserved since, which makes
    /// its objects ordinary. The pop checks the flag again anyway.)
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn may_list_unchecked(&self, tc: &ThreadCache) -> bool {
        self.slabs.reserve_slabs.load(Ordering::Relaxed) == 0 && !self.must_give_back(tc)
    }

    /// Whether `tc` must give back what it holds of others' slabs (and
    /// hold nothing more): memory is short or a drain is pending.
    #[inline(always)]
    pub(crate) fn must_give_back(&self, tc: &ThreadCache) -> bool {
        self.arena.free_pages() < self.arena.marks.low || self.drain_pending(tc)
    }

    /// Holds `p`, an object of the slab `s` that `tc` does not own, with
    /// nothing called out of line: onto the foreign list when the list
    /// takes it, else into the remote batch's chain of its class when that
    /// chain is empty or of `s` with room. (A detached slab's object that
    /// the list refuses is batched too: the chain's push settles the slab
    /// once for all its objects.) For the global allocator's free path,
    /// which leaves the rest (pushing a chain, giving back, settling a
    /// slab) to out-of-line code, and for [`HeapInner::hold`]. The caller
    /// has checked the two gates: `tc` is a per-thread cache, and memory
    /// is not short and no drain is pending ([`HeapInner::must_give_back`]
    /// is false; where it is true the caller gives back instead).
    ///
    /// # Safety
    /// As for [`HeapInner::list_foreign`]; the gates hold.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn try_hold(
        &self,
        tc: &mut ThreadCache,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
    ) -> Hold {
        let key = self.slabs.key;
        // SAFETY: as guaranteed by the caller; the lists use the heap's
        // key.
        if unsafe { tc.foreign.push(s, class, p, key) } {
            return Hold::Held;
        }
        if tc.foreign.freeing_only() {
            return Hold::GiveBack;
        }
        if !crate::remote_batch::ENABLED || s.has_flag(FLAG_RESERVE) {
            return Hold::Remote;
        }
        // SAFETY: as guaranteed by the caller.
        if unsafe { tc.remote_batch.add_in_place(s, class, p, key) } {
            Hold::Held
        } else if tc.remote_batch.bypass() {
            Hold::Defer
        } else {
            Hold::NewChain
        }
    }

    /// Holds `p` as [`HeapInner::try_hold`] does, after checking its
    /// gates, and does what that leaves to out-of-line code: when memory
    /// is short or a drain is pending it gives back everything `tc`
    /// holds; when the chain of `p`'s class is of another slab or full it
    /// pushes that chain and starts a new one with `p`. False: not held,
    /// `p` goes onto its slab's remote stack (as for a cache that is not
    /// per-thread).
    ///
    /// # Safety
    /// As for [`HeapInner::list_foreign`].
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn hold(
        &self,
        tc: &mut ThreadCache,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
    ) -> bool {
        let hold = if !tc.per_thread() {
            Hold::Remote
        } else if self.must_give_back(tc) {
            Hold::GiveBack
        } else {
            // SAFETY: as guaranteed by the caller; the gates were checked
            // just above.
            unsafe { self.try_hold(tc, s, class, p) }
        };
        match hold {
            Hold::Held => true,
            Hold::Remote => false,
            Hold::GiveBack => {
                // SAFETY: as guaranteed by the caller.
                unsafe { self.give_back_held(tc) };
                false
            }
            Hold::NewChain => {
                // SAFETY: as guaranteed by the caller.
                unsafe { self.start_chain(tc, s, p) };
                true
            }
            Hold::Defer => {
                // SAFETY: as guaranteed by the caller.
                unsafe { self.defer_free(tc, s, p) };
                true
            }
        }
    }

    /// Does what [`Hold::NewChain`] asks: pushes the chain of `p`'s class
    /// and starts a new one with `p`.
    ///
    /// # Safety
    /// As for [`HeapInner::try_hold`], which returned `NewChain` for `p`.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn start_chain(&self, tc: &mut ThreadCache, s: &PageDesc, p: *mut u8) {
        if let Some(c) = tc.remote_batch.restart(s, slab::class_index(s), p) {
            // SAFETY: a chain of this cache's batch.
            unsafe { self.free_chain(c) };
        }
    }

    /// Does what [`Hold::Defer`] asks: holds `p` back and pushes the free
    /// held back longest.
    ///
    /// # Safety
    /// As for [`HeapInner::try_hold`], which returned `Defer` for `p`.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) unsafe fn defer_free(&self, tc: &mut ThreadCache, s: &PageDesc, p: *mut u8) {
        // SAFETY: forwarded from the caller.
        if let Some((s, p)) = unsafe { tc.remote_batch.defer(s, p) } {
            // SAFETY: a free held back: a live object of its slab, a live
            // slab of this heap.
            unsafe { self.free_remote(&*s, p) };
        }
    }

    /// Adds `p`, an object of the ordinary slab `s` that `tc` does not
    /// own, to `tc`'s remote batch (`remote_batch.rs`), pushing the chain
    /// it ends.
    ///
    /// # Safety
    /// As for [`HeapInner::list_foreign`].
    #[inline]
    pub(crate) unsafe fn add_to_batch(&self, tc: &mut ThreadCache, s: &PageDesc, p: *mut u8) {
        let class = slab::class_index(s);
        // SAFETY: as guaranteed by the caller; the batch uses the heap's key.
        if let Some(c) = unsafe { tc.remote_batch.add(s, class, p, self.slabs.key) } {
            // SAFETY: a chain of this cache's batch.
            unsafe { self.free_chain(c) };
        }
    }

    /// Returns what `tc`'s foreign lists and remote batch hold to the
    /// slabs (out of line: rare, and kept out of the list paths' frames).
    ///
    /// # Safety
    /// `tc` belongs to this heap and to the caller.
    #[cold]
    #[inline(never)]
    unsafe fn give_back_held(&self, tc: &mut ThreadCache) {
        let freeing_only = tc.foreign.freeing_only();
        // SAFETY: as guaranteed by the caller.
        unsafe { tc.flush_held(self) };
        if freeing_only {
            tc.foreign.forget_classes();
        }
    }

    /// An object of `class` from `tc`'s foreign list, or null.
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `tc` belongs to this heap and to the caller.
    #[inline(always)]
    unsafe fn pop_foreign(&self, tc: &mut ThreadCache, class: usize) -> *mut u8 {
        if !crate::foreign::ENABLED {
            return core::ptr::null_mut();
        }
        if self.drain_pending(tc) {
            // (The slow path that follows answers the drain in full.)
            // SAFETY: as guaranteed by the caller.
            unsafe { self.give_back_held(tc) };
            return core::ptr::null_mut();
        }
        // SAFETY: as guaranteed by the caller; the lists use the heap's key.
        let p = unsafe { tc.foreign.pop(&self.arena, class, self.slabs.key) };
        if p.is_null() && tc.foreign.reserve_listed() {
            // A reserve object blocks a list: back to its slab with the
            // rest.
            // SAFETY: as guaranteed by the caller.
            unsafe { self.give_back_held(tc) };
        }
        p
    }

    /// A large block of the right order parked in `tc` (or, for the
    /// process heap's caches, in the heap's block cache), if any.
    #[inline]
    pub(crate) fn take_parked(&self, tc: &mut ThreadCache, layout: Layout) -> Option<*mut u8> {
        if layout.size() <= crate::slab::class::MAX_SMALL_SIZE && layout.align() <= PAGE_SIZE {
            return None; // served by slabs
        }
        if layout.size() > MAX_BLOCK || layout.align() > MAX_BLOCK {
            return None; // a direct mapping
        }
        let order = request_order(layout);
        let idx = match tc.take_large(order) {
            Some(idx) => idx,
            None if tc.per_thread() => self.block_cache.take(order)?,
            None => return None,
        };
        self.arena
            .desc(idx)
            .kind
            .store(KIND_LARGE, Ordering::Relaxed);
        Some(self.arena.page_addr(idx))
    }

    /// Frees a large block parked in a thread cache.
    pub(crate) fn free_parked(&self, idx: usize) {
        let d = self.arena.desc(idx);
        self.with_lock(|| {
            d.kind.store(KIND_LARGE, Ordering::Relaxed);
            // SAFETY: under the heap lock; the parked block is the cache's.
            unsafe { self.arena.free(idx, d.order()) };
        });
    }

    /// `attempt` with reclaim behind it (see `reclaim`): the allocation, or
    /// a block captured for it during direct reclaim. Returns the pointer
    /// and whether it is known to be zero.
    pub(crate) fn alloc_reclaiming(
        &self,
        layout: Layout,
        flags: AllocFlags,
        attempt: &mut dyn FnMut() -> Result<(*mut u8, bool), AllocError>,
        flush_own: &mut dyn FnMut(),
    ) -> Result<(*mut u8, bool), AllocError> {
        match self.alloc_slowpath(flags, request_order(layout), attempt, flush_own)? {
            Got::Alloc(v) => Ok(v),
            Got::Captured(idx) => Ok((self.adopt_captured(idx), false)),
        }
    }

    /// The new block for a `realloc` growth that could not stay in place,
    /// when it should be a page block: `new_size` of at least a page, a
    /// page alignment at most, and no direct mapping. It heads a growth
    /// run ([`HeapInner::open_run`]), so the growths that usually follow
    /// happen in place instead of copying. `None` sends the caller to the
    /// ordinary allocation path (which can reclaim; its block may still
    /// grow in place over free buddies); the old block is untouched.
    pub(crate) fn alloc_growth(
        &self,
        old_size: usize,
        new_size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Option<*mut u8> {
        if new_size <= old_size
            || !(GROWTH_BLOCK_MIN..=MAX_BLOCK).contains(&new_size)
            || align > PAGE_SIZE
        {
            return None;
        }
        self.open_run(order_for_pages(new_size.div_ceil(PAGE_SIZE)), flags)
    }

    /// A block of `order` for a growth that moved, with a growth run above
    /// it (`growth_run.rs`): a block of the run's top order from the block
    /// cache (no lock) or the arena, of which the caller gets the first
    /// `2^order` pages. `None`: no run for this request (runs disabled by
    /// a small budget, memory not plentiful, or no block), and nothing
    /// taken.
    fn open_run(&self, order: usize, flags: AllocFlags) -> Option<*mut u8> {
        let top = self.runs.top_for(order)?;
        // Every slot taken: no run (none is evicted, see `growth_run`).
        if !self.runs.has_room() {
            return None;
        }
        // Held room is a preference, never worth memory from below `high`.
        if self.arena.free_pages() < self.arena.marks.high + (1 << top) {
            return None;
        }
        let idx = match self.block_cache.take(top) {
            Some(idx) => idx,
            None => {
                let r = resolve(flags);
                self.with_lock(|| {
                    // SAFETY: under the heap lock.
                    let b = unsafe { self.arena.alloc(top, r.tier, false) }.ok()?;
                    self.granted(r, b.admit, 1 << top);
                    Some(b.idx)
                })?
            }
        };
        // The block is ours alone until the run is published: set up the
        // held blocks, then the buffer's head.
        for o in order..top {
            let hd = self.arena.desc(idx + (1 << o));
            hd.back.store(0, Ordering::Relaxed);
            hd.flags.store(0, Ordering::Relaxed);
            hd.order.store(o as u8, Ordering::Relaxed);
            hd.kind.store(KIND_CACHED, Ordering::Relaxed);
        }
        let d = self.arena.desc(idx);
        d.back.store(0, Ordering::Relaxed);
        d.owner.store(0, Ordering::Relaxed);
        d.flags.store(FLAG_RUN, Ordering::Relaxed);
        d.order.store(order as u8, Ordering::Relaxed);
        d.kind.store(KIND_LARGE, Ordering::Release);
        let run = Run {
            head: idx,
            order,
            top,
        };
        match self.runs.open(run) {
            Some(slot) => d.class.store(slot as u8, Ordering::Relaxed),
            None => {
                // The last slot went to another opener since the check
                // above: the caller gets the whole block, with no run
                // (rare, and better than a held block pinned apart).
                self.join_held(idx, d, order, top);
                d.set_flag(FLAG_RUN, false);
            }
        }
        Some(self.arena.page_addr(idx))
    }

    /// Grows the large block at `idx` (descriptor `d`, held by the caller,
    /// with `RUN` set) from `order` to `want` over its run's held blocks;
    /// false if its run is gone or holds less.
    #[inline]
    fn grow_run(&self, idx: usize, d: &PageDesc, order: usize, want: usize) -> bool {
        if self.runs.grow(run_slot(d), idx, order, want) != Grow::Grown {
            return false;
        }
        // The held blocks of orders `order..want` are ours now.
        self.join_held(idx, d, order, want);
        true
    }

    /// Makes the held blocks of orders `from..to` above the large block at
    /// `idx` (descriptor `d`) part of it: the block is then of order `to`.
    /// The caller took those held blocks out of the block's run.
    #[inline]
    fn join_held(&self, idx: usize, d: &PageDesc, from: usize, to: usize) {
        for o in from..to {
            self.arena
                .desc(idx + (1 << o))
                .kind
                .store(KIND_TAIL, Ordering::Relaxed);
        }
        d.order.store(to as u8, Ordering::Relaxed);
    }

    /// Grows `p`, live with `layout`, on page `idx` (descriptor `d`), to
    /// `new_size` if it heads a growth run: within its block or over the
    /// run's held blocks, with no lock. The `realloc` fast path for a
    /// growing `Vec`; `None` for any other block or case (the caller goes
    /// on with [`HeapInner::resize_in_place`]).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn grow_run_in_place(
        &self,
        p: *mut u8,
        idx: usize,
        d: &PageDesc,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // (A shrink goes the general way, which ends the run.)
        if !d.has_flag(FLAG_RUN)
            || d.kind() != KIND_LARGE
            || !(layout.size()..=MAX_BLOCK).contains(&new_size)
        {
            return None;
        }
        let order = d.order();
        let want = order_for_pages(new_size.div_ceil(PAGE_SIZE))
            .max(order_for_pages(layout.align() >> PAGE_SHIFT));
        (want <= order || self.grow_run(idx, d, order, want)).then_some(p)
    }

    /// The class of the slab on whose page `idx` (descriptor `d`) an
    /// object lies, if the page is a slab's.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn slab_class_at(&self, idx: usize, d: &PageDesc) -> Option<usize> {
        if !matches!(d.kind(), KIND_SLAB | KIND_TAIL) {
            return None;
        }
        let s = self
            .arena
            .desc(idx - d.back.load(Ordering::Relaxed) as usize);
        (s.kind() == KIND_SLAB).then(|| s.class.load(Ordering::Relaxed) as usize)
    }

    /// Frees the held blocks of `run`, taken out of its slot by the caller.
    fn release_run(&self, run: Run) {
        self.with_lock(|| {
            for o in run.order..run.top {
                // SAFETY: under the heap lock; taking the run out of its
                // slot made its held blocks the caller's, and each heads a
                // block of order `o` that nothing else uses.
                unsafe { self.arena.free(run.head + (1 << o), o) };
            }
        });
    }

    /// Ends the growth run of the large block at `idx` (descriptor `d`),
    /// held by the caller, if it has one: its held blocks go back to the
    /// arena.
    fn end_run(&self, idx: usize, d: &PageDesc) {
        d.set_flag(FLAG_RUN, false);
        if let Some(run) = self.runs.close(run_slot(d), idx, d.order()) {
            self.release_run(run);
        }
    }

    /// Takes back the growth run of the large block at `idx` (descriptor
    /// `d`) that the caller is freeing, if it has one: the held blocks join
    /// it, and it is freed as one block of the run's top order. (Out of
    /// line: it keeps the free path of ordinary large blocks small.)
    #[cold]
    #[inline(never)]
    fn absorb_run(&self, idx: usize, d: &PageDesc) {
        d.set_flag(FLAG_RUN, false);
        if let Some(run) = self.runs.close(run_slot(d), idx, d.order()) {
            self.join_held(idx, d, run.order, run.top);
        }
    }

    /// Resizes in place when the class or block allows.
    pub(crate) fn resize_in_place(
        &self,
        p: *mut u8,
        align: usize,
        new_size: usize,
        flags: AllocFlags,
    ) -> Option<*mut u8> {
        let Some(idx) = self.arena.page_of(p) else {
            return self.resize_huge(p, align, new_size, flags);
        };
        let d = self.arena.desc(idx);
        match d.kind() {
            KIND_LARGE => {
                // Below a page a slab object wastes less: move there.
                if !(GROWTH_BLOCK_MIN..=MAX_BLOCK).contains(&new_size) {
                    return None;
                }
                let order = d.order();
                let want = order_for_pages(new_size.div_ceil(PAGE_SIZE))
                    .max(order_for_pages(align >> PAGE_SHIFT));
                if want == order {
                    return Some(p);
                }
                if want > order && d.has_flag(FLAG_RUN) {
                    if self.grow_run(idx, d, order, want) {
                        return Some(p);
                    }
                    // Gone, or too small: the ordinary growth below.
                    self.end_run(idx, d);
                }
                if want > order {
                    let tier = resolve(flags).tier;
                    // SAFETY: under the heap lock; the block is the caller's.
                    let grown = self.with_lock(|| unsafe {
                        let ok = !d.has_flag(FLAG_RESERVE)
                            && self.arena.grow_in_place(idx, order, want, tier);
                        if ok {
                            d.order.store(want as u8, Ordering::Relaxed);
                        }
                        ok
                    });
                    return grown.then_some(p);
                }
                if want < order {
                    if d.has_flag(FLAG_RUN) {
                        self.end_run(idx, d);
                    }
                    // Shrink: free the upper halves.
                    self.with_lock(|| {
                        d.order.store(want as u8, Ordering::Relaxed);
                        if d.has_flag(FLAG_RESERVE) {
                            // The upper halves leave the reserve's count.
                            self.arena
                                .reserve_pages
                                .fetch_sub((1 << order) - (1 << want), Ordering::Relaxed);
                        }
                        for o in want..order {
                            let half = idx + (1 << o);
                            let hd = self.arena.desc(half);
                            hd.back.store(0, Ordering::Relaxed);
                            // SAFETY: under the heap lock; the upper halves
                            // belong to the caller's block and hold no data
                            // it keeps.
                            unsafe { self.arena.free(half, o) };
                        }
                    });
                    return Some(p);
                }
                None
            }
            KIND_SLAB | KIND_TAIL => {
                let s = self
                    .arena
                    .desc(idx - d.back.load(Ordering::Relaxed) as usize);
                let class = s.class.load(Ordering::Relaxed) as usize;
                // Under `debug` a small object always moves, so its red
                // zone is laid out anew.
                (!cfg!(feature = "debug") && class_for(new_size, align) == Some(class)).then_some(p)
            }
            _ => None,
        }
    }

    fn resize_huge(
        &self,
        p: *mut u8,
        align: usize,
        new_size: usize,
        flags: AllocFlags,
    ) -> Option<*mut u8> {
        if new_size <= MAX_BLOCK || align > PAGE_SIZE {
            return None;
        }
        let new_len = new_size.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
        // SAFETY: under the heap lock.
        let old_len = self.with_lock(|| unsafe { self.huge_find(p as usize, false) })?;
        if new_len == old_len {
            return Some(p);
        }
        // Growth in place never draws on the reserve; a memalloc caller that
        // needs it falls back to allocate-and-copy, which goes through the gate.
        let tier = resolve(flags).tier;
        if new_len > old_len {
            // SAFETY: under the heap lock.
            self.with_lock(|| unsafe {
                self.arena
                    .charge((new_len - old_len) >> PAGE_SHIFT, tier, false)
            })
            .ok()?;
        }
        // SAFETY: the mapping is live and the caller's; mremap keeps its data.
        let q = unsafe { os::remap(p, old_len, new_len) };
        self.with_lock(|| {
            // SAFETY: under the heap lock.
            unsafe {
                match q {
                    Some(q) => {
                        self.huge_find(p as usize, true);
                        // A slot was just freed: this cannot fail.
                        let _ = self.huge_insert(q as usize, new_len);
                        if new_len < old_len {
                            self.arena.uncharge((old_len - new_len) >> PAGE_SHIFT);
                        }
                    }
                    None if new_len > old_len => {
                        self.arena.uncharge((new_len - old_len) >> PAGE_SHIFT)
                    }
                    None => {}
                }
            }
        });
        if q.is_some() {
            if new_len > old_len {
                self.counters
                    .huge_bytes
                    .fetch_add(new_len - old_len, Ordering::Relaxed);
            } else {
                self.counters
                    .huge_bytes
                    .fetch_sub(old_len - new_len, Ordering::Relaxed);
            }
        }
        q
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

/// A private heap with its own budget, watermarks and slabs.
///
/// Allocation failures are errors, never aborts. Dropping the heap unmaps
/// all its memory: every pointer it handed out dangles afterwards.
///
/// ```
/// use lifeboat::{AllocFlags, Config, Heap};
/// use std::alloc::Layout;
///
/// let heap = Heap::new(Config::new().budget(16 << 20)).unwrap();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// let p = heap.alloc(layout, AllocFlags::NORMAL).unwrap();
/// unsafe { heap.dealloc(p, layout) };
/// ```
pub struct Heap {
    inner: NonNull<HeapInner>,
    reclaimer: Option<std::thread::JoinHandle<()>>,
}

// SAFETY: HeapInner is Send + Sync; the handle only points at it.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

/// Lets the background reclaimer thread hold the heap.
struct HeapPtr(NonNull<HeapInner>);
// SAFETY: HeapInner is Sync; `Heap::drop` joins the thread before unmapping.
unsafe impl Send for HeapPtr {}

impl Heap {
    /// Maps a heap of `config`'s budget (which must be at least 1 MiB).
    /// With [`Config::background_reclaim`], starts its reclaimer thread.
    pub fn new(config: Config) -> Result<Heap, Error> {
        let inner = HeapInner::create(&config, false)?;
        let mut heap = Heap {
            inner,
            reclaimer: None,
        };
        if config.background_reclaim {
            heap.reclaimer = Some(heap.spawn_reclaimer().map_err(|_| Error::MapFailed)?);
        }
        Ok(heap)
    }

    fn spawn_reclaimer(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let h = self.inner();
        h.reclaim.kswapd.running.store(true, Ordering::Release);
        let ptr = HeapPtr(self.inner);
        let ms = h.config.purge_interval_ms;
        std::thread::Builder::new()
            .name("lifeboat-reclaim".into())
            .spawn(move || {
                let ptr = ptr;
                // SAFETY: the heap outlives the thread (joined in Drop).
                unsafe { ptr.0.as_ref() }.kswapd_loop(ms)
            })
    }

    pub(crate) fn inner(&self) -> &HeapInner {
        // SAFETY: the heap lives as long as the handle.
        unsafe { self.inner.as_ref() }
    }

    /// Allocates `layout` under `flags` (plus this thread's scopes). Under
    /// pressure this reclaims (shrinkers, caches) before it fails.
    pub fn alloc(&self, layout: Layout, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let (p, _) = self.alloc_inner(layout, flags)?;
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    fn alloc_inner(
        &self,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<(*mut u8, bool), AllocError> {
        #[cfg(not(loom))]
        if crate::sync::holds_waited_lock() {
            // Re-entered (a signal handler) while the heap lock is held.
            return Err(AllocError::Reentered);
        }
        let h = self.inner();
        h.alloc_reclaiming(
            layout,
            flags,
            &mut || {
                // SAFETY: the shard cache belongs to this heap.
                h.with_shard(|tc| unsafe { h.alloc_with(tc, layout, flags) })
                    .unwrap_or(Err(AllocError::Reentered))
            },
            &mut || {
                // SAFETY: as above.
                h.with_shard(|tc| unsafe { tc.flush(h) });
            },
        )
    }

    /// Allocates zeroed memory.
    pub fn alloc_zeroed(
        &self,
        layout: Layout,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let (p, zeroed) = self.alloc_inner(layout, flags)?;
        if !zeroed {
            // SAFETY: the block is at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        NonNull::new(p).ok_or(AllocError::Layout)
    }

    /// Frees memory from [`Heap::alloc`].
    ///
    /// # Safety
    /// `ptr` came from this heap and is not used afterwards. (`layout` is
    /// not needed to find the block; it is taken for symmetry.)
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        let p = crate::arena::own_provenance(ptr.as_ptr());
        // Re-entered (a signal handler) while the heap lock is held, or
        // while every shard is taken: the block is leaked rather than wait
        // for a lock forever.
        #[cfg(not(loom))]
        if crate::sync::holds_waited_lock() {
            return;
        }
        let h = self.inner();
        // SAFETY: forwarded from the caller.
        h.with_shard(|tc| unsafe { h.free(tc, p) });
    }

    /// Resizes an allocation, in place when possible.
    ///
    /// # Safety
    /// `ptr` is a live allocation of this heap made with `layout`. On
    /// success the old pointer must not be used; on error it stays valid.
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let own = crate::arena::own_provenance(ptr.as_ptr());
        if let Some(p) = self
            .inner()
            .resize_in_place(own, layout.align(), new_size, flags)
        {
            return NonNull::new(p).ok_or(AllocError::Layout);
        }
        let new_layout =
            Layout::from_size_align(new_size, layout.align()).map_err(|_| AllocError::Layout)?;
        let q = match self
            .inner()
            .alloc_growth(layout.size(), new_size, layout.align(), flags)
        {
            Some(q) => NonNull::new(q).ok_or(AllocError::Layout)?,
            None => self.alloc(new_layout, flags)?,
        };
        // SAFETY: both blocks are live and distinct; the copy is bounded by
        // both sizes; no lock is held.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), q.as_ptr(), layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        Ok(q)
    }

    /// Bytes usable at `ptr`, or `None` if the heap did not hand it out.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        self.inner().usable_size(ptr)
    }

    /// Whether `ptr` is an object of a reserve-backed slab (for tests).
    pub fn is_reserve_backed(&self, ptr: *const u8) -> bool {
        self.inner().is_reserve_backed(ptr)
    }

    /// Checks every structure of the heap against the invariants its
    /// modules document (buddy lists, page descriptors, slabs and their
    /// free lists, partial lists, direct mappings, free-page and reserve
    /// accounting); see `verify.rs`. Takes every lock of the heap and
    /// allocates nothing. Exact on a quiescent heap: no allocation of this
    /// heap in flight on another thread.
    #[cfg(not(loom))]
    pub fn verify(&self) -> Result<(), crate::verify::VerifyError> {
        self.inner().verify()
    }

    /// A non-allocating snapshot.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// Registers a shrinker that reclaim of this heap will call.
    pub fn register_shrinker(&self, s: &'static dyn Shrinker) -> Result<(), RegisterError> {
        self.inner().reclaim.shrinkers.register(s)
    }

    /// Removes a shrinker; when this returns, no reclaim calls it any more.
    /// Returns false if it was not registered.
    pub fn unregister_shrinker(&self, s: &'static dyn Shrinker) -> bool {
        self.inner().reclaim.shrinkers.unregister(s)
    }

    /// Sets (or clears) the function called when reclaim has failed.
    pub fn set_oom_handler(&self, h: Option<OomHandler>) {
        self.inner().reclaim.set_oom_handler(h);
    }

    /// Returns every free block of the heap to the OS now; returns the
    /// bytes purged. (The background reclaimer does this on a timer.)
    pub fn purge(&self) -> usize {
        self.inner().purge(0)
    }

    /// Detaches the slabs cached by this heap's shared caches, so that empty
    /// ones go back to the arena.
    pub fn flush_caches(&self) {
        let h = self.inner();
        for shard in &h.shards {
            shard.lock.lock();
            // SAFETY: the shard lock gives exclusive use of its cache.
            unsafe {
                (*shard.cache.get()).flush(h);
                shard.lock.unlock();
            }
        }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        if let Some(t) = self.reclaimer.take() {
            self.inner().reclaim.kswapd.request_stop();
            let _ = t.join();
        }
        // SAFETY: the handle is the heap's only owner; `&mut self` proves no
        // borrow of it (and so no allocation of it in use through it) lives.
        unsafe { HeapInner::destroy(self.inner) };
    }
}

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("budget_pages", &self.inner().budget_pages)
            .finish()
    }
}

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
