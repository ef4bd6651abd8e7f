//! Page-level allocations of a heap: large blocks from the buddy arena
//! (and parked ones), direct mappings with their table and cache, and
//! the reclaiming retry around any allocation.

use super::{hash, request_order, HeapInner, HugeEntry, MAX_BLOCK};
use crate::arena::buddy::order_for_pages;
use crate::arena::desc::{FLAG_RESERVE, KIND_LARGE};
use crate::arena::watermark::{Admit, Tier};
use crate::error::AllocError;
use crate::flags::AllocFlags;
use crate::huge_cache;
use crate::memalloc::{resolve, Rights};
use crate::os::{self, PAGE_SHIFT, PAGE_SIZE};
use crate::reclaim::Got;
use crate::sync::Ordering;
use crate::tcache::ThreadCache;
use core::alloc::Layout;

impl HeapInner {
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
    pub(super) unsafe fn huge_insert(&self, addr: usize, len: usize) -> bool {
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
}
