//! In-place resizing: growth runs above buffers that `realloc` grows
//! (`growth_run.rs`), and the in-place cases of `realloc` for slab
//! objects, page blocks and direct mappings.

use super::{run_slot, HeapInner, GROWTH_BLOCK_MIN, MAX_BLOCK};
use crate::arena::buddy::order_for_pages;
use crate::arena::desc::{
    PageDesc, FLAG_RESERVE, FLAG_RUN, KIND_CACHED, KIND_LARGE, KIND_SLAB, KIND_TAIL,
};
use crate::flags::AllocFlags;
use crate::growth_run::{Grow, Run};
use crate::memalloc::resolve;
use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::slab::class::class_for;
use crate::sync::Ordering;
#[cfg(not(loom))] // (the global allocator's `realloc`, which loom models leave out)
use core::alloc::Layout;

impl HeapInner {
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
    pub(super) fn release_run(&self, run: Run) {
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
    pub(super) fn absorb_run(&self, idx: usize, d: &PageDesc) {
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
}
