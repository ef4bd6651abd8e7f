//! Thread caches: per size class, the slab a thread allocates from.
//!
//! A `ThreadCache` is a value: the process heap keeps one per thread in a
//! `const` thread-local, private heaps keep a few behind locks (shards). Its
//! address is the owner id written into the slabs it owns.
//!
//! * `active[c]` is an ordinary slab owned by this cache, or the sentinel
//!   `empty` descriptor, whose local lists are always empty: the fast path
//!   needs no null check and falls to the slow path on the sentinel.
//! * No slot ever holds a reserve-backed slab: a caller with memalloc
//!   rights takes one object of such a slab inside one heap-lock round,
//!   which detaches the slab again (`HeapInner::alloc_from_reserve`). So
//!   neither fast path can meet one owned by its thread, and the frees
//!   that empty one, by any thread, return its pages to the reserve at
//!   once.
//! * `kept[c]` holds up to `KEEP` ordinary slabs that were full when the
//!   cache moved on from them. They stay owned, so this thread's frees into
//!   them stay local (no atomics); the slow path switches back to one as
//!   soon as it has free objects. The oldest gives way when a new one
//!   comes in and is detached, so remote frees into long-full slabs still
//!   find their way back through the partial lists.
//! * `retiring` holds that oldest kept slab, still owned, until the slow
//!   path that follows takes it (`take_retiring` detaches it) and settles
//!   it inside the lock round of its claim or carve (`HeapInner::new_slab`):
//!   one round where there were two.
//! * Every slab this cache owns is in one of these slots; `flush` detaches
//!   them all, so nothing stays owned by a thread that is gone.
//! * `large[o]` parks one freed block of order 4..=6 (64–256 KiB), the
//!   kernel's per-CPU page lists: a program that allocates and frees such
//!   buffers in a loop skips the heap lock and the buddy split and merge.
//!   Only the process heap's thread-local caches do this (`per_thread`);
//!   parked blocks count as allocated and go back on `flush` (thread exit,
//!   reclaim's drain; bigger blocks go to the heap's `block_cache`). A
//!   parked block's kind is `CACHED`, so a second free
//!   of it is caught.
//! * `foreign` lists objects this thread freed into slabs it does not
//!   own, for its own next allocations of their classes (`foreign.rs`);
//!   `flush` returns them to their slabs. Only `per_thread` caches list
//!   them: a private heap's shards are never flushed by a thread exit.

use crate::arena::desc::{PageDesc, KIND_SLAB};
use crate::foreign::ForeignLists;
use crate::heap::HeapInner;
use crate::remote_batch::RemoteBatch;
use crate::slab::class::NUM_CLASSES;
use crate::slab::{self, pop_local};

/// Most objects linked from the bump region per refill.
const BUMP_BATCH: u32 = 64;
/// Bytes of objects linked from the bump region per refill (at least 4
/// objects, at most `BUMP_BATCH`): the owner's own frees wait on `frees`
/// until the allocation list runs out, so a long list of fresh objects
/// would send a thread that frees and allocates through new memory
/// first. With 64 objects of any size, mstress ran 1.11-1.17x as long,
/// with 2-3 MB more peak RSS.
const BUMP_BYTES: u32 = 8192;
/// Full slabs per class kept owned (see the module docs).
const KEEP: usize = 4;
/// Slabs a flush detaches before it settles them under one lock round.
const SETTLE_BATCH: usize = 64;
/// Smallest and largest order of the per-thread large-block cache.
pub(crate) const LARGE_MIN_ORDER: usize = 4;
pub(crate) const LARGE_MAX_ORDER: usize = 6;

pub(crate) struct ThreadCache {
    pub(crate) active: [*const PageDesc; NUM_CLASSES],
    kept: [[*const PageDesc; KEEP]; NUM_CLASSES],
    /// The kept slab given up by the last exhaustion of an active one,
    /// still owned, until [`ThreadCache::take_retiring`] hands it to the
    /// claim that follows (or `empty`).
    retiring: *const PageDesc,
    /// Parked large blocks, by order - LARGE_MIN_ORDER: page index + 1.
    large: [usize; LARGE_MAX_ORDER - LARGE_MIN_ORDER + 1],
    per_thread: bool,
    /// Objects freed into slabs this cache does not own, kept for its next
    /// allocations (`foreign.rs`).
    pub(crate) foreign: ForeignLists,
    /// Frees into slabs of other live threads, chained per slab and
    /// pushed together (`remote_batch.rs`).
    pub(crate) remote_batch: RemoteBatch,
    pub(crate) empty: *const PageDesc,
    /// The heap's drain generation this cache last flushed for.
    pub(crate) drain_seen: usize,
    /// The heap's free-list link key (see `slab::key`), copied here so the
    /// fast paths find it beside the slots. Set by [`ThreadCache::install`],
    /// before the cache owns any slab.
    pub(crate) key: usize,
}

