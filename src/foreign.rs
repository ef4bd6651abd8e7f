//! Foreign lists: objects a thread freed into slabs it does not own,
//! kept by that thread and handed out again to its own allocations.
//!
//! A thread that frees an object of another's slab would push it onto the
//! slab's remote stack: an atomic read-modify-write on the slab's
//! descriptor, and, for a *detached* slab (its owner flushed, usually
//! because the owning thread exited), from time to time a settle under the
//! heap lock; the object then waits in that slab until its owner collects
//! it or some thread claims the slab. In a server whose requests move
//! between threads (larson), nearly every free is of this kind. Instead,
//! the freeing thread keeps the object on a per-class list of its own and
//! gives it to its next allocation of that class that its active slab
//! cannot serve. No atomic, no lock, and the object is reused while its
//! line is still in this core's cache (jemalloc's thread caches take
//! foreign objects the same way). Objects the lists refuse go into the
//! remote batch (`remote_batch.rs`).
//!
//! Invariants:
//!
//! * a listed object is, for its slab, an allocated object: the slab's
//!   counts do not change when it is listed or handed out again, so a slab
//!   with listed objects is never released, and its owner, or whoever
//!   claims the slab meanwhile, sees consistent counts (and never hands
//!   the object out itself);
//! * only objects of classes the thread allocates are listed: a class is
//!   marked at the thread's first allocation of it that its active slab
//!   could not serve (such an allocation asks the list first). A
//!   thread that frees a class but never allocates it (a consumer) would
//!   otherwise fill its list with objects nobody takes, pinning up to
//!   [`MAX_OBJECTS`] slabs for as long as it lives;
//! * a pop never hands out an object of a reserve-backed slab, so the
//!   lists never give a reserve object to a caller without the right. The
//!   descriptor path lists only objects of ordinary slabs (a slab never
//!   becomes reserve-backed after it is carved); the layout path (below)
//!   lists nothing while the heap has a reserve-backed slab; and should a
//!   reserve object reach a list anyway, the pop, which reads the slab's
//!   flags, leaves it at the head, hands out nothing more from that list,
//!   and the allocation slow path that follows gives the lists back,
//!   returning it to its slab;
//! * the lists of one thread hold at most [`MAX_BYTES`] and
//!   [`MAX_OBJECTS`] (one budget: an object is charged its size, but at
//!   least `MAX_BYTES / MAX_OBJECTS`); `flush` (thread exit, reclaim's
//!   drain) returns every object to its slab through the ordinary free
//!   path, so nothing stays out when the thread is gone;
//! * a listed object keeps its slab from being released, so: the
//!   descriptor path lists an object only while at least a quarter of its
//!   slab is allocated (the last objects of a slab go back to it, so it
//!   can empty; the layout path cannot tell, and takes at most
//!   [`UNCHECKED_PER_ALLOCATION`] frees between two allocation slow paths
//!   of the thread, which pop what it listed; `used` counts
//!   objects waiting on the slab's remote stack as allocated until the
//!   owner collects them: their count sits on another cache line, which
//!   other threads write); while the heap's free pages are below the
//!   `low` watermark, or a drain that the cache has not answered is
//!   pending, nothing is listed and the thread's next
//!   free or allocation slow path gives back all it holds. A thread that
//!   neither frees nor allocates keeps its lists (at most [`MAX_OBJECTS`]
//!   objects, so at most that many slabs pinned) until it does or exits:
//!   other threads cannot reach a thread's lists without an atomic on
//!   every push and pop;
//! * a thread that is only freeing (tearing down what other threads
//!   built) would keep the objects it listed first while its later frees
//!   empty their slabs around them: up to [`MAX_OBJECTS`] slabs, nearly
//!   all of a structure's memory when the frees come in random order. So
//!   once the lists have refused [`REFUSALS_BEFORE_GIVING_BACK`] objects
//!   (for room, or from nearly empty slabs) with no allocation slow path
//!   of the thread in between, it gives back everything it holds and
//!   unmarks every class: it lists again only once an allocation of a
//!   class asks the list (a slow path that finds its active slab empty).
//!   The count costs nothing on the listing path; the allocation slow
//!   paths reset it. (A free the layout path refuses is counted by the
//!   descriptor path that takes it, if that refuses it too.);
//! * the lists never keep a thread off its own slabs for long: a thread
//!   whose active slab of a class is exhausted takes the list's objects
//!   first, and the objects it takes and frees again come back onto the
//!   list, on top, so a loop that allocates and frees the class would
//!   otherwise cycle through the same foreign objects for good, each turn
//!   through the foreign free and pop instead of the fast paths (four
//!   times the time of a 64-byte pair). So after [`POPS_BEFORE_REFILL`]
//!   pops in a row with no allocation served by the thread's own slabs,
//!   a pop hands out nothing, and the allocation slow path that follows
//!   refills the active slab (its own frees, bump region, remote frees, a
//!   kept slab, a claim or a carve); an allocation served that way, or by
//!   the thread's own frees, restarts the count;
//! * links are encoded with the heap's key, like a slab's local list; a
//!   pop (and the drain) checks that the object it takes is an object
//!   start of a live slab of the list's class, so a use-after-free write
//!   to a link, or an object the layout path listed for a layout of
//!   another class, ends in an abort, not in a block at an address of the
//!   writer's choice;
//! * the layout path: the global allocator's free of an object of up to
//!   1 KiB at alignment 8, outside the thread's active slab of its
//!   class, lists it by its layout's class without reading its slab's
//!   descriptor ([`ForeignLists::unchecked_room`], then
//!   [`ForeignLists::link`]): for a thread that frees what others
//!   allocated, that read misses the cache on most frees (larson). It
//!   checks at the free only what needs no descriptor (the thread's cache
//!   is live and idle, the class is one it allocates, there is room, the
//!   pointer lies on its class's object grid, the heap has no reserve
//!   slab, memory is not short and no drain is pending), and leaves the
//!   rest to the pop. Such an object may be of one of the thread's own
//!   slabs (only the descriptor tells); a pop hands it out and the drain
//!   frees it locally like any other;
//! * a double free of one of the first two objects of a list aborts at
//!   the free, when the lists take the second free; one they refuse, for
//!   room or a nearly empty slab, is checked against the list's head only
//!   (the object after it would cost a read of the head object on every
//!   refusal; checking both before the refusal tests cost xmalloc 2 % more
//!   instructions), and otherwise goes to its slab; a deeper one makes the
//!   list a loop, which aborts when a pop
//!   finds the charges of listed objects exhausted with the list not empty
//!   (after the looped objects may have been handed out more than once),
//!   or when a give-back walks it: the give-back finds the lists with
//!   objects by their heads, not by the charges, which a loop can leave
//!   looking empty;
//! * an object of one of the thread's own slabs may be freed once onto a
//!   list (the layout path) and once onto its slab's free list (the
//!   descriptor path, which takes the thread's frees when the layout path
//!   is closed), in either order; neither free's double-free test sees
//!   the other list. The pop that takes such an object from a list
//!   checks that it heads neither of its slab's free lists
//!   ([`check_own`]), which catches the second free while it is the
//!   slab's last (deeper, it is not caught);
//! * the layout path encodes its links with the heap's key, not with the
//!   thread cache's copy of it, which the cache's first slab sets: a
//!   thread whose first allocations failed has marked classes, and
//!   lists, before it has a slab.
//!
//! Off under the `debug` feature (whose live-object bitmap needs every
//! free to reach the slab) and in loom builds (the models check the shared
//! protocols; these lists are thread-local).

