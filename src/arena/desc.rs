//! The page descriptor: one per 4 KiB page of an arena (the kernel's
//! `struct page`, with `struct slab` overlaid on a slab's first page).
//!
//! Descriptors live in one array beside the arena, so any pointer finds its
//! page with `(ptr - base) >> PAGE_SHIFT`, with no header before user data.
//!
//! Invariants (who may write what):
//!
//! * `kind`, `order`, `back`, the list links (`next`, `prev`) and the
//!   `LISTED`/`SPENT`/`ZEROED` flags change only under the heap lock,
//!   except in blocks that no list and no one else can reach: a large
//!   block's holder parks it (`CACHED`) and sets up, grows and takes back
//!   its growth run (`growth_run.rs`) without the lock. `FREE` appears only
//!   on the first page of a block that is on a free list of order
//!   `order`; merging clears the absorbed buddy to `TAIL`.
//! * `back` is the distance from a page to the first page of the block it
//!   belongs to: `i` for the `i`-th page of a slab, 0 for every other page
//!   (fresh descriptors are zero, released slabs reset their tails). So
//!   `desc - back` is always the page itself or a live slab's first page,
//!   never a stale one: the free path relies on this. `class`, `lo` and
//!   `span` are set when the slab is carved and stay fixed until it is
//!   released; object size and capacity come from the class tables.
//! * `SLAB` is written only by `carve`, on the first page of a buddy block
//!   of the class's slab order (at least `MIN_SLAB_ORDER`), and a
//!   released slab's first page turns `FREE` or `TAIL` under the heap lock
//!   before any of its pages can be taken again. So the descriptor at a
//!   live block's page index rounded down to `MIN_SLAB_ORDER`, if it reads
//!   `SLAB`, heads that block's own slab: a slab there covers the page, and
//!   a slab released before the block was carved cannot be read any more.
//!   [`block_head`] reads that descriptor first, one cache line where
//!   `back` takes two on most pages of a slab.
//! * `links` holds the list links (`next`, `prev`) of a free block or of a
//!   slab on one of its class's lists (partial, or spent reserve).
//! * A slab's `free`, `frees`, `bump` and `used` are not in its first
//!   page's descriptor but in its second's, the slab's *owner line*
//!   ([`PageDesc::owner_line`]; `frees` in that descriptor's `links`, as
//!   the kernel's compound pages keep fields in their tail pages' `struct
//!   page`). They belong to the slab's owner: the thread cache whose
//!   address is in `owner`, or, while the slab is detached (when `frees`
//!   is empty) or owned by `slab::LOCK_HOLDER` (a reserve slab, within one
//!   lock round), whoever holds the heap lock. `used` is an atomic only so
//!   that statistics and remote freers may read it; only the owner writes
//!   it. The owner writes them on every allocation and free, and every
//!   free from another thread reads the first page's line (`kind`,
//!   `class`, `owner`, `lo`, `span`): on one line, each such free took
//!   the line away from the owner's core and the owner's next allocation
//!   took it back (producer/consumer frees took 0.7-0.8x the time once
//!   apart). Every slab spans at least `1 << MIN_SLAB_ORDER` pages, so a
//!   slab's second page is its own; a thread cache's sentinel is the
//!   first of a pair for the same reason. `carve` sets the owner line.
//!   Its fields are stale on any other page; the one reader that may meet
//!   a stale count (a remote pusher's threshold test racing the slab's
//!   release) only settles, which decides from the slab's state.
//! * The first page's own `used` holds a copy of the owner line's, written
//!   by [`crate::slab::detach`] ([`PageDesc::detached_used`]): a detached
//!   slab's count is frozen, so the copy is exact until a claim, and a
//!   thread freeing into the slab reads it on the line it has read
//!   already. (The foreign lists' test of a slab's count, on every free
//!   into a detached slab, otherwise took a second line: in larson on one
//!   core, a sixth of the first-level read misses.)
//! * `remote` is the lock-free list of objects freed by non-owners; see
//!   [`crate::slab::remote`]. A slab's remote word is also in its owner
//!   line ([`crate::slab::remote::word`]): other threads write it once a
//!   chain of objects (`remote_batch.rs`), not once an object, and a third
//!   line for it measured the same (2026-12-07).
//! * An all-zero descriptor is a valid `UNUSED` one: fresh, untouched
//!   descriptor memory needs no initialisation (outside loom).