impl ThreadCache {
    /// A cache whose slots all point at `empty`, a descriptor in the
    /// `UNUSED` state with an empty local list.
    pub(crate) const fn new(empty: *const PageDesc) -> Self {
        Self::per_thread_cache(empty, false)
    }

    /// As [`ThreadCache::new`]; `per_thread` (a cache used by one thread
    /// only, flushed when it exits) enables the large-block cache and the
    /// foreign lists.
    pub(crate) const fn per_thread_cache(empty: *const PageDesc, per_thread: bool) -> Self {
        Self {
            active: [empty; NUM_CLASSES],
            kept: [[empty; KEEP]; NUM_CLASSES],
            retiring: empty,
            large: [0; LARGE_MAX_ORDER - LARGE_MIN_ORDER + 1],
            per_thread,
            foreign: ForeignLists::new(),
            remote_batch: RemoteBatch::new(),
            empty,
            drain_seen: 0,
            key: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Whether this cache owns the slab with owner field `owner`.
    #[inline(always)]
    pub(crate) fn owns(&self, owner: usize) -> bool {
        owner == self.id()
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
        unsafe { pop_local(&**self.active.get_unchecked(class), self.key) }
    }

    /// Pops from the active slab of `class` the object this thread freed
    /// into it last; null if there is none (the caller then allocates as
    /// usual). For `realloc`'s moves; see [`slab::pop_frees`].
    ///
    /// # Safety
    /// As for [`ThreadCache::alloc_fast`].
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn pop_freed_last(&mut self, class: usize) -> *mut u8 {
        // SAFETY: as for `alloc_fast` (the sentinel's lists are empty).
        unsafe { slab::pop_frees(&**self.active.get_unchecked(class), self.key) }
    }

    /// The active slab's allocation list of `class` is empty: takes its
    /// `frees` list and pops from it (null if that is empty too). An
    /// allocation slow path, so it tells the foreign lists that the
    /// thread is not only freeing (a pop from them tells them itself).
    ///
    /// # Safety
    /// As for [`ThreadCache::alloc_fast`].
    #[inline]
    pub(crate) unsafe fn take_frees(&mut self, class: usize) -> *mut u8 {
        // SAFETY: as for `alloc_fast` (the sentinel's lists are empty, so
        // it is not written).
        let p = unsafe { slab::take_frees(&**self.active.get_unchecked(class), self.key) };
        if !p.is_null() {
            self.foreign.note_allocation();
        }
        p
    }

    /// Refills the active slot of `class` from its own slab: its `frees`
    /// list, bump region, then remote frees, then a kept slab with free
    /// objects. Returns an
    /// object, or null with the slot reset: the caller then claims or
    /// carves a slab, and settles the kept slab this gave up
    /// ([`ThreadCache::take_retiring`]).
    ///
    /// # Safety
    /// As for [`ThreadCache::alloc_fast`]; `heap` owns the slabs.
    pub(crate) unsafe fn refill_slot(&mut self, heap: &HeapInner, class: usize) -> *mut u8 {
        // SAFETY: the slot holds a live descriptor.
        let s = unsafe { &*self.active[class] };
        if s.kind() != KIND_SLAB {
            return core::ptr::null_mut();
        }
        let batch = (BUMP_BYTES / slab::obj_size(s) as u32).clamp(4, BUMP_BATCH);
        // SAFETY: we own `s`, a slab of `heap`.
        let p = unsafe { slab::take_object(&heap.arena, s, batch, self.key) };
        if !p.is_null() {
            return p;
        }
        self.active[class] = self.empty;
        // SAFETY: we own `s` and the kept slabs.
        unsafe { self.switch_to_kept(heap, class, s) }
    }

    /// The active slab `full` of `class` is exhausted: switch to a kept
    /// slab that has free objects (keeping `full` in its place), or keep
    /// `full`, move the oldest kept slab to `retiring` (first detaching and
    /// settling one still there) and return null.
    ///
    /// # Safety
    /// This cache owns `full` and every kept slab.
    unsafe fn switch_to_kept(
        &mut self,
        heap: &HeapInner,
        class: usize,
        full: &PageDesc,
    ) -> *mut u8 {
        let kept = &mut self.kept[class];
        for slot in kept.iter_mut() {
            // SAFETY: kept slots hold live descriptors.
            let k = unsafe { &**slot };
            if k.kind() != KIND_SLAB {
                continue;
            }
            // SAFETY: we own `k`, a slab, so its owner line too.
            let (o, word) = unsafe { (k.owner_line(), slab::remote::word(k)) };
            // SAFETY: as above: the owner line's lists are ours.
            let has_free = unsafe { !o.free.get().is_null() || !k.frees().is_null() }
                || slab::remote::rcnt(word.load(crate::sync::Ordering::Relaxed)) != 0;
            if has_free {
                *slot = full;
                self.active[class] = k;
                // SAFETY: we own `k`, now active.
                return unsafe { self.refill_slot(heap, class) };
            }
        }
        let oldest = kept[KEEP - 1];
        kept.copy_within(0..KEEP - 1, 1);
        kept[0] = full;
        // SAFETY: kept slots hold live descriptors.
        let old = unsafe { &*oldest };
        if old.kind() == KIND_SLAB {
            // One not taken by a claim since (a caller that did not go on
            // to `HeapInner::new_slab`) is settled on its own.
            // SAFETY: `heap` owns this cache's slabs (caller's promise).
            if let Some(pending) = unsafe { self.take_retiring(heap) } {
                // SAFETY: a detached slab of this heap; under the lock.
                heap.with_lock(|| unsafe { slab::settle(&heap.arena, &heap.slabs, pending) });
            }
            // Still owned: the caller's claim or carve detaches and
            // settles it in its own critical section (one lock round
            // where there were two).
            self.retiring = old;
        }
        core::ptr::null_mut()
    }

    /// Installs a freshly claimed or carved ordinary slab as the active
    /// one and pops from it.
    ///
    /// # Safety
    /// This cache owns `s`, which is not reserve-backed; the slot for its
    /// class is the sentinel.
    pub(crate) unsafe fn install(
        &mut self,
        heap: &HeapInner,
        class: usize,
        s: &PageDesc,
    ) -> *mut u8 {
        self.key = heap.slabs.key;
        let id = self.id();
        self.foreign.set_owner_id(id);
        self.active[class] = s;
        // SAFETY: we own `s`; it was just installed.
        unsafe { self.refill_slot(heap, class) }
    }

    /// The kept slabs of `class` (or sentinels), for `verify`.
    #[cfg(not(loom))]
    pub(crate) fn kept(&self, class: usize) -> &[*const PageDesc] {
        &self.kept[class]
    }

    /// The retiring slab (or the sentinel), for `verify`.
    #[cfg(not(loom))]
    pub(crate) fn retiring(&self) -> *const PageDesc {
        self.retiring
    }

    /// Takes the slab given up by the last exhaustion of an active slab
    /// (see `switch_to_kept`) and detaches it: the caller must settle it
    /// under the heap lock, or its free objects stay off the partial lists.
    ///
    /// # Safety
    /// `heap` is this cache's heap.
    #[must_use]
    pub(crate) unsafe fn take_retiring<'h>(
        &mut self,
        _heap: &'h HeapInner,
    ) -> Option<&'h PageDesc> {
        // SAFETY: `retiring` holds this cache's sentinel (the process
        // heap's static one, or `heap`'s own) or a descriptor of `heap`'s
        // arena; both live as long as `heap` (caller's promise).
        let s: &'h PageDesc = unsafe { &*self.retiring };
        self.retiring = self.empty;
        if s.kind() != KIND_SLAB {
            return None;
        }
        // SAFETY: this cache owns `s` (the `retiring` slot); the caller
        // settles it.
        unsafe { slab::detach(s, self.key) };
        Some(s)
    }