use crate::arena::desc::{PageDesc, FLAG_RESERVE, KIND_SLAB};
use crate::arena::Arena;
use crate::slab::class::{is_object_offset, CLASS_CAP, CLASS_SIZE, NUM_CLASSES, SLAB_ORDER};
use crate::slab::key;
use crate::sync::Ordering;

/// Most bytes one thread keeps on its foreign lists.
pub(crate) const MAX_BYTES: usize = 512 << 10;

/// Most objects one thread keeps on its foreign lists (each may pin a
/// slab of its own).
pub(crate) const MAX_OBJECTS: usize = 2048;

/// What listing one object of each class takes from the lists' room: its
/// size, but at least `MAX_BYTES / MAX_OBJECTS`, so that the one budget of
/// `MAX_BYTES` bounds both the bytes and the number of listed objects.
const CHARGE: [u32; NUM_CLASSES] = {
    let mut c = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let floor = (MAX_BYTES / MAX_OBJECTS) as u32;
        c[i] = if CLASS_SIZE[i] > floor {
            CLASS_SIZE[i]
        } else {
            floor
        };
        i += 1;
    }
    c
};

/// An object is listed only while at least 1/`MIN_LIVE_DIVISOR` of its
/// slab's objects are allocated.
const MIN_LIVE_DIVISOR: u32 = 4;

/// Fewest allocated objects of a slab of each class for one of its
/// objects to be listed: `1/MIN_LIVE_DIVISOR` of its capacity, rounded up
/// (a table, not a multiplication on every free).
const MIN_USED: [u32; NUM_CLASSES] = {
    let mut m = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        m[i] = CLASS_CAP[i].div_ceil(MIN_LIVE_DIVISOR);
        i += 1;
    }
    m
};

/// Frees the lists refuse for room or from a nearly empty slab, with no
/// allocation slow path of the thread in between, after which the thread
/// gives back everything it holds and lists nothing more until it
/// allocates again (see the module docs).
pub(crate) const REFUSALS_BEFORE_GIVING_BACK: u32 = 256;

/// Pops in a row, with no allocation served by the thread's own slabs in
/// between, after which a pop hands out nothing until one is (see the
/// module docs): a loop trapped on the lists' objects runs at most this
/// many turns through the foreign paths before its own slab serves it.
pub(crate) const POPS_BEFORE_REFILL: u32 = 256;

/// Frees outside the thread's active slab of their class that the global
/// allocator's free path may take by their layout, and so list unchecked
/// (see [`ForeignLists::unchecked_room`]), after an allocation slow path
/// of the thread and before its next one: past this many, it finds every
/// object from its pointer, reading the slab's descriptor, as before its
/// first allocation. A thread that frees many objects with no allocation
/// in between (tearing down a structure, a consumer) gains nothing from
/// the layout path: it would list objects of slabs it owns, which only
/// the descriptor tells apart and the descriptor path frees locally, to
/// take them back through the lists' slower pop or give them all back
/// once found [`freeing_only`](ForeignLists::freeing_only) (one thread
/// freeing 10,000 objects in random order took 1.37× mimalloc's time
/// without this bound, 0.99× with it); and a thread that frees classes it
/// never allocates would pay the layout path's class lookup on every free
/// for nothing. A thread that allocates as it frees (larson's threads pop
/// about once a free) rarely reaches the bound.
pub(crate) const UNCHECKED_PER_ALLOCATION: u32 = 64;

/// Whether foreign lists are used in this build.
pub(crate) const ENABLED: bool = !cfg!(feature = "debug") && !cfg!(loom);

