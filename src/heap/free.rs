//! The free paths of a heap: by pointer, into a slab the caller owns or
//! not, of chains of remote frees, of large blocks (parked when they
//! can be) and direct mappings; and the lookups by pointer.

use super::{check_object_start, HeapInner};
use crate::arena::desc::{
    PageDesc, FLAG_RESERVE, FLAG_RUN, KIND_CACHED, KIND_LARGE, KIND_SLAB, KIND_TAIL,
};
use crate::diag::fatal;
use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::remote_batch::Chain;
use crate::slab::class::CLASS_SIZE;
use crate::slab::remote::{self, rcnt, DETACHED};
use crate::sync::Ordering;
use crate::tcache::ThreadCache;
use crate::{huge_cache, slab};

impl HeapInner {
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
        // A reserve slab moves to its partial list at its first free
        // object (`slab::settle`); its flag is read only on the push that
        // gives a spent slab that object, not on every push.
        if n == used
            || (before < threshold && avail >= threshold)
            || (before == 0 && avail >= 1 && s.has_flag(FLAG_RESERVE))
        {
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
}
