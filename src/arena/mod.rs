//! The arena (the kernel's zone): a budget of 4 KiB pages in one reserved
//! virtual range, handed out as buddy blocks of order 0..=10.
//!
//! Invariants:
//!
//! * `free` is exact: `budget_pages - pages in allocated blocks - pages
//!   charged for direct mappings`. It changes only under the heap lock and
//!   is read lock-free by the watermark checks.
//! * Pages at or above `frontier` have never been handed to the buddy lists:
//!   their descriptors are untouched and they cost no RSS. The lists are fed
//!   from the frontier in the largest aligned blocks only when they run dry,
//!   so low addresses are reused first and the arena grows only with use.
//! * Every page below `frontier` is in exactly one block: free (on the list
//!   of its order, first page `KIND_FREE`) or allocated (a slab or a large
//!   allocation).
//! * A request of `2^n` pages is granted only if `free - 2^n >= mark`.
//!
//! Every method that changes state is `unsafe` with the same contract: the
//! caller holds the heap lock.

pub(crate) mod buddy;
pub(crate) mod capture;
pub(crate) mod desc;
pub(crate) mod watermark;

use crate::error::AllocError;
use crate::os::PAGE_SHIFT;
use crate::sync::{AtomicUsize, Ordering, RacyCell};
use buddy::{buddy_of, largest_fitting_order, MAX_ORDER, ORDERS};
use capture::Capture;
use crossbeam_utils::CachePadded;
use desc::{PageDesc, FLAG_ZEROED, KIND_FREE, KIND_PURGING, KIND_TAIL, NIL};
use watermark::{Admit, Tier, Watermarks};

/// A block taken from the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Index of its first page.
    pub(crate) idx: usize,
    /// Its pages are known to read as zero.
    pub(crate) zeroed: bool,
    /// How it was admitted (`Reserve`: only the memalloc right allowed it).
    pub(crate) admit: Admit,
}

pub(crate) struct Arena {
    /// First page; aligned to the largest block (4 MiB).
    pub(crate) base: *mut u8,
    /// One descriptor per page.
    pub(crate) descs: *const PageDesc,
    /// Pages in the virtual range (the budget, in pages).
    pub(crate) npages: usize,
    /// Free pages of the budget (exact; see the module docs).
    /// (On a cache line of its own: every buddy operation writes it, and
    /// the fields beside it are read on the slow paths of every thread.)
    pub(crate) free: CachePadded<AtomicUsize>,
    pub(crate) marks: Watermarks,
    /// Pages in blocks flagged reserve (handed out only by the memalloc
    /// right and not yet released or unflagged).
    pub(crate) reserve_pages: AtomicUsize,
    pub(crate) capture: Capture,
    frontier: RacyCell<usize>,
    lists: [RacyCell<u32>; ORDERS],
    counts: [RacyCell<usize>; ORDERS],
}

// SAFETY: the raw pointers name memory owned by the heap for its lifetime;
// all mutation follows the lock protocol in the module docs.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

/// `p`, an address a caller got from lifeboat, with the provenance of
/// the whole mapping it lies in (an arena, published by [`Arena::new`], or
/// a direct mapping, made from an address) instead of the caller's. A
/// caller's pointer may grant access to its block only, or to the first
/// `size` bytes of it (a `Box<[u8]>` of one byte), while a free writes a
/// link into the block's first word and a realloc in place hands out more
/// of it. An integer-to-pointer cast: no instruction.
#[inline(always)]
pub(crate) fn own_provenance(p: *mut u8) -> *mut u8 {
    core::ptr::with_exposed_provenance_mut(p as usize)
}

impl Arena {
    /// An arena over `npages` pages at `base` with descriptors at `descs`.
    ///
    /// # Safety
    /// `base` is aligned to 4 MiB and maps `npages` pages; `descs` maps
    /// `npages` descriptors in the `UNUSED` state; both outlive the arena.
    pub(crate) unsafe fn new(
        base: *mut u8,
        descs: *const PageDesc,
        npages: usize,
        marks: Watermarks,
        capture: bool,
    ) -> Self {
        // Owner lines are reached through the array's provenance, and free
        // lists store object addresses as integers.
        desc::expose(descs);
        let _ = base.expose_provenance();
        Self {
            base,
            descs,
            npages,
            free: CachePadded::new(AtomicUsize::new(npages)),
            marks,
            reserve_pages: AtomicUsize::new(0),
            capture: Capture::new(capture),
            frontier: RacyCell::new(0),
            lists: core::array::from_fn(|_| RacyCell::new(NIL)),
            counts: core::array::from_fn(|_| RacyCell::new(0)),
        }
    }