/// The lists of one thread cache, one per size class.
pub(crate) struct ForeignLists {
    heads: [*mut u8; NUM_CLASSES],
    /// Classes this thread allocates (see the module docs).
    allocates: [bool; NUM_CLASSES],
    /// `MAX_BYTES` less the [`CHARGE`] of every listed object.
    room: u32,
    /// Pushes refused for room or from a nearly empty slab since the
    /// thread's last allocation slow path (see
    /// [`REFUSALS_BEFORE_GIVING_BACK`]).
    refused: u32,
    /// Pops since the last allocation the thread's own slabs served (see
    /// [`POPS_BEFORE_REFILL`]).
    popped: u32,
    /// A pop found a reserve object at a list's head (see
    /// [`ForeignLists::reserve_listed`]).
    reserve_listed: bool,
    /// Frees that may still take the layout path before the thread's
    /// next allocation slow path (see [`UNCHECKED_PER_ALLOCATION`]).
    unchecked_left: u32,
    /// The owner id of the thread cache these lists belong to, once it
    /// has installed a slab (`usize::MAX`, no owner's id, until then: it
    /// owns no slab before), for the pop's check of objects of its own
    /// slabs ([`check_own`]).
    owner_id: usize,
}

impl ForeignLists {
    pub(crate) const fn new() -> Self {
        Self {
            heads: [core::ptr::null_mut(); NUM_CLASSES],
            allocates: [false; NUM_CLASSES],
            room: MAX_BYTES as u32,
            refused: 0,
            popped: 0,
            reserve_listed: false,
            unchecked_left: UNCHECKED_PER_ALLOCATION,
            owner_id: usize::MAX,
        }
    }

    /// Records the owner id of the thread cache these lists belong to.
    /// The cache calls it whenever it installs a slab, so the id is set
    /// before a pop can meet an object of a slab the cache owns.
    #[inline]
    pub(crate) fn set_owner_id(&mut self, id: usize) {
        self.owner_id = id;
    }

    /// Whether the thread has only been freeing for a while: the lists
    /// refused [`REFUSALS_BEFORE_GIVING_BACK`] objects for room or from
    /// nearly empty slabs with no allocation slow path in between. Its
    /// listed objects then pin slabs that its own frees are emptying: it
    /// should give them back and
    /// [`forget_classes`](ForeignLists::forget_classes).
    #[inline]
    pub(crate) fn freeing_only(&self) -> bool {
        self.refused >= REFUSALS_BEFORE_GIVING_BACK
    }

    /// Notes an allocation slow path of the thread that its own slabs
    /// served, without the lists (a pop notes itself): the thread is not
    /// only freeing, and its lists may hand out objects again (see
    /// [`POPS_BEFORE_REFILL`]).
    #[inline(always)]
    pub(crate) fn note_allocation(&mut self) {
        self.refused = 0;
        self.popped = 0;
        self.unchecked_left = UNCHECKED_PER_ALLOCATION;
    }

    /// Unmarks every class (nothing is listed until the thread's next
    /// allocation of a class marks it again) and restarts the refusal
    /// count. For a thread found [`freeing_only`](ForeignLists::freeing_only),
    /// after its lists were given back.
    pub(crate) fn forget_classes(&mut self) {
        self.allocates = [false; NUM_CLASSES];
        self.refused = 0;
    }

    /// Whether some list is not empty (its head, not the room: a list
    /// made a loop by a double free can leave the room full while other
    /// lists still hold objects). For the give-back, which must not skip
    /// them.
    pub(crate) fn holds_objects(&self) -> bool {
        self.heads.iter().any(|h| !h.is_null())
    }

