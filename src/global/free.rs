//! The global allocator's free paths past the inline one: objects of
//! other threads' slabs (held by this thread, batched, or pushed onto
//! their slabs), page blocks, frees found from the pointer alone, and the
//! free without a layout.

use super::{
    process_heap, this_cache, with_armed_cache, with_cache, with_idle_cache, with_live_cache, FAST,
    TSTATE, T_LIVE,
};
use crate::arena::desc::{PageDesc, FLAG_RESERVE, KIND_SLAB};
use crate::diag;
use crate::heap::{HeapInner, Hold};
use crate::tcache::ThreadCache;
use core::sync::atomic::Ordering;

/// Frees `p` when it is an object of a slab this thread does not own,
/// without the slow path's re-entry guard, cache selection and second
/// lookups: onto this thread's foreign list when the list takes it
/// (`foreign.rs`), else into its remote batch or onto the slab's remote
/// stack.
/// False: nothing done (not such an object, a lock of ours is held, or the
/// `debug` feature's checks need the full path).
///
/// # Safety
/// `p` was returned by the process heap `h` and is not used after.
#[inline]
unsafe fn free_unowned(h: &HeapInner, p: *mut u8) -> bool {
    let Some(idx) = h.arena.page_of(p) else {
        return false;
    };
    let s = h.arena.block_head(idx);
    // SAFETY: forwarded from the caller; `s` is the descriptor `back` leads
    // to from `p`'s page.
    unsafe { free_unowned_in(h, s, p) }
}

/// [`free_unowned`] for a caller that has already found `s`, the
/// descriptor that the `back` offset of `p`'s page leads to.
///
/// # Safety
/// As for [`free_unowned`]; `s` is that descriptor, in `h`'s arena.
#[inline]
unsafe fn free_unowned_in(h: &HeapInner, s: &PageDesc, p: *mut u8) -> bool {
    // Under a lock of ours (a signal handler) the full path decides; it
    // never waits for the lock.
    if cfg!(feature = "debug") || crate::sync::holds_lock() {
        return false;
    }
    let owner = s.owner.load(Ordering::Relaxed);
    if s.kind() != KIND_SLAB || owner == this_cache() as usize {
        return false; // not a slab object, or one of this thread's slabs
    }
    let class = crate::slab::class_index(s);
    crate::heap::check_object_start(s, class, p);
    // The object goes on the foreign list, or (a class this thread does
    // not allocate, full lists) into the remote batch. (`with_idle_cache`
    // refuses after the exit hook, whose lists would strand their objects,
    // and inside the slow path.)
    if crate::foreign::ENABLED
        // SAFETY: `p` is a live object start of the slab `s` (checked just
        // above), given up by the caller; the cache is this thread's, of
        // the process heap.
        && with_idle_cache(|tc| Some(unsafe { h.hold(tc, s, class, p) })) == Some(true)
    {
        return true;
    }
    // SAFETY: as above; a slab's remote stack takes objects from any
    // thread, whoever owns the slab by now.
    unsafe { h.free_remote(s, p) };
    true
}