    #[inline(always)]
    pub(crate) fn desc(&self, idx: usize) -> &PageDesc {
        debug_assert!(idx < self.npages);
        // SAFETY: callers pass indices below `npages`; the array is live.
        unsafe { &*self.descs.add(idx) }
    }

    /// The descriptor of the block holding page `idx` (`desc::block_head`):
    /// the page itself, or a live slab's first page.
    #[inline(always)]
    // (The process heap's free, `global/free.rs`, not in loom builds.)
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn block_head(&self, idx: usize) -> &PageDesc {
        debug_assert!(idx < self.npages);
        // SAFETY: callers pass indices below `npages`; the array is live.
        unsafe { desc::block_head(self.descs, idx) }
    }

    #[inline(always)]
    pub(crate) fn page_addr(&self, idx: usize) -> *mut u8 {
        self.base.wrapping_add(idx << PAGE_SHIFT)
    }

    /// The page index of `p`, if it lies in the arena.
    #[inline(always)]
    pub(crate) fn page_of(&self, p: *const u8) -> Option<usize> {
        let off = (p as usize).wrapping_sub(self.base as usize);
        let idx = off >> PAGE_SHIFT;
        (idx < self.npages).then_some(idx)
    }

    pub(crate) fn free_pages(&self) -> usize {
        self.free.load(Ordering::Relaxed)
    }

    /// Pages ever handed to the buddy lists (the touched part of the range).
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn frontier(&self) -> usize {
        // SAFETY: under the heap lock.
        unsafe { self.frontier.get() }
    }