    /// Whether the room says that no object is listed: the pop's test of
    /// a loop (more pops than pushes).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // (`>`: after a pop of a list made a loop by a double free.)
        self.room >= MAX_BYTES as u32
    }

    /// Moves the listed objects out (for [`ForeignLists::drain`]), leaving
    /// these lists empty; the marks of allocated classes stay.
    pub(crate) fn take_lists(&mut self) -> ForeignLists {
        let taken = core::mem::replace(self, ForeignLists::new());
        self.allocates = taken.allocates;
        self.owner_id = taken.owner_id;
        taken
    }

    /// The lists' room taken so far (see [`CHARGE`]).
    #[cfg(all(test, not(loom), not(feature = "debug")))]
    pub(crate) fn charged(&self) -> usize {
        MAX_BYTES.saturating_sub(self.room as usize)
    }

    /// Lists `p`, an object of the ordinary slab `s` (which the thread
    /// does not own), if there is room; false (nothing done) otherwise.
    ///
    /// # Safety
    /// `p` is a live object start of slab `s`, given up by the caller;
    /// `class` is the slab's class (`slab::class_index`, fixed while the
    /// slab has live objects, `p` among them); `key` is the key of the heap
    /// of `s`.
    #[inline]
    pub(crate) unsafe fn push(
        &mut self,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
        key: usize,
    ) -> bool {
        if !ENABLED || s.has_flag(FLAG_RESERVE) {
            return false;
        }
        // SAFETY: `class < NUM_CLASSES` (caller).
        if !unsafe { *self.allocates.get_unchecked(class) } {
            return false;
        }
        // SAFETY: as above.
        let charge = unsafe { *CHARGE.get_unchecked(class) };
        if charge > self.room {
            // SAFETY: as above.
            unsafe { self.refuse(class, p) };
            return false;
        }
        // One of the last allocated objects of its slab goes back to the
        // slab: listed, it would keep a nearly empty slab from being
        // released. (A racy read of a count that the owner or the heap
        // lock's holder writes: a heuristic only, which leaves out the
        // objects waiting on the remote stack.)
        // A detached slab's count is frozen, and copied into the line read
        // already (`PageDesc::detached_used`); an owned one's is in its
        // owner line.
        let used = if s.owner.load(Ordering::Relaxed) == 0 {
            s.detached_used()
        } else {
            // SAFETY: `s` is a live slab (caller), so it has an owner line.
            unsafe { s.owner_line() }.used.load(Ordering::Relaxed)
        };
        // SAFETY: `class < NUM_CLASSES` (caller).
        if used < unsafe { *MIN_USED.get_unchecked(class) } {
            // SAFETY: as above.
            unsafe { self.refuse(class, p) };
            return false;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.link(class, p, key, charge) };
        true
    }

    /// Counts a refusal of `p`, an object of `class` that the lists do
    /// not take (no room, or its slab nearly empty), after checking that
    /// it does not head the class's list: a second free of the object
    /// listed last would otherwise go to its slab while the list still
    /// holds it, and both would hand it out. (The head only, whose word is
    /// in these lists already: the object after it, which [`link`] also
    /// checks, would cost a read of the head object on every refusal.)
    ///
    /// [`link`]: ForeignLists::link
    ///
    /// # Safety
    /// `class < NUM_CLASSES`.
    #[inline(always)]
    unsafe fn refuse(&mut self, class: usize, p: *mut u8) {
        // SAFETY: in range (caller).
        if unsafe { *self.heads.get_unchecked(class) } == p {
            already_listed(p);
        }
        self.refused = self.refused.saturating_add(1);
    }

    /// Whether the global allocator's free path may still take a free
    /// outside the thread's active slab by its layout (see
    /// [`UNCHECKED_PER_ALLOCATION`]); each such free is to be noted with
    /// [`ForeignLists::note_layout_free`].
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn layout_path_open(&self) -> bool {
        ENABLED && self.unchecked_left != 0
    }

    /// Notes a free taken by its layout outside the thread's active slab
    /// (see [`ForeignLists::layout_path_open`], which must have said yes).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn note_layout_free(&mut self) {
        // (Saturating: a signal handler's free between the caller's test
        // and this would otherwise wrap it, or panic in a debug build.)
        self.unchecked_left = self.unchecked_left.saturating_sub(1);
    }

    /// Whether `class` is one this thread allocates (see the module docs):
    /// the lists take no object of another class.
    ///
    /// # Safety
    /// `class < NUM_CLASSES`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn allocates(&self, class: usize) -> bool {
        // SAFETY: in range (caller).
        ENABLED && unsafe { *self.allocates.get_unchecked(class) }
    }

    /// The room an object of `class` takes (its [`CHARGE`]) if the lists
    /// have it, to pass to [`ForeignLists::link`]; `None` otherwise. For
    /// the layout path, which has checked [`ForeignLists::allocates`]
    /// first. A refusal is not counted here: the descriptor path, which
    /// then takes the free, counts it if it refuses the object too (an
    /// object of a slab the thread owns it frees locally, as ever).
    ///
    /// What such a listing leaves to later: whether the object is one of
    /// a live slab of `class`, and of an ordinary one, is checked when it
    /// is taken off the list (the pop or the drain); whether it is among
    /// the last allocated objects of its slab is not checked at all (see
    /// the module docs).
    ///
    /// # Safety
    /// `class < NUM_CLASSES`.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn unchecked_room(&self, class: usize) -> Option<u32> {
        // SAFETY: `class < NUM_CLASSES` (caller).
        let charge = unsafe { *CHARGE.get_unchecked(class) };
        (charge <= self.room).then_some(charge)
    }

    /// Links `p` at the head of the list of `class` and takes `charge`
    /// from the room, after checking that it is neither the head nor the
    /// object after it (a second free of either would make the list a
    /// loop; deeper ones are caught when a pop finds the count exhausted
    /// with objects still linked).
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `charge` is the class's [`CHARGE`], at most
    /// the room; `p` is an object start of a slab of the heap of `key` of
    /// `class`, given up by the caller, so its first word is ours, or, from
    /// the unchecked free path (`charge` from
    /// [`ForeignLists::unchecked_room`]), a block that heap handed out for
    /// a request of `class`, given up, lying on the class's object grid
    /// (`slab::class::on_object_grid`), while the heap has no
    /// reserve-backed slab.
    #[inline(always)]
    pub(crate) unsafe fn link(&mut self, class: usize, p: *mut u8, key: usize, charge: u32) {
        // SAFETY: in range (caller).
        let head = unsafe { *self.heads.get_unchecked(class) };
        if head == p
            // SAFETY: a non-null head is a listed object, whose first word
            // holds the encoded link.
            || (!head.is_null() && unsafe { key::decode(*(head as *const usize), key) } == p)
        {
            already_listed(p);
        }
        // SAFETY: `p` is ours (caller); its first word holds the link.
        unsafe { *(p as *mut usize) = key::encode(head, key) };
        // SAFETY: in range (caller).
        unsafe { *self.heads.get_unchecked_mut(class) = p };
        // (Wrapping: the layout path tests the room some instructions
        // before this, and a signal handler's free that listed an object
        // in between, a case the global allocator does not support, must
        // not panic in a debug build.)
        self.room = self.room.wrapping_sub(charge);
    }

    /// Pops an object of `class` for an allocation of that class, which
    /// marks the class as one this thread allocates; null if the list is
    /// empty, or if the lists have handed out [`POPS_BEFORE_REFILL`]
    /// objects since the thread's own slabs last served it (the caller's
    /// slow path then refills its active slab). Aborts if the head is not
    /// an object start of a live slab of `class`, or if it is an object
    /// of a slab the thread owns that also heads one of that slab's free
    /// lists (see [`check_own`]).
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `arena` and `key` are those of the heap the
    /// lists' objects belong to; the calling thread is the one whose cache
    /// these lists belong to.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, arena: &Arena, class: usize, key: usize) -> *mut u8 {
        if !ENABLED {
            return core::ptr::null_mut();
        }
        // SAFETY: in range (caller).
        unsafe { *self.allocates.get_unchecked_mut(class) = true };
        self.refused = 0;
        self.unchecked_left = UNCHECKED_PER_ALLOCATION;
        let popped = self.popped;
        if popped >= POPS_BEFORE_REFILL {
            return core::ptr::null_mut();
        }
        // (A pop of an empty list counts too: its caller goes on to the
        // thread's own slabs, which restarts the count.)
        self.popped = popped + 1;
        // SAFETY: forwarded.
        match unsafe { self.unlink_head(arena, class, key) } {
            Some((p, slab)) if !slab.has_flag(FLAG_RESERVE) => {
                if slab.owner.load(Ordering::Relaxed) == self.owner_id {
                    // SAFETY: the calling thread's cache owns `slab`, of
                    // which `p` is an object.
                    unsafe { check_own(slab, p) };
                }
                p
            }
            // SAFETY: `p` was the head just now, its link unchanged;
            // `class` is in range (caller).
            Some((p, _)) => unsafe { self.block_on_reserve(class, p) },
            None => core::ptr::null_mut(),
        }
    }

    /// A pop unlinked `p`, an object of a reserve-backed slab listed
    /// unchecked: it is never handed out from here. Puts it back at the
    /// head, where it blocks the list until the lists are given back
    /// ([`ForeignLists::reserve_listed`]); returns null. (Out of line: the
    /// pop stays small enough to be inlined.)
    ///
    /// # Safety
    /// `class < NUM_CLASSES`; `p` was the head of its list until just now,
    /// its link unchanged.
    #[cold]
    #[inline(never)]
    unsafe fn block_on_reserve(&mut self, class: usize, p: *mut u8) -> *mut u8 {
        // SAFETY: in range (caller).
        unsafe {
            *self.heads.get_unchecked_mut(class) = p;
            self.room -= *CHARGE.get_unchecked(class);
        }
        self.reserve_listed = true;
        core::ptr::null_mut()
    }

    /// Whether a pop found an object of a reserve-backed slab at the head
    /// of a list (listed unchecked (see [`ForeignLists::unchecked_room`]), which cannot
    /// tell): the lists must be given back, which returns it to its slab.
    #[inline]
    pub(crate) fn reserve_listed(&self) -> bool {
        self.reserve_listed
    }

    /// Pops an object of `class` without marking the class, with its
    /// slab's first-page descriptor; as [`ForeignLists::pop`] otherwise.
    ///
    /// # Safety
    /// As for [`ForeignLists::pop`].
    #[inline(always)]
    unsafe fn unlink_head<'a>(
        &mut self,
        arena: &'a Arena,
        class: usize,
        key: usize,
    ) -> Option<(*mut u8, &'a PageDesc)> {
        // SAFETY: in range (caller).
        let b = unsafe { *self.heads.get_unchecked(class) };
        if b.is_null() {
            return None;
        }
        if self.is_empty() {
            // More pops than pushes: a double free deeper in a list made
            // it a loop.
            crate::diag::fatal(
                "double free (this thread's foreign list loops back on itself)",
                b as usize,
            );
        }
        // SAFETY: `class < NUM_CLASSES` (caller).
        let Some(slab) = (unsafe { listed_slab(arena, b, class) }) else {
            // A forged link, or an object freed with the layout of
            // another class (listed unchecked by that class).
            crate::diag::fatal(
                "free list corrupted (an object on a foreign list is no object of its class; \
                 use after free, or freed with another layout?)",
                b as usize,
            )
        };
        // SAFETY: `b` is an object start of a live slab, listed here: its
        // first word is the encoded link.
        self.heads[class] = unsafe { key::decode(*(b as *const usize), key) };
        // SAFETY: in range (caller). (Past `MAX_BYTES` only in a list made
        // a loop, which the next pop reports.)
        self.room += unsafe { *CHARGE.get_unchecked(class) };
        Some((b, slab))
    }

    /// Empties every list; `release(slab, object)` gets each object, to
    /// free it through the ordinary path.
    ///
    /// The lists are walked side by side, [`DRAIN_BATCH`] objects at a
    /// time, and a batch is released only once it is gathered. Each list
    /// is a chain of dependent loads (an object's link is in the object),
    /// and when a thread exits its listed objects have mostly left this
    /// core's caches: walked one list after another, every object costs a
    /// memory latency (larson pinned to one core spent four fifths of
    /// this walk's samples on the link's load). Taking one object of each
    /// list in turn lets the misses of different lists overlap, and
    /// gathering before releasing keeps the releases' atomics from
    /// ordering the loads behind them.
    ///
    /// # Safety
    /// As for [`ForeignLists::pop`].
    pub(crate) unsafe fn drain(
        &mut self,
        arena: &Arena,
        key: usize,
        mut release: impl FnMut(&PageDesc, *mut u8),
    ) {
        // The classes with objects still listed, in no particular order.
        let mut classes = [0u8; NUM_CLASSES];
        let mut k = 0;
        for (class, head) in self.heads.iter().enumerate() {
            if !head.is_null() {
                classes[k] = class as u8;
                k += 1;
            }
        }
        // (Descriptor 0 only fills the slots: each slot is written before
        // it is read.)
        let mut batch = [(core::ptr::null_mut::<u8>(), arena.desc(0)); DRAIN_BATCH];
        while k != 0 {
            let mut n = 0;
            'gather: while k != 0 {
                let mut i = 0;
                while i < k {
                    let class = classes[i] as usize;
                    // SAFETY: `class < NUM_CLASSES` (an index of `heads`);
                    // the rest is forwarded.
                    let Some((p, slab)) = (unsafe { self.unlink_head(arena, class, key) }) else {
                        // This list is empty: drop its class.
                        k -= 1;
                        classes[i] = classes[k];
                        continue;
                    };
                    batch[n] = (p, slab);
                    n += 1;
                    i += 1;
                    if n == DRAIN_BATCH {
                        break 'gather;
                    }
                }
            }
            for &(p, slab) in &batch[..n] {
                release(slab, p);
            }
        }
    }
}

