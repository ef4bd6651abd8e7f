//! The small-object path of a heap: thread-cache misses, slabs claimed or
//! carved under the tier's mark, and objects of reserve-backed slabs for
//! memalloc callers the mark refused.

use super::HeapInner;
use crate::arena::desc::PageDesc;
use crate::arena::watermark::{Admit, Tier};
use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::memalloc::{resolve, Rights};
use crate::slab;
use crate::slab::class::{NUM_CLASSES, SLAB_ORDER};
use crate::sync::Ordering;
use crate::tcache::ThreadCache;

impl HeapInner {
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
                let s = match slab::claim(arena, lists, class, true, slab::LOCK_HOLDER) {
                    Some(s) => {
                        self.counters.reserve_allocs.fetch_add(1, Ordering::Relaxed);
                        s
                    }
                    None => {
                        let b = arena.alloc(order, r.tier, true)?;
                        self.granted(r, b.admit, 1 << order);
                        if b.admit != Admit::Reserve {
                            let s = slab::carve(arena, lists, b.idx, class, tc.id(), false);
                            return Ok(Err(s));
                        }
                        slab::carve(arena, lists, b.idx, class, slab::LOCK_HOLDER, true)
                    }
                };
                // Never null: a fresh slab has all its objects, and
                // `settle` puts a slab on the reserve partial list, the
                // one claims take from, only with objects to give (were
                // it null, the caller is refused, below).
                let p = slab::take_object(arena, s, 1, key);
                slab::detach(s, key);
                slab::settle(arena, lists, s);
                Ok(Ok(p))
            }
        })?;
        match got {
            Ok(p) if p.is_null() => Err(AllocError::Watermark),
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
    /// serve everyone again: those with free objects move to the ordinary
    /// partial lists, spent ones become ordinary detached slabs. Then no
    /// reserve slab is left, and the layout path of `foreign.rs`, closed
    /// while any lives, opens again. Called by the small-object slow path
    /// (a request its thread's cache cannot serve). `Some(spent slabs
    /// lifted)` if it took the lock to lift (another thread may have
    /// lifted everything first), `None` if it did not.
    pub(crate) fn maybe_lift_reserve(&self) -> Option<usize> {
        if self.slabs.reserve_slabs.load(Ordering::Relaxed) == 0
            || self.arena.free_pages() <= self.arena.marks.high
        {
            return None;
        }
        Some(self.with_lock(|| {
            (0..NUM_CLASSES)
                // SAFETY: under the heap lock.
                .map(|class| unsafe { slab::unreserve_listed(&self.arena, &self.slabs, class) })
                .sum()
        }))
    }
}