use crate::sync::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering, RacyCell};

/// Never handed out since the arena was mapped, or inside a block.
pub(crate) const KIND_UNUSED: u8 = 0;
/// First page of a free buddy block.
pub(crate) const KIND_FREE: u8 = 1;
/// A page inside a block whose first page describes it.
pub(crate) const KIND_TAIL: u8 = 2;
/// First page of a slab.
pub(crate) const KIND_SLAB: u8 = 3;
/// First page of a large (page-granular) allocation.
pub(crate) const KIND_LARGE: u8 = 4;
/// First page of a free block taken off its list to be purged.
pub(crate) const KIND_PURGING: u8 = 5;
/// First page of a freed large block parked in a thread cache (counted as
/// allocated; a second free of it is a double free).
pub(crate) const KIND_CACHED: u8 = 6;

/// The slab was carved from the reserve (below the normal watermark, for a
/// memalloc caller); its objects go only to privileged callers.
pub(crate) const FLAG_RESERVE: u8 = 1 << 0;
/// The free block's pages are known to read as zero.
pub(crate) const FLAG_ZEROED: u8 = 1 << 1;
/// The detached slab is on one of its class's slab lists: a partial list,
/// or, for a reserve-backed slab with no free object (when it was last
/// settled), the list of spent reserve slabs (`FLAG_SPENT`).
pub(crate) const FLAG_LISTED: u8 = 1 << 2;
/// The large block may head a growth run (`growth_run.rs`); set and
/// cleared by the block's holder only.
pub(crate) const FLAG_RUN: u8 = 1 << 3;
/// The listed reserve-backed slab had no free object when it was last
/// settled (a free since has a settle to come): it is on its class's list
/// of spent reserve slabs, where no claim looks, so that lifting the
/// reserve can still find it (`slab::unreserve_listed`).
pub(crate) const FLAG_SPENT: u8 = 1 << 4;

/// "No page" in list links.
pub(crate) const NIL: u32 = u32::MAX;

/// The descriptor of the block that holds page `idx` of the descriptor
/// array `descs`: [`block_head_at`] of the page's first byte.
///
/// # Safety
/// `descs` is an arena's descriptor array and `idx` is below its length.
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))] // the process heap's free (global/free.rs), not in loom builds
pub(crate) unsafe fn block_head<'a>(descs: *const PageDesc, idx: usize) -> &'a PageDesc {
    // SAFETY: forwarded from the caller (page `idx` starts at that offset).
    unsafe { block_head_at(descs, idx << crate::os::PAGE_SHIFT) }
}

/// The descriptor of the block that holds the byte at offset `off` of the
/// arena whose descriptor array is `descs`: what `back` leads to from that
/// byte's page (the page itself, or a live slab's first page), read at
/// once when the page index rounded down to `MIN_SLAB_ORDER` heads a slab
/// (see the invariants above), so one cache line instead of two for the
/// objects of the smallest slabs (every class up to 2 KiB), whose slabs
/// span four pages. Other pages (a tail of a bigger slab, a large block)
/// leave it to `back`: for objects above 2 KiB three of four pages then
/// read three descriptor lines instead of two, and a block of one or two
/// pages off such a boundary two instead of one. (Taking the byte offset
/// spares the free fast path a shift, and marking the `back` path cold a
/// jump: 2 of its instructions.)
///
/// # Safety
/// `descs` is an arena's descriptor array and `off` is below the arena's
/// size in bytes (its descriptors' number times the page size).
#[inline(always)]
#[cfg_attr(loom, allow(dead_code))] // the process heap's free (global/free.rs), not in loom builds
pub(crate) unsafe fn block_head_at<'a>(descs: *const PageDesc, off: usize) -> &'a PageDesc {
    use crate::os::PAGE_SHIFT;
    use crate::slab::class::MIN_SLAB_ORDER;
    let first = (off >> (PAGE_SHIFT + MIN_SLAB_ORDER)) << MIN_SLAB_ORDER;
    // SAFETY: `first` is at most the page index of `off`, which is in
    // range (caller), so the descriptor exists.
    let s = unsafe { &*descs.add(first) };
    // (Acquire pairs with `carve`'s publication of the kind, so a racing
    // invalid free sees the slab's fields set; free on x86.)
    if s.kind.load(Ordering::Acquire) == KIND_SLAB {
        return s;
    }
    core::hint::cold_path();
    let idx = off >> PAGE_SHIFT;
    // SAFETY: `idx` is in range (caller); `back` leads to the page itself
    // or a live slab's first page.
    unsafe {
        let d = &*descs.add(idx);
        &*descs.add(idx - d.back.load(Ordering::Relaxed) as usize)
    }
}

