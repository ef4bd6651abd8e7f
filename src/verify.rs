//! [`Heap::verify`](crate::Heap::verify): a walk over every structure of a
//! heap that checks the invariants stated in the module docs of `arena`,
//! `arena::desc`, `slab` and `heap`. For tests and debugging; it takes
//! every lock of the heap (shard locks, then the heap lock), allocates
//! nothing and never panics.
//!
//! What is checked:
//!
//! * **buddy lists**: every listed block lies below the frontier, is aligned
//!   to its order, heads a `FREE` descriptor of that order, has a consistent
//!   `prev` link; no list has a cycle; each list's length equals its count;
//! * **page descriptors**: walking the blocks below the frontier from page
//!   0 (by their orders) covers every page exactly once; every block head is
//!   `FREE`, `PURGING`, `SLAB`, `LARGE` or `CACHED`; every other page is
//!   `TAIL` or `UNUSED`, with `back` equal to its offset in a slab and 0
//!   elsewhere; the `FREE` blocks met are exactly the listed ones;
//! * **slabs**: class, order, object size and capacity agree; `bump <=
//!   capacity`; the local free list and the remote stack hold only object
//!   starts below `bump`, without cycles or duplicates (also across the
//!   two lists); `local + used == bump` and `remote <= used`; a detached
//!   slab has no owner, still has live objects, the copy of its count in
//!   its first page's descriptor equals the count, and it is listed once
//!   it has enough free (`slab::list_threshold`: a quarter), and only with
//!   an object to give unless it is a spent reserve slab; a detached
//!   reserve slab is always listed, `SPENT` exactly when it has no free
//!   object (on a quiescent heap: a free's settle may be on its way); an
//!   owned slab is not listed and not reserve-backed (only the heap lock's
//!   holder owns one of those, inside one lock round);
//! * **slab lists**: every listed slab is a detached slab of that class
//!   and kind (ordinary, reserve, spent reserve) with `LISTED` set, links
//!   are consistent, no cycles, and every `LISTED` slab is on one;
//! * **shard caches**: each active, kept or retiring slot holds the
//!   sentinel or a slab of its class owned by that cache; the sentinel is
//!   an empty `UNUSED` descriptor;
//! * **growth runs**: each open run's head is a `LARGE` block of the run's
//!   order with `RUN` set, aligned to the run's top order and below the
//!   frontier, and each held block is `CACHED` and of its order;
//! * **direct mappings**: each table entry is page-aligned, outside the
//!   arena, non-empty and reachable by its probe sequence; their total is
//!   the `huge_bytes` counter;
//! * **accounting**: `free == budget - frontier + free block pages - direct
//!   mapping pages`; reserve-backed slab count and reserve pages (slabs and
//!   large blocks flagged `RESERVE`) match their counters; watermarks are
//!   ordered.
//!
//! Slab free lists are read only through [`next_link`], which decodes
//! their links with the heap's key.

use crate::arena::buddy::{MAX_ORDER, ORDERS};
use crate::arena::desc::{
    PageDesc, FLAG_LISTED, FLAG_RESERVE, FLAG_RUN, FLAG_SPENT, KIND_CACHED, KIND_FREE, KIND_LARGE,
    KIND_PURGING, KIND_SLAB, KIND_TAIL, KIND_UNUSED, NIL,
};
use crate::growth_run::Run;
use crate::heap::HeapInner;
use crate::os::{PAGE_SHIFT, PAGE_SIZE};
use crate::slab::class::{NUM_CLASSES, SLAB_ORDER};
use crate::slab::remote::{self, rcnt, rptr, DETACHED};
use crate::slab::{
    capacity, key, list_threshold, obj_size, slab_start, LIST_ORDINARY, LIST_SPENT, NUM_LISTS,
};
use crate::sync::Ordering;

