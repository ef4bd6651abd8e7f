//! Remote batches: a thread's frees into a slab it does not own that its
//! foreign lists do not take (`foreign.rs`: a class the thread never
//! allocates, full lists), linked into a chain and pushed onto the slab's
//! remote stack with one atomic operation.
//!
//! Each free into another thread's slab is otherwise one CAS on the slab's
//! remote word, a line that the owner takes back with a swap whenever it
//! collects. A consumer freeing what a producer allocated frees objects
//! of each class mostly in allocation order, so in runs of one slab: the
//! batch links such a run on the freeing thread, with plain stores, and
//! pushes it as a whole when a free of another slab of the class arrives,
//! when it holds [`MAX_OBJECTS`] or [`MAX_CHAIN_BYTES`], or when the cache
//! is flushed (jemalloc and snmalloc batch cross-thread frees likewise;
//! mimalloc pays one CAS an object).
//!
//! Frees in random order across many slabs (a thread tearing down a
//! large structure that other threads built) make every chain one object
//! long: each costs its push, the batch's bookkeeping, and a second write
//! to its object when the push links it. After [`BYPASS_AFTER`] such
//! chains in a row, frees that would start a new chain go onto their
//! slabs' remote stacks one by one, for [`BYPASS_FOR`] frees; then the
//! batch is tried again. Each such push is an atomic operation, which
//! waits for the link just stored into an object the thread has not
//! touched: one memory latency a free, one after the other. So a
//! bypassing free is held back in a ring of [`DEFERRED`] and pushed when
//! the ring comes round to it; meanwhile its object's line and its slab's
//! remote word are fetched (handoff, whose frees are all like this:
//! 0.71× the time).
//!
//! Invariants:
//!
//! * a batched object is, for its slab, still allocated: the slab's live
//!   count includes it and no remote count does, so the slab is not
//!   released while the batch holds it. If the slab is detached (its
//!   owner exited before or meanwhile), the batch's push settles it as any
//!   push onto a detached slab does, for a count of several objects
//!   (`HeapInner::after_detached_push`). If this thread claims the slab
//!   meanwhile, the push goes onto its own slab's remote stack, which
//!   takes frees from any thread;
//! * at most one chain a size class a thread, each of one slab and at
//!   most [`MAX_OBJECTS`] objects and [`MAX_CHAIN_BYTES`] (one object of
//!   a class larger than that), and [`DEFERRED`] frees held back, so at
//!   most 88 slabs pinned and 2.75 MiB held; nothing is batched while the
//!   heap's free pages are below the `low` watermark or a drain the cache
//!   has not answered is pending (such a free pushes the batch first),
//!   and `flush` (thread exit, reclaim's drain) pushes it, so nothing
//!   stays out when the thread is gone. A thread that stops
//!   freeing into other threads' slabs keeps its batch until its next slow
//!   path that flushes, or its exit;
//! * only objects of ordinary slabs are batched: a reserve object goes back
//!   to its slab at once;
//! * links are encoded with the heap's key, like every free list; the push
//!   adds the chain's count to the stack's in the same CAS, and a count
//!   beyond the slab's capacity (a double free) aborts as for one object.
//!   A double free of one of a chain's two newest objects (full or not),
//!   or of a free held back (while the batch is bypassed, or when the
//!   second free starts a chain afterwards), aborts at the free; a deeper
//!   one is caught only if the count then exceeds the capacity, or, when
//!   the stack is collected or its detached slab settled, the slab's
//!   count of objects out (`slab::collect_remote`, `slab::settle`).
//!
//! Off under the `debug` feature (whose checks need every free to reach
//! the slab) and in loom builds, like the foreign lists.

use crate::arena::desc::PageDesc;
use crate::diag::fatal;
use crate::slab::class::{compute_size, NUM_CLASSES};
use crate::slab::key;

/// Most objects one chain holds before it is pushed.
pub(crate) const MAX_OBJECTS: u32 = 64;

/// Most bytes one chain holds before it is pushed (a chain of a class
/// above this size holds one object).
pub(crate) const MAX_CHAIN_BYTES: usize = 32 << 10;

/// Chains per thread cache: one a class. (Loom builds, where batches are
/// off, keep one, which every class shares, so that the caches stay small
/// on the models' 32 KiB stacks.)
const SLOTS: usize = if cfg!(loom) { 1 } else { NUM_CLASSES };