/// Objects [`ForeignLists::drain`] gathers before it releases them (on the
/// stack: 1 KiB).
const DRAIN_BATCH: usize = 64;

// `ForeignLists::drain` names a class in a byte.
const _: () = assert!(NUM_CLASSES <= 256);

/// `p`, freed, is already on this thread's foreign list.
#[cold]
#[inline(never)]
fn already_listed(p: *mut u8) -> ! {
    crate::diag::fatal(
        "double free (the object is already on this thread's foreign list)",
        p as usize,
    )
}

/// A pop took `p`, an object of `s`, a slab of the popping thread: the
/// layout path lists such objects (it cannot tell the thread's own slabs
/// without the descriptor), and the descriptor path frees them onto the
/// slab's own lists. One object on both was freed twice, once each way,
/// which the double-free test of either path alone does not see: the pop
/// checks that `p` heads neither of the slab's free lists, which catches
/// the second free while it is the slab's last. (Deeper, it is not
/// caught.)
///
/// # Safety
/// The calling thread owns `s`, so its owner line and lists are its own.
#[inline(always)]
unsafe fn check_own(s: &PageDesc, p: *mut u8) {
    // SAFETY: as guaranteed by the caller.
    let (frees, free) = unsafe { (s.frees(), s.owner_line().free.get()) };
    if frees == p || free == p {
        crate::diag::fatal(
            "double free (the object is on this thread's foreign list and on its slab's free list)",
            p as usize,
        );
    }
}