/// Publishes the provenance of a descriptor array (an arena's, or a
/// sentinel pair) for [`PageDesc::owner_line`], which steps from one
/// descriptor to the next through it. Costs nothing at run time; call it
/// once the array is in place, before any owner line of it is read.
#[inline(always)]
pub(crate) fn expose(descs: *const PageDesc) {
    let _ = descs.expose_provenance();
}

#[repr(C, align(64))]
pub(crate) struct PageDesc {
    pub(crate) kind: AtomicU8,
    pub(crate) order: AtomicU8,
    pub(crate) class: AtomicU8,
    pub(crate) flags: AtomicU8,
    pub(crate) back: AtomicU32,
    /// `next` (low half) and `prev` (high half) page indices on a list, or,
    /// in a slab's owner line, the owner's `frees` head (see the module
    /// docs); use the accessors.
    links: RacyCell<u64>,
    /// In a slab's owner line: the owner's allocation list (objects linked
    /// through their first word).
    pub(crate) free: RacyCell<*mut u8>,
    /// In a slab's owner line: objects handed out and not yet returned to
    /// the owner's lists. In its first page's: a copy of that count as of
    /// the slab's last detach ([`PageDesc::detached_used`]).
    pub(crate) used: AtomicU32,
    /// In a slab's owner line: objects never handed out start at index
    /// `bump`.
    pub(crate) bump: RacyCell<u32>,
    /// Address of the slab's first object (0 on other pages and on the
    /// thread caches' sentinel).
    pub(crate) lo: RacyCell<usize>,
    /// Bytes of the slab's objects (capacity times object size; 0 where
    /// `lo` is 0): every object, and so every valid free-list link `b`,
    /// has `b - lo < span`, one subtraction and one comparison.
    pub(crate) span: RacyCell<usize>,
    /// Remote free list, count and detached bit (see `slab::remote`).
    pub(crate) remote: AtomicU64,
    /// Address of the owning thread cache; 0 when detached;
    /// `slab::LOCK_HOLDER` while the heap lock's holder takes one object
    /// of a reserve-backed slab.
    pub(crate) owner: AtomicUsize,
}

/// The body of `PageDesc::new`, written once for its two signatures: loom's
/// atomics have no `const fn new`.
macro_rules! unused_desc {
    () => {
        PageDesc {
            kind: AtomicU8::new(KIND_UNUSED),
            order: AtomicU8::new(0),
            class: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            back: AtomicU32::new(0),
            links: RacyCell::new(0),
            free: RacyCell::new(core::ptr::null_mut()),
            used: AtomicU32::new(0),
            bump: RacyCell::new(0),
            lo: RacyCell::new(0),
            span: RacyCell::new(0),
            remote: AtomicU64::new(0),
            owner: AtomicUsize::new(0),
        }
    };
}