/// The free slow path of the process heap.
///
/// # Safety
/// `p` was returned by this allocator and is not used after.
#[cold]
#[inline(never)]
pub(super) unsafe fn dealloc_slow(p: *mut u8) {
    // (Objects of other threads' slabs first, apart from the rest, whose
    // stack frame costs a dozen instructions a call.)
    if let Some(h) = process_heap() {
        // SAFETY: forwarded from the caller.
        if unsafe { free_unowned(h, p) } {
            return;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_uncached(p) }
}

/// Holds `p`, an object of an ordinary slab this thread does not own, on
/// its foreign list or in its remote batch, with nothing called out of
/// line (`HeapInner::try_hold`), so that the caller needs no stack frame
/// when it is held. `None` when the full path must decide: a reserve
/// slab, a lock of ours held, a thread without a live cache.
///
/// # Safety
/// As for [`free_unowned_in`]; `s` is a slab (`KIND_SLAB`) whose owner
/// the caller found other than this thread's cache id.
#[inline(always)]
unsafe fn hold_unowned(h: &HeapInner, s: &PageDesc, p: *mut u8) -> Option<Hold> {
    if cfg!(feature = "debug") || !crate::foreign::ENABLED || crate::sync::holds_lock() {
        return None;
    }
    // The lists and the batch refuse reserve slabs (whose objects must
    // not reach an unprivileged allocation); the full path pushes the
    // object onto its slab's remote stack, which settles the slab, and so
    // returns its pages to the reserve, when it empties.
    if s.has_flag(FLAG_RESERVE) {
        return None;
    }
    let class = crate::slab::class_index(s);
    crate::heap::check_object_start(s, class, p);
    // (The thread's own cache is per-thread, the first gate of
    // `HeapInner::try_hold`; the second is checked below.)
    with_armed_cache(|tc| {
        if h.must_give_back(tc) {
            return Some(Hold::GiveBack);
        }
        // SAFETY: `p` is a live object start of the slab `s` of class
        // `class` (checked just above), given up by the caller; the cache
        // is this thread's, of the process heap, and the gates hold.
        Some(unsafe { h.try_hold(tc, s, class, p) })
    })
}

/// The free of an object whose slab descriptor `s` the inline path found
/// owned by someone else or by nobody (an owner other than this thread's
/// cache id): held by this thread
/// ([`hold_unowned`]), else pushed onto its slab's remote stack, else the
/// first of a new chain ([`start_chain_out_of_line`]), else
/// [`dealloc_unowned_full`]. The last three are tail calls, so the held
/// case runs without a stack frame. (What is no slab object goes to
/// [`dealloc_page_block`].)
///
/// # Safety
/// As for [`dealloc_slow`]; `s` is the descriptor that the `back` offset
/// of `p`'s page leads to (as `desc::block_head` finds it), in the
/// process heap's arena, and its owner is not this thread's cache id.
#[cold]
#[inline(never)]
unsafe fn dealloc_unowned(p: *mut u8, s: &PageDesc) {
    if s.kind() != KIND_SLAB {
        // SAFETY: forwarded from the caller.
        return unsafe { dealloc_page_block(p, s) };
    }
    if let Some(h) = process_heap() {
        // SAFETY: forwarded from the caller; `s` is a slab (tested above).
        match unsafe { hold_unowned(h, s, p) } {
            Some(Hold::Held) => return,
            // SAFETY: `hold_unowned` checked that `p` is a live object
            // start of the slab `s`, given up by the caller.
            Some(Hold::Remote) => return unsafe { free_remote_out_of_line(h, s, p) },
            // SAFETY: as above; `try_hold` asked for a new chain.
            Some(Hold::NewChain) => return unsafe { start_chain_out_of_line(h, s, p) },
            // SAFETY: as above; `try_hold` asked to hold it back.
            Some(Hold::Defer) => return unsafe { defer_out_of_line(h, s, p) },
            // Giving back, or another path.
            _ => {}
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_unowned_full(p, s) }
}

/// [`dealloc_unowned`] for what is no slab object: a page block is
/// parked when there is room (no lock, no second lookup); anything else,
/// a bad pointer too, takes the full path. (Out of line, so that the slab
/// case keeps its small frame.)
///
/// # Safety
/// As for [`dealloc_unowned`].
#[cold]
#[inline(never)]
unsafe fn dealloc_page_block(p: *mut u8, s: &PageDesc) {
    if let Some(h) = process_heap() {
        if !crate::sync::holds_lock()
            // SAFETY: `s` is a descriptor of the process heap's arena; `p`
            // is given up by the caller; the cache is this thread's.
            && with_live_cache(|tc| Some(unsafe { h.try_park_block(tc, s, p) })) == Some(true)
        {
            return;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_uncached(p) }
}

/// [`dealloc_unowned`] past its held case: [`free_unowned_in`] (which
/// also pushes chains and gives back what the cache holds), else the full
/// slow path.
///
/// # Safety
/// As for [`dealloc_unowned`].
#[cold]
#[inline(never)]
unsafe fn dealloc_unowned_full(p: *mut u8, s: &PageDesc) {
    if let Some(h) = process_heap() {
        // SAFETY: forwarded from the caller.
        if unsafe { free_unowned_in(h, s, p) } {
            return;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_uncached(p) }
}

/// `HeapInner::start_chain` as a function of its own, for a tail call
/// from [`dealloc_unowned`]: the chain of `p`'s class is of another slab
/// or full. (A cache no longer live takes the full path, which decides
/// anew.)
///
/// # Safety
/// As for `HeapInner::start_chain`, the cache being this thread's.
#[cold]
#[inline(never)]
unsafe fn start_chain_out_of_line(h: &HeapInner, s: &PageDesc, p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { on_live_cache(h, s, p, HeapInner::start_chain) }
}

/// `HeapInner::defer_free` as a function of its own, for a tail call
/// from [`dealloc_unowned`]. (A cache no longer live takes the full path.)
///
/// # Safety
/// As for `HeapInner::defer_free`, the cache being this thread's.
#[inline(never)]
unsafe fn defer_out_of_line(h: &HeapInner, s: &PageDesc, p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { on_live_cache(h, s, p, HeapInner::defer_free) }
}

/// Frees `p` (of the slab `s`) with `free` on this thread's cache, or,
/// when the cache is no longer live, through [`dealloc_unowned_full`].
///
/// # Safety
/// As `free` requires of its arguments, the cache being this thread's,
/// of the process heap `h`.
#[inline(always)]
unsafe fn on_live_cache(
    h: &HeapInner,
    s: &PageDesc,
    p: *mut u8,
    free: unsafe fn(&HeapInner, &mut ThreadCache, &PageDesc, *mut u8),
) {
    let done = with_live_cache(|tc| {
        // SAFETY: forwarded from the caller; the cache is this thread's,
        // of the process heap.
        unsafe { free(h, tc, s, p) };
        Some(())
    });
    if done.is_none() {
        // SAFETY: forwarded from the caller.
        unsafe { dealloc_unowned_full(p, s) }
    }
}

/// `HeapInner::free_remote` as a function of its own, for a tail call.
///
/// # Safety
/// As for `HeapInner::free_remote`.
#[inline(never)]
unsafe fn free_remote_out_of_line(h: &HeapInner, s: &PageDesc, p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { h.free_remote(s, p) }
}

/// The free slow path for what [`free_unowned`] does not take.
///
/// # Safety
/// As for [`dealloc_slow`].
#[cold]
#[inline(never)]
unsafe fn dealloc_uncached(p: *mut u8) {
    let Some(h) = process_heap() else {
        diag::fatal("invalid free (no lifeboat heap exists)", p as usize)
    };
    // SAFETY: the caller frees a pointer of the process heap.
    // A free re-entering lifeboat while this thread holds the heap lock
    // (or every shard) leaks the block rather than deadlock.
    with_cache(h, |tc| unsafe { h.free(tc, p) });
}

/// Frees `p` into `s`, a slab this thread owns, onto its `frees` list;
/// false if the free looks like a double free (an empty slab, or `p` at
/// the list's head), which the slow path then reports.
///
/// # Safety
/// The calling thread's cache `tc` owns the slab `s` (so its local list
/// and count, in its owner line, are ours); `p` is one of its objects,
/// given up by the caller, so its first word is ours to write.
#[inline(always)]
pub(super) unsafe fn free_local_fast(s: &PageDesc, p: *mut u8, tc: *mut ThreadCache) -> bool {
    // SAFETY: as guaranteed by the caller.
    unsafe {
        let o = s.owner_line();
        let used = o.used.load(Ordering::Relaxed);
        // The `frees` list, not the allocation list (see `slab`).
        let head = s.frees();
        if used == 0 || head == p {
            return false;
        }
        // The link is stored encoded (see `slab::key`).
        *(p as *mut usize) = crate::slab::key::encode(head, (*tc).key);
        s.set_frees(p);
        o.used.store(used - 1, Ordering::Relaxed);
    }
    true
}

/// Frees `p`, found from the pointer alone: the free fast path for a
/// block inside the process heap's arena. Its slab descriptor decides: a
/// slab this thread owns takes the object onto its `frees` list, anything
/// else goes to [`dealloc_unowned`].
///
/// # Safety
/// `p` was returned by the process heap and is not used after; `off` is
/// its offset from the arena's start, below the arena's size; `tc` is
/// this thread's cache.
#[inline(always)]
pub(super) unsafe fn free_in_arena(p: *mut u8, off: usize, tc: *mut ThreadCache) {
    let descs = FAST.descs.load(Ordering::Relaxed) as *const PageDesc;
    // SAFETY: `off` is below the size of the process heap's arena.
    let s = unsafe { crate::arena::desc::block_head_at(descs, off) };
    if s.owner.load(Ordering::Relaxed) != tc as usize {
        // Another thread's slab, a detached one, or no slab.
        // SAFETY: forwarded from the caller; `s` is what `back` leads to
        // from `p`'s page (`block_head`), its owner not this thread's
        // cache id (tested just above).
        return unsafe { dealloc_unowned(p, s) };
    }
    // SAFETY: this thread owns the slab `s`, whose object `p` is, given up
    // by the caller.
    if unsafe { free_local_fast(s, p, tc) } {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_slow(p) }
}

/// The free of an object of up to 1 KiB that is not in the thread's
/// active slab of its class: onto the thread's foreign list without a
/// descriptor read when it may ([`list_unchecked`]), else found from the
/// pointer ([`free_in_arena`]). Out of line, so that the inline free stays
/// small enough to be inlined.
///
/// # Safety
/// `p` lies inside the process heap's arena, at offset `off`, was handed
/// out for a layout of class `class`, a class this thread allocates, and
/// is given up by the caller; `tc` is this thread's cache.
#[inline(never)]
pub(super) unsafe fn dealloc_outside_active(
    p: *mut u8,
    class: usize,
    off: usize,
    tc: *mut ThreadCache,
) {
    // SAFETY: forwarded from the caller.
    if unsafe { list_unchecked(p, class, tc) } {
        return;
    }
    // (A refusal for room is counted, and a thread found only freeing
    // gives its lists back, on this path, as for any unowned free.)
    // SAFETY: forwarded from the caller.
    unsafe { free_in_arena(p, off, tc) }
}

/// Frees a block of the process heap (the one behind [`Lifeboat`]) given
/// only its address, as C's `free` must: the block is found from the
/// pointer. [`GlobalAlloc::dealloc`] also uses the layout, which lets a
/// small object skip its slab's descriptor, so it must get the layout the
/// block was allocated (or last reallocated) with, as `GlobalAlloc`
/// requires; this function has no such requirement.
///
/// ```
/// use std::alloc::{GlobalAlloc, Layout};
///
/// let a = lifeboat::Lifeboat::new();
/// // SAFETY: a non-zero size.
/// let p = unsafe { a.alloc(Layout::from_size_align(100, 8).unwrap()) };
/// assert!(!p.is_null());
/// // SAFETY: `p` came from the process heap and is not used after.
/// unsafe { lifeboat::free_without_layout(p) };
/// ```
///
/// # Safety
/// `p` was returned by the process heap (through [`Lifeboat`] or this
/// crate's C front) and is not used afterwards.
///
/// [`Lifeboat`]: crate::Lifeboat
/// [`GlobalAlloc::dealloc`]: core::alloc::GlobalAlloc::dealloc
pub unsafe fn free_without_layout(p: *mut u8) {
    let p = crate::arena::own_provenance(p);
    // SAFETY: forwarded from the caller; the thread's own cache.
    unsafe { free_by_pointer(p, this_cache()) }
}

/// Frees `p`, found from the pointer alone: [`free_in_arena`] for a block
/// of the arena (without `debug`), the slow path for anything else.
///
/// # Safety
/// `p` was returned by the process heap and is not used after; `tc` is
/// this thread's cache.
#[inline(always)]
pub(super) unsafe fn free_by_pointer(p: *mut u8, tc: *mut ThreadCache) {
    let off = (p as usize).wrapping_sub(FAST.base.load(Ordering::Relaxed));
    if !cfg!(feature = "debug") && off < FAST.bytes.load(Ordering::Relaxed) {
        // SAFETY: forwarded from the caller; `off` is below the arena's
        // size (tested just above).
        return unsafe { free_in_arena(p, off, tc) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_slow(p) }
}

/// Lists `p` on this thread's foreign list of `class` without reading its
/// slab's descriptor (`ForeignLists::unchecked_room`), when the thread's
/// cache is live and idle, `p` lies on the class's object grid (anything
/// else takes the descriptor path, which reports it) and the heap allows
/// it (`HeapInner::may_list_unchecked`). False: nothing done.
///
/// # Safety
/// `p` lies inside the process heap's arena, was handed out for a layout
/// of class `class`, a class this thread allocates
/// (`ForeignLists::allocates`), and is given up by the caller; `tc` is
/// this thread's cache.
#[inline(always)]
unsafe fn list_unchecked(p: *mut u8, class: usize, tc: *mut ThreadCache) -> bool {
    // (A lock of ours held by this thread, as in a signal handler that
    // interrupted one, does not matter here: the push takes none.)
    if !crate::foreign::ENABLED || TSTATE.with(|s| s.get()) != T_LIVE {
        return false;
    }
    // SAFETY: this thread's cache, live and not in use by a slow path
    // (the state is `T_LIVE`, without `T_BUSY`); nothing below re-enters.
    let tc = unsafe { &mut *tc };
    // The thread's own fields first (the caller has checked that the
    // thread allocates the class), before anything shared is read.
    // SAFETY: `class < NUM_CLASSES` (caller).
    let Some(charge) = (unsafe { tc.foreign.unchecked_room(class) }) else {
        return false;
    };
    // SAFETY: as above.
    if !unsafe { crate::slab::class::on_object_grid(p as usize, class) } {
        return false;
    }
    let h = match process_heap() {
        Some(h) if h.may_list_unchecked(tc) => h,
        _ => return false,
    };
    // (The heap's key, not the copy in the cache, which is set only when
    // the cache first installs a slab: a thread whose first allocations
    // failed has marked classes, and lists, before that.)
    // SAFETY: `p` was handed out by the process heap, whose key this is,
    // for a request of `class`, lies on its grid (tested above), and is
    // given up; the heap has no reserve slab (`may_list_unchecked`);
    // `charge` is from `unchecked_room`.
    unsafe { tc.foreign.link(class, p, h.slabs.key, charge) };
    true
}