/// The first-page descriptor of the live slab of `class` of which `b` is
/// an object start; `None` if `b` is no such object. (A reserve-backed
/// slab passes: an unchecked listing may take its objects, and the drain
/// returns them like any other; the pop does not hand them out.)
///
/// # Safety
/// `class < NUM_CLASSES`.
unsafe fn listed_slab(arena: &Arena, b: *const u8, class: usize) -> Option<&PageDesc> {
    let idx = arena.page_of(b)?;
    // A slab of `class` holding `b` starts at `idx` rounded down to the
    // class's slab order (one descriptor read, not two through `back`).
    // SAFETY: `class < NUM_CLASSES` (caller).
    let order = unsafe { *SLAB_ORDER.get_unchecked(class) };
    let s = arena.desc((idx >> order) << order);
    // SAFETY: `lo` and `span` are fixed while the slab is live, and zero
    // (nothing passes) on other pages.
    let (lo, span) = unsafe { (s.lo.get(), s.span.get()) };
    let off = (b as usize).wrapping_sub(lo);
    (s.kind() == KIND_SLAB
        && s.class.load(Ordering::Relaxed) as usize == class
        && off < span
        && is_object_offset(off, class))
    .then_some(s)
}

#[cfg(all(test, not(loom), not(feature = "debug")))]
mod tests {
    use super::*;

    /// The owner id of the stand-in slabs: another thread's cache.
    const OTHER: usize = 0x1000;

    /// Makes the stand-in slab `slab` (its first two page descriptors)
    /// have `used` objects allocated, owned by [`OTHER`], or detached by
    /// it (through `slab::detach`, which freezes the count).
    fn set_count(slab: &[PageDesc; 2], used: u32, detached: bool) {
        crate::arena::desc::expose(slab.as_ptr());
        let s = &slab[0];
        // SAFETY: `s` is the first of a pair.
        unsafe { crate::slab::remote::word(s) }.store(0, Ordering::Relaxed);
        s.owner.store(OTHER, Ordering::Relaxed);
        // SAFETY: `s` is the first of a pair.
        unsafe { s.owner_line() }
            .used
            .store(used, Ordering::Relaxed);
        if detached {
            // SAFETY: the stand-in slab's `frees` list is empty, and the
            // test stands in for its owner.
            unsafe { crate::slab::detach(s, 0) };
        }
    }

    /// Pushes stand-in objects of `class` of the stand-in slab `slab` (its
    /// first two page descriptors) until refused; how many went in.
    fn fill(
        lists: &mut ForeignLists,
        slab: &[PageDesc; 2],
        class: usize,
        words: &mut [usize],
    ) -> usize {
        let s = &slab[0];
        s.class.store(class as _, Ordering::Relaxed);
        set_count(slab, CLASS_CAP[class], true);
        lists.allocates[class] = true;
        let mut n = 0;
        // (One pointer for all the objects: a new `as_mut_ptr` borrow for
        // each would invalidate the links written through the last.)
        let base = words.as_mut_ptr();
        // SAFETY: the "objects" are words of `words` (only the link word is
        // written), each pushed once; `n` stays in range because the bounds
        // refuse a push before `words` runs out; `s` is the first of two
        // descriptors, like a slab's.
        while n < words.len() && unsafe { lists.push(s, class, base.add(n).cast(), 0) } {
            n += 1;
        }
        n
    }

