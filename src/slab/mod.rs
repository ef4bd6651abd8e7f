//! Slabs: runs of pages cut into objects of one size class.
//!
//! A slab's state lives in the descriptor of its first page, except for
//! the owner's lists and counts, which live in its second page's (the
//! *owner line*, so that other threads' frees, which read the first, do
//! not take the line the owner writes on every allocation; see
//! [`crate::arena::desc`]). A slab is, at any moment, in one of three
//! states:
//!
//! * **owned** by one thread cache (`owner` = its address; the slab is in
//!   one of that cache's slots, see `tcache.rs`). Only the owner pops its
//!   allocation list `free`, pushes its own frees onto `frees`, bumps
//!   `bump`, writes `used`. The two lists share no head, so an allocation
//!   never waits for the stores of the free just before it: with one list,
//!   each pop read the head that the previous push had just written, at an
//!   address the push computed from the freed pointer (descriptor lookup
//!   and all), a serial chain that made a tight alloc/free loop about twice
//!   as slow on a Zen 4 core (mimalloc keeps `free` and `local_free` apart
//!   for the same reason). A pop that finds `free` empty takes the whole
//!   `frees` list; `detach` appends `frees` to `free`, so a slab that is
//!   not owned has one list (and its remote stack). The remote stack is
//!   taken as it is, never walked to be appended ([`collect_remote`]): as
//!   `free` when that is empty, else as `frees` (when a claim makes the
//!   slab owned). `realloc` moving a buffer into the class pops
//!   the head of `frees` first ([`pop_frees`]): the object freed last,
//!   likely still in cache, which the copy writes at once.
//! * **detached**: nobody owns it (it was full when its owner moved on, or
//!   its owner flushed at thread exit). `DETACHED` is set in `remote`,
//!   whose stack `detach` leaves in place (`used` counts its objects as
//!   allocated, like any stack's, until a claim collects them); `free`,
//!   `bump` and `used` are frozen, touched only under the heap lock.
//!   A detached slab with enough objects to give ([`list_threshold`]) is
//!   on its class's partial list (`LISTED`); a detached slab with no live
//!   objects is released at once. A detached reserve-backed slab is always
//!   listed: on its partial list, or with no free object on the spent list
//!   (`SPENT`), which no claim takes from and lifting the reserve empties.
//!
//! (A variant of owned: a reserve-backed slab claimed or carved for one
//! reserve allocation is owned by [`LOCK_HOLDER`], the heap lock's holder,
//! until it is detached and settled again in the same lock round.)
//! * **released**: its pages are back in the buddy lists.
//!
//! Frees by non-owners go to `remote`, a lock-free stack packed in one word
//! with its length and the `DETACHED` bit ([`remote`]). The owner takes the
//! whole stack with one swap. A freer whose push onto a detached slab makes
//! enough of it free to be listed ([`list_threshold`]; for a reserve slab,
//! its first free object), or frees its last live object, calls [`settle`]
//! under the heap lock, which decides from the *state* (never from the
//! event) whether to list or release the slab; so it is idempotent and
//! safe against any interleaving.
//!
//! Links inside free objects, on the local list and on the remote stack,
//! are encoded with the heap's key ([`key`]); every pop checks that the
//! object it hands out lies inside its slab (`lo`, `span` in the
//! descriptor), so a use-after-free write to a link word ends in an abort,
//! not in a block at an address of the writer's choice.
//!
//! Reserve-backed slabs (`FLAG_RESERVE`) live on separate partial lists,
//! which only callers with memalloc rights claim from, and never in a
//! thread cache: such a caller takes one object in the lock round of its
//! claim (or carve), and the slab is detached and settled before the
//! round ends ([`LOCK_HOLDER`]). So a caller without the right never
//! receives their objects, and the frees that empty one, by any thread,
//! return its pages to the reserve at once. When pressure lifts, every
//! reserve slab is found on those lists (the spent ones too) and becomes
//! ordinary ([`unreserve_listed`]), so none outlives the pressure that made
//! it while its objects live on.