/// The slot of `class`.
#[inline(always)]
const fn slot(class: usize) -> usize {
    if cfg!(loom) {
        0
    } else {
        class
    }
}

/// Objects a chain of each class holds at most.
static CHAIN_CAP: [u32; NUM_CLASSES] = build_chain_caps();

const fn build_chain_caps() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let fit = MAX_CHAIN_BYTES / compute_size(c);
        t[c] = if fit == 0 {
            1
        } else if fit > MAX_OBJECTS as usize {
            MAX_OBJECTS
        } else {
            fit as u32
        };
        c += 1;
    }
    t
}

/// Whether remote batches are used in this build.
#[cfg(not(loom))]
pub(crate) const ENABLED: bool = crate::foreign::ENABLED;

/// A chain of objects of one slab, linked newest first with the heap's
/// key: `head` to `tail`, whose link is left for the push to set.
pub(crate) struct Chain {
    pub(crate) slab: *const PageDesc,
    pub(crate) head: *mut u8,
    pub(crate) tail: *mut u8,
    pub(crate) objects: u32,
}

/// The batches of one thread cache.
pub(crate) struct RemoteBatch {
    chains: [Chain; SLOTS],
    /// Chains of a single object pushed in a row (see [`BYPASS_AFTER`]).
    singles: u32,
    /// Bypassing frees waiting for their lines (see [`DEFERRED`]): a ring
    /// of objects and their slabs, `next` its oldest entry; an empty entry
    /// holds null. (The slabs are kept, not looked up again at the push;
    /// the objects have an array of their own, which the double-free
    /// check compares in a few vector instructions.)
    deferred: [*mut u8; DEFERRED],
    deferred_slabs: [*const PageDesc; DEFERRED],
    #[cfg(not(loom))]
    next: usize,
}

/// Bypassing frees held back, each pushed when the ring comes round to it
/// again. A free pushes onto its slab's remote stack with an atomic
/// operation, which waits for the link just stored into the (cold) object:
/// one memory latency a free, one after the other. Held back, the object's
/// line and the slab's remote word are fetched while the next frees run.
/// (Eight: 0.71x handoff's time, 0.80x with four; sixteen saved 2 % more
/// for 4 % more instructions. The prefetch is x86-64's; elsewhere the
/// ring holds frees back without it.)
const DEFERRED: usize = if cfg!(loom) { 0 } else { 8 };

/// Single-object chains pushed in a row after which frees that would
/// start a new chain bypass the batch instead, going onto their slabs'
/// remote stacks one by one (each held back a little, [`DEFERRED`]), for
/// [`BYPASS_FOR`] such frees; then the batch is
/// tried again. Frees in random order across many slabs (a thread tearing
/// down a large structure) make every chain one object long, and each
/// such chain costs its push, the batch's bookkeeping and a second write
/// to its object when the push links it.
#[cfg(not(loom))]
pub(crate) const BYPASS_AFTER: u32 = 16;

/// Frees that bypass the batch before it is tried again (see
/// [`BYPASS_AFTER`]).
#[cfg(not(loom))]
pub(crate) const BYPASS_FOR: u32 = 256;

const EMPTY: Chain = Chain {
    slab: core::ptr::null(),
    head: core::ptr::null_mut(),
    tail: core::ptr::null_mut(),
    objects: 0,
};

impl RemoteBatch {
    pub(crate) const fn new() -> Self {
        Self {
            chains: [EMPTY; SLOTS],
            singles: 0,
            deferred: [core::ptr::null_mut(); DEFERRED],
            deferred_slabs: [core::ptr::null(); DEFERRED],
            #[cfg(not(loom))]
            next: 0,
        }
    }

