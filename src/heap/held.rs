//! The glue between a heap and what a thread cache holds of other
//! threads' slabs: objects on its foreign lists (`foreign.rs`) and frees
//! waiting in its remote batch (`remote_batch.rs`).

use super::HeapInner;
use crate::arena::desc::PageDesc;
use crate::slab;
use crate::sync::Ordering;
use crate::tcache::ThreadCache;
// (The global allocator's entry points, which loom models leave out.)
#[cfg(not(loom))]
use {
    super::Hold, crate::arena::desc::FLAG_RESERVE, crate::os::PAGE_SIZE,
    crate::slab::class::class_for, core::alloc::Layout,
};

impl HeapInner {
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
    pub(super) unsafe fn pop_foreign(&self, tc: &mut ThreadCache, class: usize) -> *mut u8 {
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
}