    /// Frees `p`, an object of slab `s` owned by this cache.
    ///
    /// # Safety
    /// `p` is a live object of `s`, and `self.owns(s.owner)`.
    pub(crate) unsafe fn free_local(&mut self, s: &PageDesc, p: *mut u8) {
        // SAFETY: we own the slab's local fields (in its owner line); `p` is
        // one of its objects.
        unsafe { slab::push_local(s, p, self.key) };
    }

    /// Detaches every slab this cache owns (thread exit, reclaim).
    ///
    /// # Safety
    /// The caller is the cache's thread (or holds its shard lock).
    pub(crate) unsafe fn flush(&mut self, heap: &HeapInner) {
        // First the foreign objects: one may belong to a slab this cache
        // has claimed since, which is detached below.
        // SAFETY: as guaranteed by the caller.
        unsafe { self.flush_held(heap) };
        for slot in &mut self.large {
            if *slot != 0 {
                let idx = *slot - 1;
                *slot = 0;
                heap.free_parked(idx);
            }
        }
        // Detach everything first, then settle in batches under one lock
        // round each: a thread exit would otherwise take the heap lock once
        // per slab (about 80 times for a thread that used 40 classes).
        let mut batch = DetachedBatch::new(heap);
        // SAFETY: `heap` is this cache's heap (caller's promise).
        if let Some(s) = unsafe { self.take_retiring(heap) } {
            // SAFETY: `s` is a detached slab of `heap`.
            unsafe { batch.push(s) };
        }
        for class in 0..NUM_CLASSES {
            let slots = self.kept[class]
                .iter_mut()
                .chain(core::iter::once(&mut self.active[class]));
            for slot in slots {
                // SAFETY: slots hold live descriptors.
                let s = unsafe { &**slot };
                if s.kind() == KIND_SLAB {
                    *slot = self.empty;
                    // SAFETY: we own `s`; once detached, `batch` settles it.
                    unsafe {
                        slab::detach(s, self.key);
                        batch.push(s);
                    }
                }
            }
        }
        batch.settle();
    }