    /// Whether a free that would start a new chain (its class's chain is
    /// of another slab, or full) bypasses the batch (see [`BYPASS_AFTER`]);
    /// counts it if so.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn bypass(&mut self) -> bool {
        if self.singles < BYPASS_AFTER {
            return false;
        }
        self.singles = self.singles.saturating_add(1);
        if self.singles >= BYPASS_AFTER + BYPASS_FOR {
            self.singles = 0;
        }
        true
    }

    /// Aborts if `p` is one of the frees held back (a double free).
    #[inline(always)]
    fn refuse_deferred(&self, p: *mut u8) {
        // (A fold without an early exit, which compiles to a few vector
        // compares.)
        if self.deferred.iter().fold(false, |hit, &q| hit | (q == p)) {
            fatal(
                "double free (the object is already in this thread's remote batch)",
                p as usize,
            );
        }
    }

    /// Holds back `p`, an object of slab `s` whose free bypasses the
    /// batch, and fetches its lines; returns the free held back longest,
    /// if any, for the caller to push onto its slab's remote stack.
    ///
    /// # Safety
    /// `p` is a live object start of slab `s`, given up by the caller.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) unsafe fn defer(
        &mut self,
        s: &PageDesc,
        p: *mut u8,
    ) -> Option<(*const PageDesc, *mut u8)> {
        self.refuse_deferred(p);
        prefetch(p);
        // SAFETY: `s` is a live slab (caller).
        prefetch(unsafe { crate::slab::remote::word(s) } as *const _ as *const u8);
        let i = self.next % DEFERRED;
        self.next = i + 1;
        let old = core::mem::replace(&mut self.deferred[i], p);
        let slab = core::mem::replace(&mut self.deferred_slabs[i], s);
        (!old.is_null()).then_some((slab, old))
    }

    /// Adds `p`, an object of slab `s` of `class`. Returns the chain to
    /// push first when the class's slot held another slab's objects or
    /// was full; `p` then starts a new chain.
    ///
    /// # Safety
    /// `p` is a live object start of slab `s`, given up by the caller;
    /// `class` is the class of `s` (below `NUM_CLASSES`); `key` is the key
    /// of the heap of `s`, the same for every call.
    #[inline]
    pub(crate) unsafe fn add(
        &mut self,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
        key: usize,
    ) -> Option<Chain> {
        // SAFETY: forwarded from the caller.
        if unsafe { self.add_in_place(s, class, p, key) } {
            return None;
        }
        // The slot holds a chain of another slab, or a full one.
        self.restart(s, class, p)
    }

    /// Starts the chain of `class` anew with `p`, an object of slab `s`;
    /// returns the chain the slot held, if any, for the caller to push.
    /// Aborts if `p` is among the frees held back ([`RemoteBatch::defer`]):
    /// a second free of one of them once the bypass is over starts a
    /// chain, and would otherwise be pushed twice.
    #[inline]
    pub(crate) fn restart(&mut self, s: &PageDesc, class: usize, p: *mut u8) -> Option<Chain> {
        self.refuse_deferred(p);
        let old = core::mem::replace(
            &mut self.chains[slot(class)],
            Chain {
                slab: s,
                head: p,
                tail: p,
                objects: 1,
            },
        );
        match old.objects {
            0 => {}
            1 => self.singles = self.singles.saturating_add(1),
            _ => self.singles = 0,
        }
        (old.objects != 0).then_some(old)
    }

    /// Adds `p` as [`RemoteBatch::add`] does when that returns no chain:
    /// when the class's slot is empty, or holds a chain of `s` with room.
    /// False: nothing done.
    ///
    /// # Safety
    /// As for [`RemoteBatch::add`].
    #[inline(always)]
    pub(crate) unsafe fn add_in_place(
        &mut self,
        s: &PageDesc,
        class: usize,
        p: *mut u8,
        key: usize,
    ) -> bool {
        let c = &mut self.chains[slot(class)];
        if c.objects == 0 {
            self.restart(s, class, p);
            return true;
        }
        if !core::ptr::eq(c.slab, s) {
            return false;
        }
        // The chain's first two objects: a cheap check, the links are hot.
        // (`objects >= 1` here, so `head` is an object.) Made on a full
        // chain too, which the caller then pushes with `p` after it.
        if c.head == p
            // SAFETY: `head` is an object of the chain, ours until pushed.
            || (c.objects > 1 && key::decode(unsafe { *(c.head as *const usize) }, key) == p)
        {
            fatal(
                "double free (the object is already in this thread's remote batch)",
                p as usize,
            );
        }
        if c.objects >= CHAIN_CAP[class] {
            return false;
        }
        // SAFETY: `p` is ours (given up); the link is encoded like every
        // free-list link of the heap.
        unsafe { *(p as *mut usize) = key::encode(c.head, key) };
        c.head = p;
        c.objects += 1;
        true
    }

    /// Takes every chain, each passed to `f`.
    #[inline]
    pub(crate) fn take_all(&mut self, mut f: impl FnMut(Chain)) {
        for c in &mut self.chains {
            if c.objects != 0 {
                f(core::mem::replace(c, EMPTY));
            }
        }
        for (p, slab) in self.deferred.iter_mut().zip(&self.deferred_slabs) {
            let p = core::mem::replace(p, core::ptr::null_mut());
            if !p.is_null() {
                f(Chain {
                    slab: *slab,
                    head: p,
                    tail: p,
                    objects: 1,
                });
            }
        }
    }
}