pub(crate) mod class;
#[cfg(feature = "debug")]
pub(crate) mod debug;
pub(crate) mod key;
pub(crate) mod remote;

/// The owner of a reserve-backed slab while the heap lock's holder takes
/// one object from it (`HeapInner::alloc_from_reserve`), which detaches it
/// again before the lock is released: odd, so no cache's address, and a
/// thread freeing into the slab meanwhile pushes onto its remote stack.
/// No cache owns a reserve-backed slab outside that lock round.
pub(crate) const LOCK_HOLDER: usize = 1;

use crate::arena::desc::{
    PageDesc, FLAG_LISTED, FLAG_RESERVE, FLAG_SPENT, KIND_SLAB, KIND_TAIL, NIL,
};
use crate::arena::Arena;
use crate::diag::fatal;
use crate::sync::{AtomicUsize, Ordering, RacyCell};
use class::{CLASS_CAP, CLASS_SIZE, NUM_CLASSES, SLAB_ORDER};
use remote::{rcnt, rptr, DETACHED};

/// [`SlabLists::heads`]: the partial lists of ordinary slabs.
pub(crate) const LIST_ORDINARY: usize = 0;
/// [`SlabLists::heads`]: the partial lists of reserve-backed slabs.
pub(crate) const LIST_RESERVE: usize = 1;
/// [`SlabLists::heads`]: the reserve-backed slabs with no free object
/// (`FLAG_SPENT`), which no claim takes; kept so that lifting the reserve
/// finds them ([`unreserve_listed`]).
pub(crate) const LIST_SPENT: usize = 2;
/// Number of lists per class.
pub(crate) const NUM_LISTS: usize = 3;

/// The lists of detached slabs, per class ([`LIST_ORDINARY`],
/// [`LIST_RESERVE`], [`LIST_SPENT`]). Heap lock.
pub(crate) struct SlabLists {
    pub(crate) heads: [[RacyCell<u32>; NUM_CLASSES]; NUM_LISTS],
    /// Live reserve-backed slabs (any state but released).
    pub(crate) reserve_slabs: AtomicUsize,
    /// The heap's free-list link key ([`key`]); fixed for the heap's life.
    pub(crate) key: usize,
}

impl SlabLists {
    pub(crate) fn new(key: usize) -> Self {
        Self {
            heads: core::array::from_fn(|_| core::array::from_fn(|_| RacyCell::new(NIL))),
            reserve_slabs: AtomicUsize::new(0),
            key,
        }
    }
}

/// Size class of slab `s` (a live slab's first page), clamped into the
/// tables' range (a compare and a move, where `%` by the class count
/// would be a multiply sequence) so no lookup needs a bounds check.
#[inline(always)]
pub(crate) fn class_index(s: &PageDesc) -> usize {
    (s.class.load(Ordering::Relaxed) as usize).min(NUM_CLASSES - 1)
}

/// Object size of slab `s` (a live slab's first page).
#[inline]
pub(crate) fn obj_size(s: &PageDesc) -> usize {
    CLASS_SIZE[class_index(s)] as usize
}

/// Capacity of slab `s` (a live slab's first page).
#[inline]
pub(crate) fn capacity(s: &PageDesc) -> u32 {
    CLASS_CAP[class_index(s)]
}

/// Whether `b` lies in the object range of slab `s`: `b - lo < span`.
#[inline(always)]
pub(crate) fn in_slab(s: &PageDesc, b: *const u8) -> bool {
    // SAFETY: `lo` and `span` are fixed while the slab is live, and zero
    // (nothing is inside) on the sentinel and on other pages.
    unsafe { (b as usize).wrapping_sub(s.lo.get()) < s.span.get() }
}