    /// Returns every object on the foreign lists and in the remote batch
    /// to its slab.
    ///
    /// # Safety
    /// The caller is the cache's thread (or holds its shard lock); `heap`
    /// is the cache's heap.
    pub(crate) unsafe fn flush_held(&mut self, heap: &HeapInner) {
        // SAFETY: the batch holds objects of `heap`'s slabs, given up.
        self.remote_batch
            .take_all(|c| unsafe { heap.free_chain(c) });
        if !self.foreign.holds_objects() {
            return;
        }
        let mut foreign = self.foreign.take_lists();
        // SAFETY: the lists hold objects of `heap`'s slabs, linked with its
        // key; each object is freed once, as an object given up.
        unsafe {
            foreign.drain(&heap.arena, heap.slabs.key, |s, p| {
                if self.owns(s.owner.load(crate::sync::Ordering::Relaxed)) {
                    self.free_local(s, p);
                } else {
                    heap.free_remote(s, p);
                }
            });
        }
    }

    /// Whether this cache belongs to one thread and is flushed when it
    /// exits (the process heap's caches): it then parks large blocks (and
    /// uses the heap's block cache for bigger ones) and keeps foreign lists.
    #[inline]
    pub(crate) fn per_thread(&self) -> bool {
        self.per_thread
    }

    /// Takes a parked large block of `order`; returns its page index.
    #[inline]
    pub(crate) fn take_large(&mut self, order: usize) -> Option<usize> {
        if !(LARGE_MIN_ORDER..=LARGE_MAX_ORDER).contains(&order) {
            return None;
        }
        let slot = &mut self.large[order - LARGE_MIN_ORDER];
        let v = core::mem::take(slot);
        (v != 0).then(|| v - 1)
    }

    /// Parks a freed large block; false if this cache does not cache large
    /// blocks, the order is out of range, or its slot is taken.
    #[inline]
    pub(crate) fn park_large(&mut self, idx: usize, order: usize) -> bool {
        if !self.per_thread || !(LARGE_MIN_ORDER..=LARGE_MAX_ORDER).contains(&order) {
            return false;
        }
        let slot = &mut self.large[order - LARGE_MIN_ORDER];
        if *slot != 0 {
            return false;
        }
        *slot = idx + 1;
        true
    }
}

/// Slabs detached by a flush and not yet settled, of one heap. Each must
/// reach [`slab::settle`] (a detached slab nobody settles keeps its free
/// objects off the partial lists): `push` settles the batch when it is
/// full, `settle` and the drop settle the rest. Until then, remote frees
/// may settle a slab first, which is harmless: settling is idempotent and
/// does nothing to a slab that was released or owned since.
struct DetachedBatch<'h> {
    heap: &'h HeapInner,
    slabs: [Option<&'h PageDesc>; SETTLE_BATCH],
    len: usize,
}

impl<'h> DetachedBatch<'h> {
    fn new(heap: &'h HeapInner) -> Self {
        Self {
            heap,
            slabs: [None; SETTLE_BATCH],
            len: 0,
        }
    }

    /// Adds `s`, settling the batch first when it is full.
    ///
    /// # Safety
    /// `s` is a detached slab of the batch's heap.
    unsafe fn push(&mut self, s: &'h PageDesc) {
        if self.len == SETTLE_BATCH {
            self.settle();
        }
        self.slabs[self.len] = Some(s);
        self.len += 1;
    }

    /// Settles every slab in the batch under one lock round.
    fn settle(&mut self) {
        if self.len == 0 {
            return;
        }
        let (heap, slabs) = (self.heap, &self.slabs[..self.len]);
        heap.with_lock(|| {
            for s in slabs.iter().flatten() {
                // SAFETY: under the heap lock; each entry is a descriptor
                // of `heap`'s arena (`push`'s contract).
                unsafe { slab::settle(&heap.arena, &heap.slabs, s) };
            }
        });
        self.len = 0;
    }
}

impl Drop for DetachedBatch<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}