impl PageDesc {
    /// A descriptor in the `UNUSED` state (all zero).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        unused_desc!()
    }

    /// A descriptor in the `UNUSED` state.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        unused_desc!()
    }

    /// The owner line of the slab whose first page this is: the
    /// descriptor of its second page, which holds the slab's `free`,
    /// `frees` (in `links`), `used` and `bump` (see the module docs).
    ///
    /// # Safety
    /// `self` is followed in memory by another descriptor of the same
    /// allocation: it is the first page of a slab (live, or being carved)
    /// in an arena's descriptor array, whose slabs span at least
    /// `1 << MIN_SLAB_ORDER` pages, or the first of a sentinel pair; and
    /// that array or pair was passed to [`expose`] before.
    #[inline(always)]
    pub(crate) unsafe fn owner_line(&self) -> &PageDesc {
        // A reference to one descriptor grants access to that descriptor
        // only (under Stacked Borrows; Tree Borrows is laxer), so the next
        // one is reached through the provenance of the whole array, which
        // `expose` published, not through `self`. (An integer-to-pointer
        // cast: no instruction.)
        let next = self as *const PageDesc as usize + core::mem::size_of::<PageDesc>();
        // SAFETY: the next descriptor exists in the same exposed array and
        // lives as long as this one (caller); descriptors are only ever
        // shared, never borrowed mutably. `slab::remote::word` reaches the
        // remote word through here too.
        unsafe { &*core::ptr::with_exposed_provenance::<PageDesc>(next) }
    }

    /// For a slab's first page: its owner line's `used` as of the slab's
    /// last `detach`, exact while the slab stays detached (its count is
    /// then frozen), stale once it is claimed. For heuristics only.
    #[inline(always)]
    pub(crate) fn detached_used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn kind(&self) -> u8 {
        self.kind.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn has_flag(&self, f: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & f != 0
    }

    /// Sets or clears a flag (under the heap lock, or by the slab's owner
    /// for `FLAG_RESERVE` at carve time).
    pub(crate) fn set_flag(&self, f: u8, on: bool) {
        if on {
            self.flags.fetch_or(f, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!f, Ordering::Relaxed);
        }
    }

    pub(crate) fn order(&self) -> usize {
        self.order.load(Ordering::Relaxed) as usize
    }

    /// The next block or slab on this one's list (`NIL` at the end).
    ///
    /// # Safety
    /// Under the heap lock; the page heads a free block or a listed slab.
    #[inline]
    pub(crate) unsafe fn next(&self) -> u32 {
        // SAFETY: as guaranteed by the caller.
        unsafe { self.links.get() as u32 }
    }

    /// The previous block or slab on this one's list (`NIL` at the head).
    ///
    /// # Safety
    /// As for [`PageDesc::next`].
    #[inline]
    pub(crate) unsafe fn prev(&self) -> u32 {
        // SAFETY: as guaranteed by the caller.
        unsafe { (self.links.get() >> 32) as u32 }
    }

    /// Sets the next link.
    ///
    /// # Safety
    /// Under the heap lock; the page heads a free block or a slab being
    /// listed (no owner).
    #[inline]
    pub(crate) unsafe fn set_next(&self, next: u32) {
        // SAFETY: as guaranteed by the caller.
        unsafe {
            let l = self.links.get();
            self.links.set((l & !0xffff_ffff) | next as u64);
        }
    }

    /// Sets the previous link.
    ///
    /// # Safety
    /// As for [`PageDesc::set_next`].
    #[inline]
    pub(crate) unsafe fn set_prev(&self, prev: u32) {
        // SAFETY: as guaranteed by the caller.
        unsafe {
            let l = self.links.get();
            self.links.set((l & 0xffff_ffff) | (prev as u64) << 32);
        }
    }

    /// The head of the owner's `frees` list: objects the owner freed since
    /// its allocation list was last refilled from it (in the `links` of
    /// the [owner line](PageDesc::owner_line)).
    ///
    /// # Safety
    /// The caller owns the slab (or holds the heap lock while it is
    /// detached, when the list is empty), or the page is a thread cache's
    /// sentinel, whose list is always empty; as for
    /// [`PageDesc::owner_line`].
    #[inline(always)]
    pub(crate) unsafe fn frees(&self) -> *mut u8 {
        // SAFETY: as guaranteed by the caller.
        unsafe { self.owner_line().links.get() as usize as *mut u8 }
    }

    /// Sets the head of the `frees` list.
    ///
    /// # Safety
    /// The caller owns the slab, or is making it owned (`carve`, `claim`)
    /// or detached (`detach`); as for [`PageDesc::owner_line`].
    #[inline(always)]
    pub(crate) unsafe fn set_frees(&self, head: *mut u8) {
        // SAFETY: as guaranteed by the caller.
        unsafe { self.owner_line().links.set(head as usize as u64) }
    }
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<PageDesc>() == 64);