/// A free-list link that decoded outside its slab: a write after free
/// (or a wild write) changed it.
#[cold]
#[inline(never)]
pub(crate) fn bad_link(b: *const u8) -> ! {
    fatal(
        "free list corrupted (a link decodes outside its slab; use after free?)",
        b as usize,
    )
}

/// A slab's remote stack holds more objects than the slab has handed out:
/// some were freed twice (a double free deeper in a thread's chain, which
/// the push could not see). Its counts would wrap.
#[cold]
#[inline(never)]
fn more_freed_than_allocated(s: &PageDesc) -> ! {
    // SAFETY: `lo` is fixed while the slab is live.
    let start = unsafe { s.lo.get() };
    fatal(
        "double free (a slab's remote frees outnumber its allocated objects)",
        start,
    )
}

/// Index of a slab's first page.
#[inline]
pub(crate) fn slab_index(arena: &Arena, s: &PageDesc) -> usize {
    (s as *const PageDesc as usize - arena.descs as usize) / core::mem::size_of::<PageDesc>()
}

/// Address of a slab's first object.
#[inline]
pub(crate) fn slab_start(arena: &Arena, s: &PageDesc) -> *mut u8 {
    arena.page_addr(slab_index(arena, s))
}

/// Pops one object from the owner's allocation list; null when it is
/// empty (the caller's miss path then tries [`take_frees`]). Aborts if the
/// head lies outside the slab (a corrupted link put it there).
///
/// # Safety
/// The caller owns `s` (or `s` is a sentinel with an empty list); `key` is
/// the key of the heap of `s`.
#[inline(always)]
pub(crate) unsafe fn pop_local(s: &PageDesc, key: usize) -> *mut u8 {
    // SAFETY: forwarded (an owned slab or a sentinel pair has an owner
    // line); `free` is one of the owner's lists.
    unsafe {
        let o = s.owner_line();
        pop_head(s, o.free.get(), key, |next| o.free.set(next))
    }
}

/// Pops the head of the owner's `frees` list, the object it freed last,
/// whose lines are likely still in this core's cache; null when the list
/// is empty. For a caller that writes the whole object at once (`realloc`
/// moving a buffer): the allocation fast path takes the other list first
/// (see the module docs). Aborts like [`pop_local`] on a bad link.
///
/// # Safety
/// As for [`pop_local`].
#[cfg(not(loom))]
#[inline(always)]
pub(crate) unsafe fn pop_frees(s: &PageDesc, key: usize) -> *mut u8 {
    // SAFETY: forwarded; `frees` is one of the owner's lists.
    unsafe { pop_head(s, s.frees(), key, |next| s.set_frees(next)) }
}