    #[test]
    fn reserve_objects_are_never_listed_and_both_bounds_hold() {
        // A slab's first two page descriptors (the second is its owner
        // line).
        let descs = [PageDesc::new(), PageDesc::new()];
        let s = &descs[0];
        let mut words = vec![0usize; MAX_OBJECTS * 4];

        s.set_flag(FLAG_RESERVE, true);
        let mut lists = ForeignLists::new();
        assert_eq!(
            fill(&mut lists, &descs, 3, &mut words),
            0,
            "a reserve object was listed"
        );
        assert_eq!(lists.charged(), 0);

        // Small objects: the object count is the bound.
        s.set_flag(FLAG_RESERVE, false);
        let small = 0;
        assert!(MAX_BYTES / CLASS_SIZE[small] as usize > MAX_OBJECTS);
        let mut lists = ForeignLists::new();
        assert_eq!(fill(&mut lists, &descs, small, &mut words), MAX_OBJECTS);
        assert_eq!(lists.charged(), MAX_BYTES);

        // The biggest objects: the byte count is the bound.
        let big = NUM_CLASSES - 1;
        let size = CLASS_SIZE[big] as usize;
        let mut lists = ForeignLists::new();
        assert_eq!(fill(&mut lists, &descs, big, &mut words), MAX_BYTES / size);
        assert!(lists.charged() <= MAX_BYTES);
    }

    #[test]
    fn refusals_with_no_allocation_mark_a_thread_as_only_freeing() {
        let descs = [PageDesc::new(), PageDesc::new()];
        let s = &descs[0];
        let class = 3;
        let mut words = vec![0usize; MAX_OBJECTS + 2 * REFUSALS_BEFORE_GIVING_BACK as usize];
        let mut lists = ForeignLists::new();
        let listed = fill(&mut lists, &descs, class, &mut words);
        // `fill` stops at the first refusal (for room).
        assert_eq!(lists.refused, 1);
        // SAFETY: in range: `words` has room past the listed ones.
        let spare = unsafe { words.as_mut_ptr().add(listed + 1) };
        let refuse = |lists: &mut ForeignLists, n: u32| {
            for i in 0..n as usize {
                // SAFETY: stand-in objects inside `words`, never listed
                // (each push below is refused).
                let p = unsafe { spare.add(i) }.cast();
                // SAFETY: as above.
                assert!(!unsafe { lists.push(s, class, p, 0) });
            }
        };
        refuse(&mut lists, REFUSALS_BEFORE_GIVING_BACK - 2);
        assert!(!lists.freeing_only());
        refuse(&mut lists, 1);
        assert!(lists.freeing_only());
        // An allocation slow path restarts the count.
        lists.note_allocation();
        assert!(!lists.freeing_only());
        refuse(&mut lists, REFUSALS_BEFORE_GIVING_BACK);
        assert!(lists.freeing_only());
        // Given back and forgotten: nothing is listed until a pop (an
        // allocation of the class) marks the class again.
        let _ = lists.take_lists();
        lists.forget_classes();
        assert!(!lists.freeing_only());
        let p = words.as_mut_ptr().cast::<u8>();
        // SAFETY: a stand-in object; the lists are empty again.
        assert!(!unsafe { lists.push(s, class, p, 0) });
        lists.allocates[class] = true;
        // SAFETY: as above.
        assert!(unsafe { lists.push(s, class, p, 0) });
        // Refusals of a class the thread does not allocate do not count.
        let mut fresh = ForeignLists::new();
        refuse(&mut fresh, REFUSALS_BEFORE_GIVING_BACK);
        assert!(!fresh.freeing_only());
    }

    #[test]
    fn only_classes_the_thread_allocates_are_listed() {
        let descs = [PageDesc::new(), PageDesc::new()];
        let s = &descs[0];
        let class = 7;
        s.class.store(class as _, Ordering::Relaxed);
        set_count(&descs, CLASS_CAP[class], false);
        let mut words = [0usize; 2];
        let base = words.as_mut_ptr();
        // SAFETY: the second of the two words.
        let (a, b) = (base.cast::<u8>(), unsafe { base.add(1) }.cast::<u8>());
        let mut lists = ForeignLists::new();
        assert!(
            // SAFETY: stand-in objects (one word each), each pushed once.
            !unsafe { lists.push(s, class, a, 0) },
            "listed before any allocation"
        );
        // An allocation of another class marks only that one.
        lists.allocates[class + 1] = true;
        // SAFETY: as above.
        assert!(!unsafe { lists.push(s, class, a, 0) });
        lists.allocates[class] = true;
        // SAFETY: as above.
        assert!(unsafe { lists.push(s, class, b, 0) });
        // Giving the lists back keeps the marks.
        let taken = lists.take_lists();
        assert!(lists.is_empty() && !taken.is_empty());
        // SAFETY: as above (`a` was refused twice, so never listed).
        assert!(unsafe { lists.push(s, class, a, 0) });
    }

    #[test]
    fn the_last_allocated_objects_of_a_slab_are_not_listed() {
        let descs = [PageDesc::new(), PageDesc::new()];
        let s = &descs[0];
        let class = 5;
        let cap = CLASS_CAP[class];
        s.class.store(class as _, Ordering::Relaxed);
        let mut word = 0usize;
        let obj = &mut word as *mut usize as *mut u8;
        let try_push = |used: u32, detached: bool| {
            set_count(&descs, used, detached);
            let mut lists = ForeignLists::new();
            lists.allocates[class] = true;
            // SAFETY: a stand-in object (one word), pushed once per list.
            unsafe { lists.push(s, class, obj, 0) }
        };
        // The same decisions for a slab another thread owns (its count in
        // the owner line) and for a detached one (the count frozen by
        // `detach`, read from the first line).
        for detached in [false, true] {
            assert!(
                try_push(cap, detached),
                "an object of a full slab was not listed"
            );
            assert!(try_push(cap / MIN_LIVE_DIVISOR + 1, detached));
            assert!(!try_push(cap / MIN_LIVE_DIVISOR - 1, detached));
            assert!(
                !try_push(1, detached),
                "the last object of a slab was listed"
            );
        }
        // A detached slab's count is the one `detach` froze.
        set_count(&descs, 1, true);
        assert_eq!(s.detached_used(), 1);
    }