/// A broken invariant found by [`Heap::verify`](crate::Heap::verify).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// Which invariant is broken.
    pub what: &'static str,
    /// Where: a page index, an address, a list's order or class.
    pub at: usize,
    /// The offending value (or the expected one; see `what`).
    pub value: usize,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "lifeboat: heap verification failed: {} (at {:#x}, value {:#x})",
            self.what, self.at, self.value
        )
    }
}

impl std::error::Error for VerifyError {}

type Res = Result<(), VerifyError>;

#[inline]
fn check(ok: bool, what: &'static str, at: usize, value: usize) -> Res {
    if ok {
        Ok(())
    } else {
        Err(VerifyError { what, at, value })
    }
}

/// The link stored in free object `obj` (local free lists and remote
/// stacks encode links alike).
///
/// # Safety
/// `obj` is a readable object start of a slab of `h`.
#[inline]
unsafe fn next_link(h: &HeapInner, obj: *mut u8) -> *mut u8 {
    // SAFETY: per the caller, `obj` is a readable, aligned object start
    // (objects are at least 8 bytes and 8-byte aligned).
    key::decode(unsafe { *(obj as *const usize) }, h.slabs.key)
}

/// Bits for the objects of one slab, to find duplicates in its lists.
const SEEN_BITS: usize = 4096;

/// Totals gathered by the descriptor walk.
#[derive(Default)]
struct Totals {
    free_pages: usize,
    free_blocks: usize,
    listed_free_pages: usize,
    listed_slabs: usize,
    reserve_slabs: usize,
    reserve_pages: usize,
}

impl HeapInner {
    /// See [`crate::Heap::verify`].
    pub(crate) fn verify(&self) -> Res {
        self.lock_all();
        let r = self.verify_locked();
        // SAFETY: taken just above by this thread.
        unsafe { self.unlock_all(false) };
        r
    }

    /// A growth run's head is its buffer (a `LARGE` block of the run's
    /// order with `RUN` set), and each held block is `CACHED`, of its order.
    fn verify_run(&self, r: Run, frontier: usize) -> Res {
        let a = &self.arena;
        check(
            r.order < r.top && r.top <= MAX_ORDER && r.head.is_multiple_of(1 << r.top),
            "growth run: bad orders or misaligned head",
            r.head,
            r.top,
        )?;
        check(
            r.head + (1 << r.top) <= frontier,
            "growth run: beyond the frontier",
            r.head,
            r.top,
        )?;
        let d = a.desc(r.head);
        check(
            d.kind() == KIND_LARGE && d.has_flag(FLAG_RUN) && d.order() == r.order,
            "growth run: head is not its buffer",
            r.head,
            d.order(),
        )?;
        for o in r.order..r.top {
            let hd = a.desc(r.head + (1 << o));
            check(
                hd.kind() == KIND_CACHED && hd.order() == o,
                "growth run: held block not CACHED of its order",
                r.head + (1 << o),
                o,
            )?;
        }
        Ok(())
    }