/// Pops `b`, the head of one of the owner's two lists of `s`: hands the
/// link it holds to `set_head` and counts `b` as handed out; null if the
/// list is empty. Aborts if `b` lies outside the slab.
///
/// One range check serves as both the empty test and the corruption test:
/// null (and anything on the sentinel, whose `span` is 0) fails it, and
/// only then is null told apart from a bad link.
///
/// # Safety
/// As for [`pop_local`]; `b` is the head of the list that `set_head` sets.
#[inline(always)]
unsafe fn pop_head(
    s: &PageDesc,
    b: *mut u8,
    key: usize,
    set_head: impl FnOnce(*mut u8),
) -> *mut u8 {
    if !in_slab(s, b) {
        if b.is_null() {
            return b;
        }
        bad_link(b)
    }
    #[cfg(feature = "debug")]
    // SAFETY: `b` is a free object of the caller's slab.
    unsafe {
        debug::on_pop(s, b, key)
    };
    // SAFETY: the head, checked to lie inside the slab, is a free object
    // holding the encoded next link in its first word.
    set_head(key::decode(unsafe { *(b as *const usize) }, key));
    // SAFETY: `s` is an owned slab or a sentinel pair (caller), so it has
    // an owner line. (A sentinel never gets here: nothing passes its range
    // test.)
    let used = unsafe { &s.owner_line().used };
    used.store(used.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    b
}

/// Pushes `p`, an object of `s` being freed by its owner, onto its `frees`
/// list. Aborts on a double free that the list shows: `p` is its head, or
/// no object of the slab is out (the free count would exceed capacity).
///
/// # Safety
/// The caller owns `s`; `p` is an object of `s` (checked by the caller to
/// be an object start); `key` is the key of the heap of `s`.
#[inline(always)]
pub(crate) unsafe fn push_local(s: &PageDesc, p: *mut u8, key: usize) {
    // SAFETY: owner-only fields, of the owner line of an owned slab; `p`
    // is an object of `s` given up by the caller, so its first word is ours
    // to write.
    unsafe {
        let o = s.owner_line();
        let used = o.used.load(Ordering::Relaxed);
        let head = s.frees();
        if p == head {
            fatal(
                "double free (the object is the head of its slab's free list)",
                p as usize,
            );
        }
        if used == 0 {
            fatal(
                "double free (the slab's free count would exceed its capacity)",
                p as usize,
            );
        }
        #[cfg(feature = "debug")]
        debug::on_free(s, p);
        *(p as *mut usize) = key::encode(head, key);
        s.set_frees(p);
        o.used.store(used - 1, Ordering::Relaxed);
    }
}

/// The allocation list of `s` is empty: makes the `frees` list the
/// allocation list and pops from it; null if it is empty too. (Not part
/// of [`pop_local`]: a call in the inlined fast path made the
/// producer/consumer workload `xmalloc` about 1.2x slower, though it ran
/// the same instructions.)
///
/// # Safety
/// As for [`pop_local`].
#[inline]
pub(crate) unsafe fn take_frees(s: &PageDesc, key: usize) -> *mut u8 {
    // SAFETY: owner-only fields, of the owner line of an owned slab or a
    // sentinel pair (whose `frees` is null and is not written); the pop
    // checks the new head like any other.
    unsafe {
        let f = s.frees();
        if f.is_null() {
            return f;
        }
        s.set_frees(core::ptr::null_mut());
        s.owner_line().free.set(f);
        pop_local(s, key)
    }
}

/// Links up to `max` never-used objects from the bump region onto the local
/// list (touching memory a page at a time, so RSS follows use). Returns
/// false if the bump region is exhausted.
///
/// # Safety
/// The caller owns `s`, whose local list is empty; `key` is its heap's.
pub(crate) unsafe fn refill_from_bump(arena: &Arena, s: &PageDesc, max: u32, key: usize) -> bool {
    // SAFETY: owner-only fields, of the owner line of an owned slab; the
    // objects linked are inside the slab and not handed out (index >=
    // bump).
    unsafe {
        let o = s.owner_line();
        let (bump, cap) = (o.bump.get(), capacity(s));
        if bump >= cap {
            return false;
        }
        let size = obj_size(s);
        let n = (cap - bump).min(max);
        let base = slab_start(arena, s).add(bump as usize * size);
        for i in 0..n as usize {
            let obj = base.add(i * size);
            let next = if i + 1 < n as usize {
                base.add((i + 1) * size)
            } else {
                core::ptr::null_mut()
            };
            *(obj as *mut usize) = key::encode(next, key);
            #[cfg(feature = "debug")]
            debug::poison(obj, size);
        }
        o.free.set(base);
        o.bump.set(bump + n);
        true
    }
}

/// Takes the remote stack of `s` onto one of its owner's lists as it is:
/// as the allocation list `free` when that is empty, else as `frees`
/// (then empty), which allocations take when `free` runs dry. Returns how
/// many objects came.
///
/// Never appended to a non-empty list: that walks the stack to its last
/// object, one cache miss an object on lines other threads wrote (in
/// larson 3 % of the time went to such walks in `claim`, under the heap
/// lock, and 2 % at thread exits, by `perf`). The links are checked as
/// the owner pops them, as every pop checks.
///
/// # Safety
/// The caller owns `s`, or is claiming it under the heap lock; `free` or
/// `frees` is empty.
pub(crate) unsafe fn collect_remote(s: &PageDesc) -> u32 {
    // SAFETY: `s` is a slab (caller).
    let w = unsafe { remote::word(s) }.swap(0, Ordering::Acquire);
    let n = rcnt(w);
    if n != 0 {
        // SAFETY: the stack is ours after the swap; owner-only fields of
        // the owner line of a slab (caller), and one of the two lists is
        // empty (caller).
        unsafe {
            let o = s.owner_line();
            let used = o.used.load(Ordering::Relaxed);
            if n > used {
                more_freed_than_allocated(s);
            }
            if o.free.get().is_null() {
                o.free.set(rptr(w));
            } else {
                s.set_frees(rptr(w));
            }
            o.used.store(used - n, Ordering::Relaxed);
        }
    }
    n
}

/// Takes one object from `s` for its owner: the head of its allocation
/// list, else of its `frees` list, else, after linking up to `batch`
/// objects from the bump region or taking the remote stack, the new
/// head. Null when the slab has nothing to give.
///
/// # Safety
/// As for [`pop_local`]; `arena` is the arena of `s`, which is a slab
/// (not a sentinel).
#[inline]
pub(crate) unsafe fn take_object(arena: &Arena, s: &PageDesc, batch: u32, key: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut p = pop_local(s, key);
        if p.is_null() {
            p = take_frees(s, key);
        }
        // (Both lists are empty here, as `collect_remote` needs one.)
        if p.is_null() && (refill_from_bump(arena, s, batch, key) || collect_remote(s) != 0) {
            p = pop_local(s, key);
        }
        p
    }
}

