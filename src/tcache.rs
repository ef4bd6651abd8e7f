//! Thread caches: per size class, the slab a thread allocates from.
//!
//! A `ThreadCache` is a value: the process heap keeps one per thread in a
//! `const` thread-local, private heaps keep a few behind locks (shards). Its
//! address is the owner id written into the slabs it owns.
//!
//! * `active[c]` is an ordinary slab owned by this cache, or the sentinel
//!   `empty` descriptor, whose local list is always empty: the fast path
//!   needs no null check and falls to the slow path on the sentinel.
//! * `reserve[c]` is a reserve-backed slab owned by this cache, or the
//!   sentinel. It is used only by the slow path and only for callers with
//!   memalloc rights, so the unprivileged fast path never sees it.
//! * Every slab this cache owns is in one of these slots; `flush` detaches
//!   them all, so nothing stays owned by a thread that is gone.
//! * Reserve slabs are owned under a second id, `id() | 1`: the free fast
//!   path compares the owner with `id()` only, so frees into reserve slabs
//!   always take the slow path, which releases an emptied reserve slab at
//!   once. The unprivileged fast path pays nothing for this.

use crate::arena::desc::{PageDesc, FLAG_RESERVE, KIND_SLAB};
use crate::heap::HeapInner;
use crate::slab::class::NUM_CLASSES;
use crate::slab::{self, pop_local};

/// Objects linked from the bump region per refill (bounded so a refill
/// touches about a page, not the whole slab).
const BUMP_BATCH: u32 = 64;

pub(crate) struct ThreadCache {
    pub(crate) active: [*const PageDesc; NUM_CLASSES],
    pub(crate) reserve: [*const PageDesc; NUM_CLASSES],
    pub(crate) empty: *const PageDesc,
    /// The heap's drain generation this cache last flushed for.
    pub(crate) drain_seen: usize,
}

impl ThreadCache {
    /// A cache whose slots all point at `empty`, a descriptor in the
    /// `UNUSED` state with an empty local list.
    pub(crate) const fn new(empty: *const PageDesc) -> Self {
        Self {
            active: [empty; NUM_CLASSES],
            reserve: [empty; NUM_CLASSES],
            empty,
            drain_seen: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// The owner id of this cache's reserve slabs.
    #[inline(always)]
    pub(crate) fn reserve_id(&self) -> usize {
        self.id() | 1
    }

    /// Whether this cache owns the slab with owner field `owner`.
    #[inline(always)]
    pub(crate) fn owns(&self, owner: usize) -> bool {
        owner & !1 == self.id()
    }

    /// Pops from the active slab of `class`; null if its list is empty.
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; the caller is the cache's thread (or holds its
    /// shard lock).
    #[inline(always)]
    pub(crate) unsafe fn alloc_fast(&mut self, class: usize) -> *mut u8 {
        // SAFETY: class is in range (caller); the slot is a live slab owned
        // by this cache or the sentinel.
        unsafe { pop_local(&**self.active.get_unchecked(class)) }
    }

    /// Refills the active (or, with `reserve`, the reserve) slot of `class`
    /// from its own slab: bump region, then remote frees. Returns an object,
    /// or null if the slab is full (it is then detached and the slot reset).
    ///
    /// # Safety
    /// As for [`ThreadCache::alloc_fast`]; `heap` owns the slabs.
    pub(crate) unsafe fn refill_slot(
        &mut self,
        heap: &HeapInner,
        class: usize,
        reserve: bool,
    ) -> *mut u8 {
        let slot = if reserve {
            &mut self.reserve[class]
        } else {
            &mut self.active[class]
        };
        // SAFETY: the slot holds a live descriptor.
        let s = unsafe { &**slot };
        if s.kind() != KIND_SLAB {
            return core::ptr::null_mut();
        }
        // SAFETY: we own `s`.
        unsafe {
            let p = pop_local(s);
            if !p.is_null() {
                return p;
            }
            if slab::refill_from_bump(&heap.arena, s, BUMP_BATCH)
                || slab::collect_remote(s, false) != 0
            {
                return pop_local(s);
            }
            // Full: give it up; remote frees will list it again.
            *slot = self.empty;
            slab::detach(s);
            heap.with_lock(|| slab::settle(&heap.arena, &heap.slabs, s));
        }
        core::ptr::null_mut()
    }

    /// Installs a freshly claimed or carved slab and pops from it.
    ///
    /// # Safety
    /// This cache owns `s`, the slot for its class is the sentinel.
    pub(crate) unsafe fn install(
        &mut self,
        heap: &HeapInner,
        class: usize,
        s: &PageDesc,
    ) -> *mut u8 {
        let reserve = s.has_flag(FLAG_RESERVE);
        if reserve {
            self.reserve[class] = s;
        } else {
            self.active[class] = s;
        }
        // SAFETY: we own `s`; it was just installed.
        unsafe { self.refill_slot(heap, class, reserve) }
    }

    /// Frees `p`, an object of slab `s` owned by this cache.
    ///
    /// # Safety
    /// `p` is a live object of `s`, and `self.owns(s.owner)`.
    pub(crate) unsafe fn free_local(&mut self, heap: &HeapInner, s: &PageDesc, p: *mut u8) {
        use crate::sync::Ordering;
        // SAFETY: we own the slab's local fields.
        unsafe {
            let used = s.used.load(Ordering::Relaxed);
            let head = s.free.get();
            if used == 0 || p == head {
                crate::diag::fatal(
                    "double free (object already on its slab's free list)",
                    p as usize,
                );
            }
            *(p as *mut *mut u8) = head;
            s.free.set(p);
            s.used.store(used - 1, Ordering::Relaxed);
            if used == 1 && s.has_flag(FLAG_RESERVE) {
                // An emptied reserve-backed slab goes back to the arena at
                // once, refilling the reserve.
                let class = s.class.load(Ordering::Relaxed) as usize;
                if core::ptr::eq(self.reserve[class], s) {
                    self.reserve[class] = self.empty;
                }
                slab::detach(s);
                heap.with_lock(|| slab::settle(&heap.arena, &heap.slabs, s));
            }
        }
    }

    /// Detaches every slab this cache owns (thread exit, reclaim).
    ///
    /// # Safety
    /// The caller is the cache's thread (or holds its shard lock).
    pub(crate) unsafe fn flush(&mut self, heap: &HeapInner) {
        for class in 0..NUM_CLASSES {
            for reserve in [false, true] {
                let slot = if reserve {
                    &mut self.reserve[class]
                } else {
                    &mut self.active[class]
                };
                // SAFETY: slots hold live descriptors.
                let s = unsafe { &**slot };
                if s.kind() == KIND_SLAB {
                    *slot = self.empty;
                    // SAFETY: we own `s`.
                    unsafe { slab::detach(s) };
                    // SAFETY: `s` is a descriptor of this heap.
                    heap.with_lock(|| unsafe { slab::settle(&heap.arena, &heap.slabs, s) });
                }
            }
        }
    }
}