/// Asks for the line of `p` to be brought into the cache (a hint: no
/// fault, whatever `p` is).
#[cfg(not(loom))]
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and faults on no address; SSE is
    // part of x86-64's baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a chain's links from head to tail.
    fn walk(c: &Chain, k: usize) -> Vec<*mut u8> {
        let mut out = vec![c.head];
        let mut p = c.head;
        while p != c.tail {
            // SAFETY: the test's objects are live `usize`-aligned cells.
            p = key::decode(unsafe { *(p as *const usize) }, k);
            out.push(p);
        }
        out
    }

    /// Pointers to `cells`, two-word stand-ins for objects.
    fn stand_ins(cells: &mut [[usize; 2]]) -> Vec<*mut u8> {
        cells
            .iter_mut()
            .map(|c| c.as_mut_ptr() as *mut u8)
            .collect()
    }

    #[test]
    fn single_object_chains_in_a_row_turn_the_batch_off_for_a_while() {
        let slabs: Vec<PageDesc> = (0..BYPASS_AFTER + 2).map(|_| PageDesc::new()).collect();
        let mut cells = vec![[0usize; 2]; slabs.len() + 2];
        let objs = stand_ins(&mut cells);
        let k = 0x5a5a_1234;
        let mut batch = RemoteBatch::new();
        // Each free is of another slab: every chain pushed holds one
        // object.
        for (i, s) in slabs.iter().enumerate().take(BYPASS_AFTER as usize) {
            assert!(!batch.bypass(), "bypassed after {i} single chains");
            // SAFETY: stand-in objects, each added once.
            let _ = unsafe { batch.add(s, 0, objs[i], k) };
        }
        assert!(
            !batch.bypass(),
            "one chain fewer than frees has been pushed"
        );
        let n = BYPASS_AFTER as usize;
        // SAFETY: as above.
        let _ = unsafe { batch.add(&slabs[n], 0, objs[n], k) };
        for _ in 0..BYPASS_FOR {
            assert!(batch.bypass());
        }
        assert!(!batch.bypass(), "still bypassing after BYPASS_FOR frees");
        // A chain of two objects ends a run of single ones.
        batch.singles = BYPASS_AFTER - 1;
        let s = &slabs[n + 1];
        // SAFETY: as above.
        unsafe {
            let _ = batch.add(s, 0, objs[n + 1], k);
            assert!(batch.add(s, 0, objs[n + 2], k).is_none());
            let _ = batch.add(&slabs[0], 0, objs[n + 3], k);
        }
        assert_eq!(batch.singles, 0);
        assert!(!batch.bypass());
    }

    #[test]
    fn held_back_frees_come_out_oldest_first_and_all_at_a_flush() {
        // Two stand-in slabs of four page descriptors each, like the
        // smallest slab's: `defer` reaches the remote word, which is not in
        // the first page's descriptor (`slab::remote::word`).
        let slabs: Vec<PageDesc> = (0..8).map(|_| PageDesc::new()).collect();
        crate::arena::desc::expose(slabs.as_ptr());
        let mut cells = vec![[0usize; 2]; DEFERRED + 3];
        let objs = stand_ins(&mut cells);
        let mut batch = RemoteBatch::new();
        let slab_of = |i: usize| &slabs[(i % 2) * 4];
        for (i, &p) in objs.iter().enumerate().take(DEFERRED) {
            // SAFETY: stand-in objects, each held back once.
            assert!(unsafe { batch.defer(slab_of(i), p) }.is_none());
        }
        // Full: each free held back pushes out the oldest, with its slab.
        for (i, &p) in objs.iter().enumerate().skip(DEFERRED) {
            // SAFETY: as above.
            let (s, old) = unsafe { batch.defer(slab_of(i), p) }.expect("the oldest");
            assert_eq!(old, objs[i - DEFERRED]);
            assert!(core::ptr::eq(s, slab_of(i - DEFERRED)));
        }
        // A flush hands out every free still held back, as chains of one.
        let mut rest = Vec::new();
        batch.take_all(|c| {
            assert_eq!((c.objects, c.head), (1, c.tail));
            rest.push((c.slab, c.head));
        });
        rest.sort();
        let mut expected: Vec<_> = (3..DEFERRED + 3)
            .map(|i| (slab_of(i) as *const PageDesc, objs[i]))
            .collect();
        expected.sort();
        assert_eq!(rest, expected);
        batch.take_all(|_| panic!("nothing is left"));
        // Empty again: the next frees are held back without pushing any.
        // SAFETY: `objs[0]` went out with the flush, so it is held back
        // once again.
        assert!(unsafe { batch.defer(&slabs[0], objs[0]) }.is_none());
    }

    #[test]
    fn runs_of_one_slab_are_chained_and_handed_back_whole() {
        let [a, b, c2, d] = [(); 4].map(|_| PageDesc::new());
        let mut cells = [[0usize; 2]; 72];
        let objs = stand_ins(&mut cells);
        let k = 0x5a5a_1234;
        let mut batch = RemoteBatch::new();
        // SAFETY: the cells stand in for live objects, each added once
        // (and so in every add below).
        unsafe {
            assert!(batch.add(&a, 0, objs[0], k).is_none());
            // Another class keeps its own chain.
            assert!(batch.add(&c2, 1, objs[70], k).is_none());
            assert!(batch.add(&a, 0, objs[1], k).is_none());
            assert!(batch.add(&a, 0, objs[2], k).is_none());
        }
        // Every class has its own chain.
        // SAFETY: as above.
        assert!(unsafe { batch.add(&d, 2, objs[71], k) }.is_none());
        // In place, an object of another slab of the class is refused and
        // the chain left as it was.
        // SAFETY: as above (refused, so `objs[3]` is not added).
        assert!(!unsafe { batch.add_in_place(&b, 0, objs[3], k) });
        // Another slab of the class: its chain comes back, newest first.
        // SAFETY: as above.
        let c = unsafe { batch.add(&b, 0, objs[3], k) }.expect("chain of slab a");
        assert!(core::ptr::eq(c.slab, &a));
        assert_eq!(c.objects, 3);
        assert_eq!(walk(&c, k), vec![objs[2], objs[1], objs[0]]);
        // A full chain comes back at the next add, which starts anew.
        for &p in &objs[4..4 + MAX_OBJECTS as usize - 1] {
            // SAFETY: as above.
            assert!(unsafe { batch.add(&b, 0, p, k) }.is_none());
        }
        // SAFETY: as above.
        let c = unsafe { batch.add(&b, 0, objs[67], k) }.expect("a full chain");
        assert_eq!(c.objects, MAX_OBJECTS);
        assert_eq!(walk(&c, k).len(), MAX_OBJECTS as usize);
        let mut rest = Vec::new();
        batch.take_all(|c| rest.push((c.slab, c.objects, c.head, c.tail)));
        assert_eq!(
            rest,
            vec![
                (&b as *const PageDesc, 1, objs[67], objs[67]),
                (&c2 as *const PageDesc, 1, objs[70], objs[70]),
                (&d as *const PageDesc, 1, objs[71], objs[71]),
            ]
        );
        batch.take_all(|_| panic!("nothing is left"));
    }

    #[test]
    fn chains_of_big_classes_stop_at_the_byte_cap() {
        use crate::slab::class::CLASS_SIZE;
        for class in 0..NUM_CLASSES {
            let cap = CHAIN_CAP[class] as usize;
            let size = CLASS_SIZE[class] as usize;
            assert!((1..=MAX_OBJECTS as usize).contains(&cap));
            assert!(cap == 1 || cap * size <= MAX_CHAIN_BYTES, "class {class}");
        }
        // A class of 4 KiB: eight objects make a chain, the ninth starts
        // the next one.
        let class = (0..NUM_CLASSES)
            .find(|&c| CLASS_SIZE[c] == 4096)
            .expect("a 4 KiB class");
        let s = PageDesc::new();
        let mut cells = [[0usize; 2]; 9];
        let k = 0x77;
        let mut batch = RemoteBatch::new();
        let mut pushed = None;
        for cell in &mut cells {
            // SAFETY: the cells stand in for live objects, each added once.
            pushed = unsafe { batch.add(&s, class, cell.as_mut_ptr() as *mut u8, k) };
        }
        assert_eq!(pushed.expect("the ninth object ends the chain").objects, 8);
    }
}