/// Prepends a chain (ending in null) to the allocation list. Every link
/// walked is checked to stay inside the slab.
///
/// # Safety
/// The caller owns `s`; `chain` is null or a chain of free objects of `s`
/// linked with `key`, taken off its `frees` list.
unsafe fn append_local(s: &PageDesc, chain: *mut u8, key: usize) {
    // SAFETY: the chain is owned by the caller and null-terminated; every
    // link followed was checked to lie inside the slab; the local list is
    // owner-only, in the owner line of the caller's slab.
    unsafe {
        let local = s.owner_line().free.get();
        if !local.is_null() {
            let mut tail = chain;
            loop {
                let next = key::decode(*(tail as *const usize), key);
                if next.is_null() {
                    break;
                }
                if !in_slab(s, next) {
                    bad_link(next);
                }
                tail = next;
            }
            *(tail as *mut usize) = key::encode(local, key);
        }
        s.owner_line().free.set(chain);
    }
}

/// Carves a new slab of `class` at page `idx`, owned by `owner`.
///
/// # Safety
/// The caller holds the heap lock and just took the block at `idx` (of the
/// class's slab order) from the arena.
pub(crate) unsafe fn carve<'a>(
    arena: &'a Arena,
    lists: &SlabLists,
    idx: usize,
    class: usize,
    owner: usize,
    reserve: bool,
) -> &'a PageDesc {
    let order = SLAB_ORDER[class] as usize;
    let size = CLASS_SIZE[class];
    let s = arena.desc(idx);
    for i in 1..(1usize << order) {
        let t = arena.desc(idx + i);
        t.back.store(i as u32, Ordering::Relaxed);
        t.kind.store(KIND_TAIL, Ordering::Relaxed);
    }
    s.back.store(0, Ordering::Relaxed);
    s.order.store(order as u8, Ordering::Relaxed);
    s.class.store(class as u8, Ordering::Relaxed);
    s.flags
        .store(if reserve { FLAG_RESERVE } else { 0 }, Ordering::Relaxed);
    let lo = arena.page_addr(idx);
    // SAFETY: nobody else can see the slab yet (it was a free block); its
    // second page (the owner line) is its own (order >= MIN_SLAB_ORDER).
    unsafe {
        let o = s.owner_line();
        o.free.set(core::ptr::null_mut());
        o.bump.set(0);
        o.used.store(0, Ordering::Relaxed);
        s.lo.set(lo as usize);
        s.span.set(CLASS_CAP[class] as usize * size as usize);
        // The owner line's links field holds the (empty) `frees` list: it
        // may hold a free block's list links from before.
        s.set_frees(core::ptr::null_mut());
        #[cfg(feature = "debug")]
        debug::clear_live(s);
    }
    // SAFETY: as above (its second page is its own).
    unsafe { remote::word(s) }.store(0, Ordering::Relaxed);
    s.owner.store(owner, Ordering::Relaxed);
    if reserve {
        lists.reserve_slabs.fetch_add(1, Ordering::Relaxed);
    }
    // Publish the kind last: a racing (invalid) free sees SLAB only once the
    // fields above are set.
    s.kind.store(KIND_SLAB, Ordering::Release);
    s
}