    /// Free blocks per order.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn free_blocks(&self) -> [usize; ORDERS] {
        // SAFETY: under the heap lock.
        core::array::from_fn(|o| unsafe { self.counts[o].get() })
    }

    /// The first block on the free list of `order` (`NIL` if empty), and
    /// the list's count; for `Heap::verify`.
    ///
    /// # Safety
    /// The caller holds the heap lock; `order < ORDERS`.
    #[cfg(not(loom))]
    pub(crate) unsafe fn free_list(&self, order: usize) -> (u32, usize) {
        // SAFETY: under the heap lock (caller).
        unsafe { (self.lists[order].get(), self.counts[order].get()) }
    }

    /// Takes a block of `2^order` pages for a request of `tier` (with the
    /// memalloc right or not).
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn alloc(
        &self,
        order: usize,
        tier: Tier,
        memalloc: bool,
    ) -> Result<Block, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError::Layout);
        }
        if crate::fault::hit(crate::fault::FailPoint::ArenaAlloc) {
            return Err(AllocError::Watermark); // injected (tests only)
        }
        let n = 1usize << order;
        let free = self.free_pages();
        let admit = self
            .marks
            .admit(free, n, tier, memalloc)
            .ok_or(AllocError::Watermark)?;
        // SAFETY: under the heap lock (caller).
        let (idx, mut cur) = unsafe { self.take_block(order) }.ok_or(AllocError::Fragmented)?;
        let d = self.desc(idx);
        let zeroed = d.has_flag(FLAG_ZEROED);
        // Split down to the requested order, freeing the upper halves.
        while cur > order {
            cur -= 1;
            let half = idx + (1 << cur);
            // SAFETY: under the heap lock.
            unsafe { self.push(half, cur, zeroed) };
        }
        d.kind.store(KIND_TAIL, Ordering::Relaxed);
        d.set_flag(FLAG_ZEROED, false);
        self.free.store(free - n, Ordering::Relaxed);
        Ok(Block { idx, zeroed, admit })
    }

    /// Returns a block of `2^order` pages at `idx`, merging with free buddies.
    ///
    /// # Safety
    /// The caller holds the heap lock; the block was returned by `alloc` with
    /// this order and nothing uses it any more.
    pub(crate) unsafe fn free(&self, idx: usize, order: usize) {
        let freed = 1usize << order;
        // SAFETY: under the heap lock.
        let captured = unsafe { self.free_block(idx, order, false, freed) };
        // A captured block counts as allocated (to its requester).
        self.free
            .store(self.free_pages() + freed - captured, Ordering::Relaxed);
    }

    /// Puts a block back on the lists, merging, without touching `free`;
    /// `freed` pages are being returned to the free count by the caller. If
    /// a capture requester takes the merged block, returns its size in
    /// pages (which the caller must not count as free), else 0.
    ///
    /// # Safety
    /// As for [`Arena::free`].
    unsafe fn free_block(
        &self,
        mut idx: usize,
        mut order: usize,
        mut zeroed: bool,
        freed: usize,
    ) -> usize {
        loop {
            let size = 1usize << order;
            let free_after = (self.free_pages() + freed).saturating_sub(size);
            // SAFETY: under the heap lock.
            if unsafe { self.capture.offer(idx, order, free_after) } {
                let d = self.desc(idx);
                d.kind.store(KIND_TAIL, Ordering::Relaxed);
                d.order.store(order as u8, Ordering::Relaxed);
                d.set_flag(FLAG_ZEROED, false);
                return size;
            }
            if order >= MAX_ORDER {
                break;
            }
            let b = buddy_of(idx, order);
            // SAFETY: under the heap lock.
            if b + (1 << order) > unsafe { self.frontier.get() } {
                break;
            }
            let bd = self.desc(b);
            if bd.kind() != KIND_FREE || bd.order() != order {
                break;
            }
            zeroed &= bd.has_flag(FLAG_ZEROED);
            // SAFETY: under the heap lock; `b` is on list `order`.
            unsafe { self.unlink(b, order) };
            // The upper of the two stops being a block head: whichever it
            // is (the buddy, or the block being freed), it becomes a tail,
            // so no stale `SLAB`/`LARGE` head is left inside a free block.
            self.desc(idx.max(b))
                .kind
                .store(KIND_TAIL, Ordering::Relaxed);
            idx = idx.min(b);
            order += 1;
        }
        // SAFETY: under the heap lock.
        unsafe { self.push(idx, order, zeroed) };
        0
    }

    /// Takes up to `max` free blocks of at least `min_order` whose pages are
    /// not known to be zero off the lists, marking them `PURGING` (merges
    /// skip them; they stay counted as free). Returns how many were taken.
    ///
    /// # Safety
    /// The caller holds the heap lock; it must hand every block back with
    /// [`Arena::purged`].
    pub(crate) unsafe fn take_for_purge(&self, min_order: usize, out: &mut [(u32, u8)]) -> usize {
        let mut n = 0;
        for o in (min_order..ORDERS).rev() {
            // SAFETY: under the heap lock.
            let mut cur = unsafe { self.lists[o].get() };
            while cur != NIL && n < out.len() {
                let d = self.desc(cur as usize);
                // SAFETY: under the heap lock.
                let next = unsafe { d.next() };
                if !d.has_flag(FLAG_ZEROED) {
                    // SAFETY: under the heap lock; `cur` is on list `o`.
                    unsafe { self.unlink(cur as usize, o) };
                    d.kind.store(KIND_PURGING, Ordering::Relaxed);
                    out[n] = (cur, o as u8);
                    n += 1;
                }
                cur = next;
            }
        }
        n
    }

    /// Returns a block taken by [`Arena::take_for_purge`], now zero.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn purged(&self, idx: usize, order: usize) {
        // SAFETY: under the heap lock. Purged blocks are already counted as
        // free, so a capture of them passes `0` freed pages.
        let captured = unsafe { self.free_block(idx, order, true, 0) };
        if captured != 0 {
            self.free.fetch_sub(captured, Ordering::Relaxed);
        }
    }

    /// Grows the allocated block at `idx` from `from` to order `to` in
    /// place, if each upper buddy on the way is a whole free block and the
    /// extra pages pass the watermark for `tier` (never from the reserve).
    ///
    /// # Safety
    /// The caller holds the heap lock and owns the block.
    pub(crate) unsafe fn grow_in_place(
        &self,
        idx: usize,
        from: usize,
        to: usize,
        tier: Tier,
    ) -> bool {
        if to > MAX_ORDER || !idx.is_multiple_of(1 << to) {
            return false; // the block is an upper half somewhere on the way
        }
        let extra = (1usize << to) - (1usize << from);
        let free = self.free_pages();
        match self.marks.admit(free, extra, tier, false) {
            Some(Admit::Fast) | Some(Admit::Slow) => {}
            _ => return false,
        }
        // SAFETY: under the heap lock.
        let frontier = unsafe { self.frontier.get() };
        for o in from..to {
            let b = idx + (1 << o);
            let bd = if b + (1 << o) <= frontier {
                Some(self.desc(b))
            } else {
                None
            };
            if !bd.is_some_and(|d| d.kind() == KIND_FREE && d.order() == o) {
                return false;
            }
        }
        for o in from..to {
            let b = idx + (1 << o);
            // SAFETY: under the heap lock; `b` heads a free block of order `o`.
            unsafe { self.unlink(b, o) };
            self.desc(b).kind.store(KIND_TAIL, Ordering::Relaxed);
        }
        self.free.store(free - extra, Ordering::Relaxed);
        true
    }

    /// Charges `pages` of the budget for a direct mapping.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn charge(
        &self,
        pages: usize,
        tier: Tier,
        memalloc: bool,
    ) -> Result<Admit, AllocError> {
        if crate::fault::hit(crate::fault::FailPoint::ArenaCharge) {
            return Err(AllocError::Watermark); // injected (tests only)
        }
        let free = self.free_pages();
        let admit = self
            .marks
            .admit(free, pages, tier, memalloc)
            .ok_or(AllocError::Watermark)?;
        self.free.store(free - pages, Ordering::Relaxed);
        Ok(admit)
    }

    /// Returns `pages` charged by [`Arena::charge`].
    ///
    /// # Safety
    /// The caller holds the heap lock and charged these pages before.
    pub(crate) unsafe fn uncharge(&self, pages: usize) {
        self.free.fetch_add(pages, Ordering::Relaxed);
    }

    /// Pops a block of at least `order`, growing from the frontier if every
    /// list is empty. Returns (index, its order).
    ///
    /// # Safety
    /// The caller holds the heap lock.
    unsafe fn take_block(&self, order: usize) -> Option<(usize, usize)> {
        loop {
            // SAFETY: under the heap lock.
            if let Some(b) = unsafe { self.take_listed(order) } {
                return Some(b);
            }
            // SAFETY: under the heap lock.
            let f = unsafe { self.frontier.get() };
            if f >= self.npages {
                return None;
            }
            let o = largest_fitting_order(f, self.npages - f);
            // SAFETY: under the heap lock.
            unsafe {
                self.frontier.set(f + (1 << o));
                self.push(f, o, true);
            }
        }
    }

    /// Pops the listed block of the smallest order `>= order`, without
    /// touching the frontier. Returns (index, its order).
    ///
    /// # Safety
    /// The caller holds the heap lock.
    unsafe fn take_listed(&self, order: usize) -> Option<(usize, usize)> {
        for o in order..ORDERS {
            // SAFETY: under the heap lock.
            let head = unsafe { self.lists[o].get() };
            if head != NIL {
                let idx = head as usize;
                // SAFETY: under the heap lock; `idx` heads list `o`.
                unsafe { self.unlink(idx, o) };
                return Some((idx, o));
            }
        }
        None
    }

    /// Files the block at `idx` on the free list of `order`, marking it free.
    ///
    /// # Safety
    /// The caller holds the heap lock; the block is `1 << order` pages at an
    /// index aligned to its order, owned by the caller and on no list.
    unsafe fn push(&self, idx: usize, order: usize, zeroed: bool) {
        let d = self.desc(idx);
        d.kind.store(KIND_FREE, Ordering::Relaxed);
        d.order.store(order as u8, Ordering::Relaxed);
        d.set_flag(FLAG_ZEROED, zeroed);
        // SAFETY: under the heap lock (caller); list links are lock-owned.
        unsafe {
            let head = self.lists[order].get();
            d.set_prev(NIL);
            d.set_next(head);
            if head != NIL {
                self.desc(head as usize).set_prev(idx as u32);
            }
            self.lists[order].set(idx as u32);
            self.counts[order].set(self.counts[order].get() + 1);
        }
    }

    /// Takes the free block at `idx` off the free list of `order`.
    ///
    /// # Safety
    /// The caller holds the heap lock and the block is on that list.
    unsafe fn unlink(&self, idx: usize, order: usize) {
        let d = self.desc(idx);
        // SAFETY: under the heap lock (caller).
        unsafe {
            let (p, n) = (d.prev(), d.next());
            if p == NIL {
                self.lists[order].set(n);
            } else {
                self.desc(p as usize).set_next(n);
            }
            if n != NIL {
                self.desc(n as usize).set_prev(p);
            }
            self.counts[order].set(self.counts[order].get() - 1);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::os;

    struct TestArena {
        arena: Arena,
        base: *mut u8,
        descs: *mut u8,
        npages: usize,
    }

    impl TestArena {
        fn new(npages: usize) -> Self {
            let base = os::reserve(npages << PAGE_SHIFT, 1 << 22).unwrap();
            let dbytes = (npages * 64).next_multiple_of(4096);
            let descs = os::reserve(dbytes, 4096).unwrap();
            // SAFETY: both ranges were just mapped with the sizes given.
            let arena = unsafe {
                Arena::new(
                    base,
                    descs.cast(),
                    npages,
                    Watermarks::for_budget(npages, 0),
                    true,
                )
            };
            Self {
                arena,
                base,
                descs,
                npages,
            }
        }
    }

    impl Drop for TestArena {
        fn drop(&mut self) {
            // SAFETY: the test owns both mappings.
            unsafe {
                os::release(self.base, self.npages << PAGE_SHIFT);
                os::release(self.descs, (self.npages * 64).next_multiple_of(4096));
            }
        }
    }

    #[test]
    fn split_and_merge_restore_one_block() {
        let t = TestArena::new(1024);
        let a = &t.arena;
        // SAFETY: single-threaded test: the "lock" is trivially held.
        unsafe {
            let b = a.alloc(0, Tier::Normal, true).unwrap();
            let x = b.idx;
            assert!(b.zeroed, "fresh pages are zero");
            assert_eq!(a.free_pages(), 1023);
            let y = a.alloc(3, Tier::Normal, true).unwrap().idx;
            assert_eq!(y % 8, 0);
            assert_eq!(a.free_pages(), 1015);
            a.free(x, 0);
            a.free(y, 3);
            assert_eq!(a.free_pages(), 1024);
            let blocks = a.free_blocks();
            assert_eq!(blocks[MAX_ORDER], 1);
            assert_eq!(blocks.iter().sum::<usize>(), 1);
        }
    }

    #[test]
    fn odd_sized_arena_uses_every_page() {
        let t = TestArena::new(1024 + 7);
        let a = &t.arena;
        let mut got = std::vec::Vec::new();
        // SAFETY: single-threaded test.
        unsafe {
            while let Ok(b) = a.alloc(0, Tier::Normal, true) {
                got.push(b.idx);
            }
            assert_eq!(got.len(), 1031);
            assert_eq!(a.free_pages(), 0);
            assert_eq!(a.alloc(0, Tier::Normal, true), Err(AllocError::Watermark));
            for &i in &got {
                a.free(i, 0);
            }
            assert_eq!(a.free_pages(), 1031);
            let b = a.free_blocks();
            assert_eq!((b[10], b[2], b[1], b[0]), (1, 1, 1, 1));
        }
    }

    #[test]
    fn watermark_refuses_exactly_at_mark() {
        let t = TestArena::new(64);
        let a = &t.arena;
        // SAFETY: single-threaded test.
        unsafe {
            let min = a.marks.min;
            assert_eq!(min, 16); // a quarter of 64 pages
            for _ in 0..64 - min {
                a.alloc(0, Tier::Normal, false).unwrap();
            }
            assert_eq!(a.free_pages(), min);
            assert_eq!(a.alloc(0, Tier::Normal, false), Err(AllocError::Watermark));
            assert_eq!(a.alloc(0, Tier::High, false).unwrap().admit, Admit::Slow);
            assert_eq!(
                a.alloc(0, Tier::Normal, true).unwrap().admit,
                Admit::Reserve
            );
        }
    }

    #[test]
    fn fragmentation_is_reported() {
        let t = TestArena::new(8);
        let a = &t.arena;
        // SAFETY: single-threaded test.
        unsafe {
            let pages: std::vec::Vec<usize> = (0..8)
                .map(|_| a.alloc(0, Tier::Normal, true).unwrap().idx)
                .collect();
            for &p in pages.iter().step_by(2) {
                a.free(p, 0);
            }
            assert_eq!(a.free_pages(), 4);
            assert_eq!(a.alloc(1, Tier::Normal, true), Err(AllocError::Fragmented));
        }
    }

    #[test]
    fn grows_in_place_over_free_buddies() {
        let t = TestArena::new(1024);
        let a = &t.arena;
        // SAFETY: single-threaded test.
        unsafe {
            let b = a.alloc(2, Tier::Normal, true).unwrap();
            assert_eq!(b.idx, 0);
            assert!(a.grow_in_place(0, 2, 5, Tier::Normal));
            assert_eq!(a.free_pages(), 1024 - 32);
            // A block whose upper buddy is taken cannot grow.
            let c = a.alloc(5, Tier::Normal, true).unwrap();
            assert_eq!(c.idx, 32);
            assert!(!a.grow_in_place(0, 5, 6, Tier::Normal));
            // An upper half cannot grow in place.
            assert!(!a.grow_in_place(32, 5, 6, Tier::Normal));
            a.free(0, 5);
            a.free(32, 5);
            assert_eq!(a.free_pages(), 1024);
            assert_eq!(a.free_blocks()[10], 1);
        }
    }
}