    fn verify_locked(&self) -> Res {
        let a = &self.arena;
        let npages = a.npages;
        // SAFETY: every lock is held.
        let frontier = unsafe { a.frontier() };
        check(
            frontier <= npages,
            "frontier beyond the budget",
            0,
            frontier,
        )?;
        let m = a.marks;
        check(
            m.min <= m.low && m.low <= m.high,
            "watermarks out of order",
            m.low,
            m.high,
        )?;

        // Buddy lists.
        let mut listed_pages = 0;
        let mut listed_blocks = 0;
        for o in 0..ORDERS {
            // SAFETY: every lock is held.
            let (head, count) = unsafe { a.free_list(o) };
            let (mut cur, mut prev, mut n) = (head, NIL, 0usize);
            while cur != NIL {
                let i = cur as usize;
                check(i < frontier, "buddy list: block beyond the frontier", i, o)?;
                check(
                    i.is_multiple_of(1 << o),
                    "buddy list: misaligned block",
                    i,
                    o,
                )?;
                check(
                    i + (1 << o) <= frontier,
                    "buddy list: block crosses the frontier",
                    i,
                    o,
                )?;
                let d = a.desc(i);
                check(
                    d.kind() == KIND_FREE,
                    "buddy list: block not FREE",
                    i,
                    d.kind() as usize,
                )?;
                check(
                    d.order() == o,
                    "buddy list: block of another order",
                    i,
                    d.order(),
                )?;
                // SAFETY: list links are under the heap lock, held.
                let (dp, dn) = unsafe { (d.prev(), d.next()) };
                check(dp == prev, "buddy list: broken prev link", i, dp as usize)?;
                n += 1;
                check(n <= (npages >> o), "buddy list: cycle", o, n)?;
                prev = cur;
                cur = dn;
            }
            check(
                n == count,
                "buddy list: length differs from its count",
                o,
                n,
            )?;
            listed_pages += n << o;
            listed_blocks += n;
        }

        // Descriptor walk.
        let mut t = Totals::default();
        let mut i = 0;
        while i < frontier {
            let d = a.desc(i);
            let o = d.order();
            check(o <= MAX_ORDER, "block order above MAX_ORDER", i, o)?;
            check(i % (1 << o) == 0, "misaligned block", i, o)?;
            check(i + (1 << o) <= frontier, "block crosses the frontier", i, o)?;
            let kind = d.kind();
            let is_slab = kind == KIND_SLAB;
            match kind {
                KIND_FREE | KIND_PURGING => {
                    t.free_pages += 1 << o;
                    if kind == KIND_FREE {
                        t.free_blocks += 1;
                        t.listed_free_pages += 1 << o;
                    }
                }
                KIND_SLAB => self.verify_slab(i, d, &mut t)?,
                KIND_LARGE | KIND_CACHED => {
                    if d.has_flag(FLAG_RESERVE) {
                        check(kind == KIND_LARGE, "reserve block parked in a cache", i, o)?;
                        t.reserve_pages += 1 << o;
                    }
                    check(
                        d.back.load(Ordering::Relaxed) == 0,
                        "large block: back != 0",
                        i,
                        0,
                    )?;
                }
                k => {
                    return Err(VerifyError {
                        what: "block head of a bad kind",
                        at: i,
                        value: k as usize,
                    })
                }
            }
            for j in 1..(1usize << o) {
                let td = a.desc(i + j);
                let tk = td.kind();
                check(
                    tk == KIND_TAIL || tk == KIND_UNUSED,
                    "page inside a block is not a tail",
                    i + j,
                    tk as usize,
                )?;
                let back = td.back.load(Ordering::Relaxed) as usize;
                let want = if is_slab { j } else { 0 };
                check(
                    back == want,
                    "page inside a block: wrong back offset",
                    i + j,
                    back,
                )?;
            }
            i += 1 << o;
        }
        check(
            t.listed_free_pages == listed_pages,
            "FREE pages differ from listed pages",
            listed_pages,
            t.listed_free_pages,
        )?;
        check(
            t.free_blocks == listed_blocks,
            "FREE blocks differ from listed blocks",
            listed_blocks,
            t.free_blocks,
        )?;

        // Growth runs.
        let mut runs = Ok(());
        self.runs.for_each(|r| {
            if runs.is_err() {
                return;
            }
            runs = self.verify_run(r, frontier);
        });
        runs?;

        // Slab lists.
        let mut on_lists = 0;
        for list in 0..NUM_LISTS {
            for class in 0..NUM_CLASSES {
                // SAFETY: the slab lists are under the heap lock, held.
                let (mut cur, mut prev, mut n) =
                    (unsafe { self.slabs.heads[list][class].get() }, NIL, 0usize);
                while cur != NIL {
                    let i = cur as usize;
                    check(
                        i < frontier,
                        "slab list: slab beyond the frontier",
                        i,
                        class,
                    )?;
                    let d = a.desc(i);
                    check(
                        d.kind() == KIND_SLAB,
                        "slab list: not a slab",
                        i,
                        d.kind() as usize,
                    )?;
                    check(
                        d.class.load(Ordering::Relaxed) as usize == class,
                        "slab list: slab of another class",
                        i,
                        class,
                    )?;
                    check(
                        d.has_flag(FLAG_RESERVE) == (list != LIST_ORDINARY),
                        "slab list: reserve flag differs from its list",
                        i,
                        list,
                    )?;
                    check(
                        d.has_flag(FLAG_SPENT) == (list == LIST_SPENT),
                        "slab list: spent flag differs from its list",
                        i,
                        list,
                    )?;
                    check(
                        d.has_flag(FLAG_LISTED),
                        "slab list: slab without LISTED",
                        i,
                        class,
                    )?;
                    // SAFETY: list links are under the heap lock, held.
                    let (dp, dn) = unsafe { (d.prev(), d.next()) };
                    check(dp == prev, "slab list: broken prev link", i, dp as usize)?;
                    n += 1;
                    check(n <= npages, "slab list: cycle", class, n)?;
                    prev = cur;
                    cur = dn;
                }
                on_lists += n;
            }
        }
        check(
            on_lists == t.listed_slabs,
            "LISTED slabs differ from slabs on the slab lists",
            on_lists,
            t.listed_slabs,
        )?;

        // Shard caches.
        let empty = &self.empty[0];
        check(
            empty.kind() == KIND_UNUSED,
            "sentinel slab is not UNUSED",
            0,
            empty.kind() as usize,
        )?;
        check(
            // SAFETY: the sentinel's lists are never written; it is the
            // first of a pair.
            unsafe { empty.owner_line().free.get().is_null() && empty.frees().is_null() },
            "sentinel slab has a free list",
            0,
            0,
        )?;
        for shard in &self.shards {
            // SAFETY: the shard lock is held.
            let tc = unsafe { &*shard.cache.get() };
            // Every slot that holds an owned slab: active and kept per
            // class, and the retiring slab (of whatever class it has).
            // A slot's page index, checked to name one of this heap's
            // descriptors before any use.
            let slot_index = |slot: *const PageDesc, class: usize| {
                let off = (slot as usize).wrapping_sub(a.descs as usize);
                let i = off / core::mem::size_of::<PageDesc>();
                check(
                    i < frontier && off.is_multiple_of(core::mem::size_of::<PageDesc>()),
                    "cache slot: not a descriptor of this heap",
                    slot as usize,
                    class,
                )
                .map(|()| i)
            };
            let retiring = tc.retiring();
            let retiring_class = if std::ptr::eq(retiring, empty) {
                None
            } else {
                let i = slot_index(retiring, 0)?;
                Some(a.desc(i).class.load(Ordering::Relaxed) as usize)
            };
            for class in 0..NUM_CLASSES {
                let slots = core::iter::once(tc.active[class])
                    .chain(tc.kept(class).iter().copied())
                    .chain((retiring_class == Some(class)).then_some(retiring));
                for slot in slots {
                    if std::ptr::eq(slot, empty) {
                        continue;
                    }
                    let d = a.desc(slot_index(slot, class)?);
                    check(
                        d.kind() == KIND_SLAB,
                        "cache slot: not a slab",
                        i,
                        d.kind() as usize,
                    )?;
                    check(
                        d.class.load(Ordering::Relaxed) as usize == class,
                        "cache slot: slab of another class",
                        i,
                        class,
                    )?;
                    let owner = d.owner.load(Ordering::Relaxed);
                    check(
                        owner == tc.id(),
                        "cache slot: slab owned by another cache",
                        i,
                        owner,
                    )?;
                }
            }
        }

        // Direct mappings.
        let mut huge_bytes = 0usize;
        let mut entries = 0;
        for k in 0..=self.huge_mask {
            // SAFETY: the table has huge_mask + 1 slots; under the heap lock.
            let e = unsafe { *self.huge.add(k) };
            if e.addr == 0 {
                continue;
            }
            entries += 1;
            check(
                e.addr % PAGE_SIZE == 0 && e.len % PAGE_SIZE == 0 && e.len != 0,
                "direct mapping: not page-granular",
                e.addr,
                e.len,
            )?;
            check(
                a.page_of(e.addr as *const u8).is_none(),
                "direct mapping inside the arena",
                e.addr,
                e.len,
            )?;
            // SAFETY: under the heap lock.
            let found = unsafe { self.huge_find(e.addr, false) };
            check(
                found == Some(e.len),
                "direct mapping unreachable by probing",
                e.addr,
                k,
            )?;
            huge_bytes += e.len;
        }
        check(
            entries <= self.huge_mask,
            "direct-mapping table full",
            entries,
            self.huge_mask,
        )?;
        // SAFETY: under the heap lock.
        let used = unsafe { self.huge_used.get() };
        check(
            used == entries,
            "direct-mapping table: entry count",
            entries,
            used,
        )?;
        let counted = self.counters.huge_bytes.load(Ordering::Relaxed);
        check(
            counted == huge_bytes,
            "huge_bytes differs from the table",
            huge_bytes,
            counted,
        )?;

        // Accounting.
        let expect = (npages - frontier + t.free_pages).checked_sub(huge_bytes >> PAGE_SHIFT);
        let free = a.free_pages();
        check(
            expect == Some(free),
            "free-page count",
            expect.unwrap_or(usize::MAX),
            free,
        )?;
        let rs = self.slabs.reserve_slabs.load(Ordering::Relaxed);
        check(
            rs == t.reserve_slabs,
            "reserve slab count",
            t.reserve_slabs,
            rs,
        )?;
        let rp = a.reserve_pages.load(Ordering::Relaxed);
        check(
            rp == t.reserve_pages,
            "reserve page count",
            t.reserve_pages,
            rp,
        )?;
        Ok(())
    }