/// Takes a detached slab off the partial list of `class` and makes `owner`
/// its owner. Remote frees become local.
///
/// # Safety
/// The caller holds the heap lock.
pub(crate) unsafe fn claim<'a>(
    arena: &'a Arena,
    lists: &SlabLists,
    class: usize,
    reserve: bool,
    owner: usize,
) -> Option<&'a PageDesc> {
    let list = if reserve { LIST_RESERVE } else { LIST_ORDINARY };
    let head = &lists.heads[list][class];
    // SAFETY: list heads and links are under the heap lock.
    let idx = unsafe { head.get() };
    if idx == NIL {
        return None;
    }
    let s = arena.desc(idx as usize);
    // SAFETY: under the heap lock; `s` is on this list. A detached slab's
    // `frees` is empty (`detach`), as `collect_remote` needs.
    unsafe {
        unlink(arena, lists, s);
        collect_remote(s);
    }
    s.owner.store(owner, Ordering::Relaxed);
    Some(s)
}

/// The owner gives up `s`: afterwards it is detached. The caller must then
/// call [`settle`] under the heap lock (so it is listed or released).
///
/// # Safety
/// The caller owns `s`; `key` is the key of its heap.
pub(crate) unsafe fn detach(s: &PageDesc, key: usize) {
    // SAFETY: we own the local fields (in the owner line of our slab);
    // `frees` is a chain of free objects of `s` (checked link by link on
    // the way), and is left empty, as a detached slab's is.
    unsafe {
        let frees = s.frees();
        if !frees.is_null() {
            s.set_frees(core::ptr::null_mut());
            append_local(s, frees, key);
        }
    }
    // SAFETY: `s` is our slab's first page, so it has an owner line.
    let used = unsafe { s.owner_line() }.used.load(Ordering::Relaxed);
    // The frozen count, where freers read it (`PageDesc::detached_used`).
    s.used.store(used, Ordering::Relaxed);
    s.owner.store(0, Ordering::Relaxed);
    // SAFETY: as above.
    let word = unsafe { remote::word(s) };
    if crate::model::fault_injected!(DetachSplitsWord) {
        let w = word.load(Ordering::Acquire);
        word.store(w | DETACHED, Ordering::Release);
        return;
    }
    // The remote stack stays where it is: a detached slab's counts include
    // it already (`settle` and the pushers' thresholds count `used` less
    // the stack), and the next claim takes it without a walk (see
    // `collect_remote`). Release: the frozen `used`, `free`, `bump` are
    // published to the next holder of the heap lock and to remote freers;
    // an RMW, so the pushes before it stay in the release sequence that a
    // claim's swap acquires.
    word.fetch_or(DETACHED, Ordering::AcqRel);
}