    /// An object listed unchecked that turns out to be of a reserve slab
    /// is never handed out by a pop: it blocks its list until the lists
    /// are given back, and the drain returns it with the others.
    #[test]
    fn a_reserve_object_listed_unchecked_is_never_handed_out() {
        use crate::arena::watermark::Tier;
        let heap = crate::Heap::new(crate::Config::new().budget(16 << 20)).unwrap();
        let h = heap.inner();
        let class = 6;
        let order = crate::slab::class::SLAB_ORDER[class] as usize;
        // Two slabs of `class`, owned by a stand-in cache: the first
        // ordinary, the second reserve-backed.
        let carve = |reserve: bool| {
            h.with_lock(|| {
                // SAFETY: under the heap lock; the block just taken is
                // carved at once.
                unsafe {
                    let b = h.arena.alloc(order, Tier::Normal, true).unwrap();
                    crate::slab::carve(&h.arena, &h.slabs, b.idx, class, OTHER, reserve)
                }
            })
        };
        let ordinary = carve(false);
        let reserve = carve(true);
        // SAFETY: `lo` is fixed while the slabs live.
        let (q, p) = unsafe { (ordinary.lo.get() as *mut u8, reserve.lo.get() as *mut u8) };
        let key = h.slabs.key;
        let mut lists = ForeignLists::new();
        lists.allocates[class] = true;
        for obj in [q, p] {
            // SAFETY: `class` is in range; each stand-in object (a slab's
            // first, never handed out) is listed once.
            unsafe {
                let charge = lists.unchecked_room(class).unwrap();
                lists.link(class, obj, key, charge);
            }
        }
        // SAFETY: the lists hold objects of `h`'s arena, linked with its key.
        let popped = unsafe { lists.pop(&h.arena, class, key) };
        assert!(popped.is_null(), "a reserve object was handed out");
        assert!(lists.reserve_listed());
        // Blocked: the ordinary object under it stays listed too.
        // SAFETY: as above.
        assert!(unsafe { lists.pop(&h.arena, class, key) }.is_null());
        let mut drained = Vec::new();
        // SAFETY: as above.
        unsafe {
            lists.drain(&h.arena, key, |s, obj| {
                drained.push((obj, s.has_flag(FLAG_RESERVE)))
            })
        };
        drained.sort();
        let mut want = vec![(q, false), (p, true)];
        want.sort();
        assert_eq!(drained, want);
        assert!(lists.is_empty());
    }

    /// `listed_slab` finds the slab of every object start of a live slab
    /// of the list's class, and nothing for any other address: inside an
    /// object, past the slab's objects, in a block that is no slab, in a
    /// slab of another class, outside the arena.
    #[test]
    fn listed_slab_takes_object_starts_of_live_slabs_of_the_class_only() {
        use crate::arena::watermark::Tier;
        use crate::slab::class::{CLASS_CAP, SLAB_ORDER};
        let heap = crate::Heap::new(crate::Config::new().budget(16 << 20)).unwrap();
        let h = heap.inner();
        let (class, other) = (6, 7);
        let carve = |class: usize| {
            h.with_lock(|| {
                // SAFETY: under the heap lock; the block just taken is
                // carved at once.
                unsafe {
                    let b = h
                        .arena
                        .alloc(SLAB_ORDER[class] as usize, Tier::Normal, true);
                    let b = b.unwrap();
                    crate::slab::carve(&h.arena, &h.slabs, b.idx, class, OTHER, false)
                }
            })
        };
        let s = carve(class);
        let t = carve(other);
        // A block taken but not carved: no slab.
        let bare = h.with_lock(|| {
            // SAFETY: under the heap lock.
            unsafe {
                h.arena
                    .alloc(SLAB_ORDER[class] as usize, Tier::Normal, true)
            }
            .unwrap()
        });
        // SAFETY: `lo` is fixed while the slabs live.
        let (lo, t_lo) = unsafe { (s.lo.get(), t.lo.get()) };
        let size = CLASS_SIZE[class] as usize;
        let cap = CLASS_CAP[class] as usize;
        let found = |b: usize, c: usize| {
            assert!(c < NUM_CLASSES);
            // SAFETY: `c` is below `NUM_CLASSES` (asserted just above).
            unsafe { listed_slab(&h.arena, b as *const u8, c) }
        };
        let objects: Vec<usize> = if cfg!(miri) {
            vec![0, 1, cap - 1]
        } else {
            (0..cap).collect()
        };
        for i in objects {
            let b = lo + i * size;
            assert!(
                found(b, class).is_some_and(|f| core::ptr::eq(f, s)),
                "object {i}"
            );
            assert!(found(b + 8, class).is_none(), "inside object {i}");
        }
        assert!(found(lo + cap * size, class).is_none(), "past the objects");
        assert!(found(lo, other).is_none(), "a slab of another class");
        assert!(found(t_lo, class).is_none(), "an object of another class");
        assert!(found(t_lo, other).is_some());
        assert!(found(h.arena.page_addr(bare.idx) as usize, class).is_none());
        let end = h.arena.base as usize + h.arena.npages * crate::os::PAGE_SIZE;
        assert!(found(end, class).is_none(), "past the arena");
        assert!(
            found(h.arena.base as usize - size, class).is_none(),
            "below it"
        );
    }
}