    fn verify_slab(&self, i: usize, d: &PageDesc, t: &mut Totals) -> Res {
        let a = &self.arena;
        let o = d.order();
        let class = d.class.load(Ordering::Relaxed) as usize;
        check(class < NUM_CLASSES, "slab: bad class", i, class)?;
        check(
            o == SLAB_ORDER[class] as usize,
            "slab: order differs from its class",
            i,
            o,
        )?;
        let (size, cap) = (obj_size(d), capacity(d) as usize);
        // Under `debug` the live bitmap after the objects may cost objects.
        let bitmap = if cfg!(feature = "debug") {
            cap.div_ceil(8)
        } else {
            0
        };
        check(
            cap * size + bitmap <= PAGE_SIZE << o && (cap + 1) * size + bitmap > PAGE_SIZE << o,
            "slab: class capacity does not fill its order",
            i,
            cap,
        )?;
        // SAFETY: fixed while the slab is live; every lock is held; `d`
        // heads a slab, so it has an owner line.
        let (lo, span, bump) =
            unsafe { (d.lo.get(), d.span.get(), d.owner_line().bump.get() as usize) };
        check(
            lo == slab_start(a, d) as usize,
            "slab: object range does not start at the slab",
            i,
            lo,
        )?;
        check(span == cap * size, "slab: wrong object range", i, span)?;
        check(bump <= cap, "slab: bump beyond capacity", i, bump)?;
        // SAFETY: as above.
        let used = unsafe { d.owner_line() }.used.load(Ordering::Relaxed) as usize;
        // SAFETY: as above.
        let w = unsafe { remote::word(d) }.load(Ordering::Acquire);
        let rc = rcnt(w) as usize;
        let start = slab_start(a, d) as usize;
        let end = start + bump * size;
        let mut seen = [0u64; SEEN_BITS / 64];
        let dedup = cap <= SEEN_BITS;
        let mut walk = |head: *mut u8, remote_list: bool| -> Result<usize, VerifyError> {
            let (mut p, mut n) = (head, 0usize);
            while !p.is_null() {
                let addr = p as usize;
                check(
                    addr >= start && addr < end,
                    if remote_list {
                        "remote list: link outside the slab's used part"
                    } else {
                        "free list: link outside the slab's used part"
                    },
                    i,
                    addr,
                )?;
                check(
                    (addr - start).is_multiple_of(size),
                    if remote_list {
                        "remote list: link not at an object start"
                    } else {
                        "free list: link not at an object start"
                    },
                    i,
                    addr,
                )?;
                n += 1;
                check(
                    n <= cap,
                    if remote_list {
                        "remote list: cycle"
                    } else {
                        "free list: cycle"
                    },
                    i,
                    addr,
                )?;
                let k = (addr - start) / size;
                if dedup {
                    let (wd, bit) = (k / 64, 1u64 << (k % 64));
                    check(
                        seen[wd] & bit == 0,
                        "slab lists: object listed twice",
                        i,
                        addr,
                    )?;
                    seen[wd] |= bit;
                }
                // SAFETY: `p` was checked to be an object start inside the
                // slab's mapped pages.
                p = unsafe { next_link(self, p) };
            }
            Ok(n)
        };
        // SAFETY: the local list is frozen (every lock is held; owners are
        // shard caches of this heap, see `Heap::verify`); `d` heads a slab.
        let mut local = walk(unsafe { d.owner_line().free.get() }, false)?;
        // SAFETY: as above.
        let frees = unsafe { d.frees() };
        if d.owner.load(Ordering::Relaxed) != 0 {
            local += walk(frees, false)?;
        } else {
            // A claim takes the remote stack as `frees` when `free` is
            // not empty, so a detached slab's `frees` must be.
            check(
                frees.is_null(),
                "slab: detached with a frees list",
                i,
                frees as usize,
            )?;
        }
        let remote_n = walk(rptr(w), true)?;
        check(
            local + used == bump,
            "slab: free list + used != bump",
            i,
            local,
        )?;
        check(
            remote_n == rc,
            "slab: remote list length differs from its count",
            i,
            remote_n,
        )?;
        check(
            rc <= used,
            "slab: more remote frees than used objects",
            i,
            rc,
        )?;
        let owner = d.owner.load(Ordering::Relaxed);
        let reserve = d.has_flag(FLAG_RESERVE);
        let listed = d.has_flag(FLAG_LISTED);
        if w & DETACHED != 0 {
            check(owner == 0, "detached slab with an owner", i, owner)?;
            check(
                d.detached_used() as usize == used,
                "detached slab: frozen count copy differs from its count",
                i,
                d.detached_used() as usize,
            )?;
            check(
                used > rc,
                "detached slab with no live object not released",
                i,
                used,
            )?;
            let avail = cap - (used - rc);
            check(
                listed || avail < list_threshold(cap as u32) as usize,
                "detached slab with free objects not listed",
                i,
                avail,
            )?;
            let spent = d.has_flag(FLAG_SPENT);
            check(
                !listed || avail >= 1 || spent,
                "listed slab with no object to give",
                i,
                used,
            )?;
            check(
                !reserve || listed,
                "detached reserve slab not listed",
                i,
                avail,
            )?;
            check(
                spent == (reserve && avail == 0),
                "SPENT differs from a reserve slab with no free object",
                i,
                avail,
            )?;
        } else {
            check(owner != 0, "owned slab without an owner", i, 0)?;
            check(!listed, "owned slab on a partial list", i, owner)?;
            // (Only the heap lock's holder owns one, and only inside one
            // round: `slab::LOCK_HOLDER`.)
            check(!reserve, "reserve-backed slab owned by a cache", i, owner)?;
            check(!d.has_flag(FLAG_SPENT), "owned slab marked SPENT", i, owner)?;
        }
        if listed {
            t.listed_slabs += 1;
        }
        if reserve {
            t.reserve_slabs += 1;
            t.reserve_pages += 1 << o;
        }
        Ok(())
    }
}