/// Lists or releases a detached slab according to its state; does nothing
/// to an owned or released one. Idempotent.
///
/// # Safety
/// The caller holds the heap lock; `s` is a descriptor of this arena.
pub(crate) unsafe fn settle(arena: &Arena, lists: &SlabLists, s: &PageDesc) {
    if s.kind() != KIND_SLAB {
        return;
    }
    // SAFETY: `s` heads a slab (tested above; under the heap lock it
    // stays one).
    let w = unsafe { remote::word(s) }.load(Ordering::Acquire);
    if w & DETACHED == 0 && !crate::model::fault_injected!(SettleSkipsRecheck) {
        return;
    }
    // SAFETY: `s` heads a slab (tested above) of this arena.
    let used = unsafe { s.owner_line() }.used.load(Ordering::Relaxed);
    if rcnt(w) > used {
        more_freed_than_allocated(s);
    }
    let listed = s.has_flag(FLAG_LISTED);
    if used == rcnt(w) {
        // SAFETY: under the heap lock; no live object remains.
        unsafe {
            if listed {
                unlink(arena, lists, s);
            }
            release(arena, lists, s);
        }
        return;
    }
    let cap = capacity(s);
    // Objects a claimer would get: everything but the live ones.
    let avail = cap - (used - rcnt(w));
    if s.has_flag(FLAG_RESERVE) {
        // Every detached reserve slab is listed: on its partial list with
        // a free object, else on the spent list, where lifting the reserve
        // finds it.
        let spent = avail == 0;
        if (listed && s.has_flag(FLAG_SPENT) == spent)
            || (spent && !listed && crate::model::fault_injected!(SpentLeftUnlisted))
        {
            return;
        }
        // SAFETY: under the heap lock; `s` is on the list its flags name
        // (if listed), and is relinked on the one they name now.
        unsafe {
            if listed {
                unlink(arena, lists, s);
            }
            s.set_flag(FLAG_SPENT, spent);
            link(arena, lists, s);
        }
    } else if avail >= list_threshold(cap) && !listed {
        // SAFETY: under the heap lock.
        unsafe { link(arena, lists, s) };
    }
}

/// Free objects a detached ordinary slab of `capacity` needs before it is
/// listed: a quarter of it (at least one), so that a claim yields a useful
/// batch for its heap-lock trip, and slabs with fewer free objects wait for
/// more remote frees. (A reserve-backed slab is always listed, on its
/// partial list from its first free object on: a reserve allocation takes
/// one object a claim, and only a listed slab can be claimed, so a higher
/// threshold would strand the rest of its free objects and carve new
/// reserve slabs before their time. See [`settle`].)
#[inline]
pub(crate) fn list_threshold(capacity: u32) -> u32 {
    (capacity / 4).max(1)
}

/// Returns a slab's pages to the arena.
///
/// # Safety
/// The caller holds the heap lock; the slab has no live objects, is not on
/// a list and has no owner.
pub(crate) unsafe fn release(arena: &Arena, lists: &SlabLists, s: &PageDesc) {
    // SAFETY: under the heap lock (caller).
    unsafe { unreserve(arena, lists, s) };
    s.flags.store(0, Ordering::Relaxed);
    s.owner.store(0, Ordering::Relaxed);
    // SAFETY: `s` is still the slab's first page (its pages go back below).
    unsafe { remote::word(s) }.store(0, Ordering::Relaxed);
    // (The owner line is left as it is: `carve` sets it.)
    // SAFETY: under the heap lock, with no owner; nothing is inside a
    // released slab.
    unsafe {
        s.lo.set(0);
        s.span.set(0);
    }
    let idx = slab_index(arena, s);
    let order = s.order();
    for i in 1..(1usize << order) {
        arena.desc(idx + i).back.store(0, Ordering::Relaxed);
    }
    // SAFETY: under the heap lock; the block is the slab's own.
    unsafe { arena.free(idx, order) };
}

/// The list of [`SlabLists::heads`] that the flags of `s` name.
#[inline]
fn list_of(s: &PageDesc) -> usize {
    if !s.has_flag(FLAG_RESERVE) {
        LIST_ORDINARY
    } else if s.has_flag(FLAG_SPENT) {
        LIST_SPENT
    } else {
        LIST_RESERVE
    }
}

/// Puts the detached slab `s` on the list of its class that its flags
/// name ([`list_of`]) and marks it `LISTED`.
///
/// # Safety
/// The caller holds the heap lock; `s` is a detached slab of `arena`, on
/// no list.
unsafe fn link(arena: &Arena, lists: &SlabLists, s: &PageDesc) {
    let class = s.class.load(Ordering::Relaxed) as usize;
    let list = if crate::model::fault_injected!(ReserveListedAsOrdinary) {
        LIST_ORDINARY
    } else {
        list_of(s)
    };
    let head = &lists.heads[list][class];
    let idx = slab_index(arena, s) as u32;
    // SAFETY: under the heap lock (caller).
    unsafe {
        let h = head.get();
        s.set_prev(NIL);
        s.set_next(h);
        if h != NIL {
            arena.desc(h as usize).set_prev(idx);
        }
        head.set(idx);
    }
    s.set_flag(FLAG_LISTED, true);
}

/// Takes `s` off the list it is on and clears `LISTED`.
///
/// # Safety
/// The caller holds the heap lock; `s` is a slab of `arena` on the list
/// of its class that its flags name (not changed since it was linked).
unsafe fn unlink(arena: &Arena, lists: &SlabLists, s: &PageDesc) {
    let class = s.class.load(Ordering::Relaxed) as usize;
    let head = &lists.heads[list_of(s)][class];
    // SAFETY: under the heap lock (caller).
    unsafe {
        let (p, n) = (s.prev(), s.next());
        if p == NIL {
            head.set(n);
        } else {
            arena.desc(p as usize).set_next(n);
        }
        if n != NIL {
            arena.desc(n as usize).set_prev(p);
        }
    }
    s.set_flag(FLAG_LISTED, false);
}

/// Clears the reserve flag of every reserve-backed slab of `class`
/// (pressure has lifted): those with free objects move to the ordinary
/// partial list; spent ones become ordinary detached slabs, listed if
/// frees since have brought them to the ordinary threshold. Every reserve
/// slab outside the lock is detached and listed (`settle`), so none is
/// missed. Returns how many spent ones it lifted.
///
/// # Safety
/// The caller holds the heap lock.
pub(crate) unsafe fn unreserve_listed(arena: &Arena, lists: &SlabLists, class: usize) -> usize {
    let mut spent = 0;
    for list in [LIST_RESERVE, LIST_SPENT] {
        loop {
            // SAFETY: under the heap lock.
            let idx = unsafe { lists.heads[list][class].get() };
            if idx == NIL {
                break;
            }
            let s = arena.desc(idx as usize);
            // SAFETY: under the heap lock; `s` heads the list its flags
            // name, and is detached.
            unsafe {
                unlink(arena, lists, s);
                unreserve(arena, lists, s);
                if list == LIST_RESERVE {
                    link(arena, lists, s);
                } else {
                    // Frees since it was spent have settles of their own
                    // to come, except in a fork child, where another
                    // thread's pending settle never runs: settle it now.
                    settle(arena, lists, s);
                    spent += 1;
                }
            }
        }
    }
    spent
}

/// Clears a slab's reserve flags and its share of the reserve accounting.
///
/// # Safety
/// The caller holds the heap lock; `s` is not on a list (the flags select
/// the list).
pub(crate) unsafe fn unreserve(arena: &Arena, lists: &SlabLists, s: &PageDesc) {
    if s.has_flag(FLAG_RESERVE) {
        s.set_flag(FLAG_RESERVE | FLAG_SPENT, false);
        lists.reserve_slabs.fetch_sub(1, Ordering::Relaxed);
        arena
            .reserve_pages
            .fetch_sub(1 << s.order(), Ordering::Relaxed);
    }
}
