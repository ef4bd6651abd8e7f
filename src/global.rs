//! The global front: [`Lifeboat`], the `#[global_allocator]`.
//!
//! All `Lifeboat` values share one process heap, created on the first
//! allocation from the configuration of the value that made it. Each thread
//! has a [`ThreadCache`] in a `const` thread-local with no destructor; a
//! `pthread` key destructor flushes it at thread exit (it runs after Rust's
//! TLS destructors, which may still free into the cache). After that, and
//! whenever the slow path is re-entered on a thread (a callback or signal
//! handler allocating), allocations go through the heap's locked shard
//! caches instead.
//!
//! The fast paths read three statics (`FAST`) that describe the arena, so a
//! free needs no pointer chase to find the heap:
//!
//! * alloc: size ≤ 1 KiB and align ≤ 8 → table lookup, pop from the active
//!   slab's local list;
//! * free: a page descriptor gives the slab (`desc::block_head`); if this
//!   thread owns it and the object is not its last live one nor the head
//!   of the slab's `frees` list (a cheap double-free check), push onto
//!   that list.
//!
//! Everything else goes to `#[cold]` functions.

use crate::arena::desc::{PageDesc, FLAG_RESERVE, KIND_SLAB};
use crate::config::Config;
use crate::diag;
use crate::flags::AllocFlags;
use crate::heap::{HeapInner, Hold, GROWTH_BLOCK_MIN};
use crate::os::PAGE_SHIFT;
use crate::reclaim::shrinker::{RegisterError, Shrinker};
use crate::reclaim::OomHandler;
use crate::slab::class::{class_for, class_of_medium, class_of_small, LOOKUP_MAX, MAX_SMALL_SIZE};
use crate::stats::Stats;
use crate::tcache::ThreadCache;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr;
use core::sync::atomic::{compiler_fence, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;

/// The lifeboat allocator. Install it with
///
/// ```
/// #[global_allocator]
/// static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();
/// # fn main() { let v = vec![1, 2, 3]; assert_eq!(v.len(), 3); }
/// ```
///
/// Allocation failure returns null, which makes Rust abort through
/// `handle_alloc_error`; use [`crate::Heap`] for fallible allocation.
///
/// `dealloc` and `realloc` rely on the layout they are given being the
/// block's (as `GlobalAlloc` requires): a small object's free takes its
/// size class from it. A free with a layout of another class is reported,
/// but may be found only later (see the README's "Bad input"). Code that
/// has no layout, like C's `free`, calls [`free_without_layout`].
///
/// Alignment promise beyond `Layout`: every block whose size is a multiple
/// of 16 is 16-byte aligned (so a C front can serve `malloc`'s 16-byte
/// alignment with an 8-aligned layout of the rounded size).
#[derive(Clone, Copy, Debug)]
pub struct Lifeboat {
    config: Config,
}

impl Lifeboat {
    /// The allocator with the machine's defaults (see [`Config::new`]).
    pub const fn new() -> Self {
        Self {
            config: Config::new(),
        }
    }

    /// The allocator with a configuration.
    pub const fn with_config(config: Config) -> Self {
        Self { config }
    }
}

impl Default for Lifeboat {
    fn default() -> Self {
        Self::new()
    }
}

/// The sentinel slab of every thread cache: kind `UNUSED`, empty lists; a
/// pair, the second its owner line (`PageDesc::owner_line`).
static EMPTY: [PageDesc; 2] = [PageDesc::new(), PageDesc::new()];

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// (`FAST` is read on every free and `HEAP` on every slow path: each on
/// lines of its own, so that no static the linker places beside them, the
/// program's own among them, can make those reads miss when it is
/// written.)
static HEAP: CachePadded<AtomicPtr<HeapInner>> = CachePadded::new(AtomicPtr::new(ptr::null_mut()));

/// Arena bounds for the free fast path (zero until the heap exists, which
/// makes every pointer miss and take the slow path).
struct Fast {
    base: AtomicUsize,
    /// The arena's size in bytes (pages times the page size).
    bytes: AtomicUsize,
    descs: AtomicUsize,
}

static FAST: CachePadded<Fast> = CachePadded::new(Fast {
    base: AtomicUsize::new(0),
    bytes: AtomicUsize::new(0),
    descs: AtomicUsize::new(0),
});

/// The thread has not allocated through the slow path yet.
const T_FRESH: u8 = 0;
/// The exit hook is armed.
const T_LIVE: u8 = 1;
/// The exit hook ran, or could not be armed: the cache is flushed (or was
/// never used) and unused from now on.
const T_DEAD: u8 = 2;
/// Bit set while the slow path runs on this thread (re-entry detection).
const T_BUSY: u8 = 4;

std::thread_local! {
    static TC: UnsafeCell<ThreadCache> = const {
        UnsafeCell::new(ThreadCache::per_thread_cache(
            ptr::addr_of!(EMPTY).cast::<PageDesc>(),
            true,
        ))
    };
    static TSTATE: Cell<u8> = const { Cell::new(T_FRESH) };
}

/// This thread's cache. Every use of `TC` goes through here, so that
/// `EMPTY`, which a fresh cache's slots point at, is exposed before any
/// owner line of it is read (`desc::expose`; no instruction).
#[inline(always)]
fn this_cache() -> *mut ThreadCache {
    crate::arena::desc::expose(ptr::addr_of!(EMPTY).cast::<PageDesc>());
    TC.with(|tc| tc.get())
}

static EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The process heap, if created.
pub(crate) fn process_heap() -> Option<&'static HeapInner> {
    let p = HEAP.load(Ordering::Acquire);
    // SAFETY: once published the process heap is never destroyed.
    (!p.is_null()).then(|| unsafe { &*p })
}

#[inline]
fn heap_or_init(config: &Config) -> Option<&'static HeapInner> {
    match process_heap() {
        Some(h) => Some(h),
        None => init(config),
    }
}

#[cold]
fn init(config: &Config) -> Option<&'static HeapInner> {
    std::thread_local! { static INIT_HERE: Cell<bool> = const { Cell::new(false) } }
    loop {
        match STATE.compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => return process_heap(),
            Err(FAILED) => return None,
            // A signal handler interrupting this very initialisation: waiting
            // would never end.
            Err(_) if INIT_HERE.with(|i| i.get()) => return None,
            Err(_) => std::thread::yield_now(),
        }
    }
    INIT_HERE.with(|i| i.set(true));
    let created = HeapInner::create(config, true);
    INIT_HERE.with(|i| i.set(false));
    let Ok(h) = created else {
        STATE.store(FAILED, Ordering::Release);
        diag::write_stderr(b"lifeboat: cannot map the process heap\n");
        return None;
    };
    // SAFETY: the heap was just created and is never destroyed.
    let heap: &'static HeapInner = unsafe { &*h.as_ptr() };
    FAST.base.store(heap.arena.base as usize, Ordering::Relaxed);
    FAST.bytes
        .store(heap.arena.npages << PAGE_SHIFT, Ordering::Relaxed);
    FAST.descs
        .store(heap.arena.descs as usize, Ordering::Relaxed);
    // The exit key exists before the heap is published, so that every
    // thread that finds the heap can arm its exit hook.
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: registering a key destructor; it never unwinds.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key as usize, Ordering::Release);
    }
    HEAP.store(h.as_ptr(), Ordering::Release);
    // SAFETY: registering fork handlers; none of them unwinds.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    STATE.store(READY, Ordering::Release);
    Some(heap)
}

extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    let Some(h) = process_heap() else { return };
    TSTATE.with(|s| s.set(T_DEAD | T_BUSY));
    // SAFETY: this thread's cache, used by no one else; the thread is
    // exiting, so no allocation of ours is in progress on it.
    unsafe { (*this_cache()).flush(h) };
    TSTATE.with(|s| s.set(T_DEAD));
    crate::throttle::release_held();
}

extern "C" fn fork_prepare() {
    if let Some(h) = process_heap() {
        h.lock_all();
    }
}

extern "C" fn fork_parent() {
    if let Some(h) = process_heap() {
        // SAFETY: fork_prepare took every lock on this thread.
        unsafe { h.unlock_all(false) };
    }
}

extern "C" fn fork_child() {
    if let Some(h) = process_heap() {
        // SAFETY: the child has one thread, the one that took the locks.
        unsafe { h.unlock_all(true) };
        // The background reclaimer thread did not survive the fork: nobody
        // should wait for it. (`start_reclaimer` is not re-armed.)
        h.reclaim.kswapd.running.store(false, Ordering::Release);
    }
}

/// Which cache the slow path may use on this thread.
enum CacheRef {
    /// The thread-local cache (the thread state had `T_BUSY` set by us).
    Local(*mut ThreadCache),
    /// Use a locked shard (thread exited, or slow path re-entered).
    Shard,
}

/// Enters the slow path: arms the exit hook on first use, and detects
/// re-entry. Must be paired with [`leave`] when `Local` is returned.
fn enter() -> CacheRef {
    crate::sync::check_thread_local_allowed();
    let st = TSTATE.with(|s| s.get());
    if st & (T_BUSY | T_DEAD) != 0 {
        return CacheRef::Shard;
    }
    set_state(T_LIVE | T_BUSY);
    if st == T_FRESH && !arm_exit_hook() {
        // Without the hook, the cache would be lost with the thread: this
        // thread uses the shared shards from now on.
        set_state(T_DEAD);
        return CacheRef::Shard;
    }
    CacheRef::Local(this_cache())
}

/// Makes a fresh thread's cache usable outside the slow path (arms its
/// exit hook); false if the thread must use the shards.
#[cold]
#[inline(never)]
fn arm_fresh_thread() -> bool {
    let c = enter();
    let local = matches!(c, CacheRef::Local(_));
    leave(&c);
    local
}

/// Arms the calling thread's exit hook; false if that failed. (Called
/// with the thread marked busy: glibc may allocate a key's slot, and that
/// allocation must not come back here.)
fn arm_exit_hook() -> bool {
    let key = EXIT_KEY.load(Ordering::Acquire);
    // SAFETY: the key was created by pthread_key_create; the value is only
    // a non-null marker so that the destructor runs.
    key != usize::MAX
        && unsafe {
            libc::pthread_setspecific(key as libc::pthread_key_t, ptr::dangling::<libc::c_void>())
        } == 0
}

fn leave(c: &CacheRef) {
    if let CacheRef::Local(_) = c {
        set_state(T_LIVE);
    }
}

/// Sets the thread state, ordered (for the compiler) against the cache
/// accesses around it, as a signal handler on this thread must see them.
#[inline(always)]
fn set_state(st: u8) {
    crate::sync::check_thread_local_allowed();
    compiler_fence(Ordering::SeqCst);
    TSTATE.with(|s| s.set(st));
    compiler_fence(Ordering::SeqCst);
}

/// Runs `f` on this thread's cache outside the slow path: only once the
/// exit hook is armed and while no slow path runs on this thread, and with
/// `T_BUSY` set meanwhile, so that the slow path of an allocation or free
/// of a signal handler that interrupts `f` uses a shard, not the cache `f`
/// changes. (The fast paths do not look at the state: like `malloc`, the
/// global allocator is not async-signal-safe; see the README.) A thread
/// that has not used its cache yet (one that only frees, like a consumer)
/// arms its exit hook first.
#[inline(always)]
fn with_idle_cache<R>(f: impl FnOnce(&mut ThreadCache) -> Option<R>) -> Option<R> {
    if TSTATE.with(|s| s.get()) == T_FRESH && !arm_fresh_thread() {
        return None;
    }
    with_live_cache(f)
}

/// [`with_idle_cache`] for a thread whose exit hook is armed already;
/// `None` for any other (and nothing called out of line).
#[inline(always)]
fn with_live_cache<R>(f: impl FnOnce(&mut ThreadCache) -> Option<R>) -> Option<R> {
    if TSTATE.with(|s| s.get()) != T_LIVE {
        return None;
    }
    set_state(T_LIVE | T_BUSY);
    // SAFETY: this thread's cache; no other borrow of it is live: the
    // state was LIVE, not BUSY (no slow path of this thread is using it),
    // and stays BUSY until `f` returns. (A handler interrupting a fast
    // path is the unsupported case the doc above names.)
    let r = f(unsafe { &mut *this_cache() });
    set_state(T_LIVE);
    r
}

/// Runs `f` on this thread's cache once its exit hook is armed and while
/// no slow path runs on this thread, like [`with_live_cache`], but without
/// marking the cache `T_BUSY` meanwhile: for `f` that only moves objects
/// between the cache's own lists, taking no lock and calling nothing that
/// could allocate, as the fast paths do (and, like them, not
/// async-signal-safe). The foreign lists' push and pop run here: in a
/// program whose threads free what others allocated (larson) nearly every
/// free and most allocations do.
#[inline(always)]
fn with_armed_cache<R>(f: impl FnOnce(&mut ThreadCache) -> Option<R>) -> Option<R> {
    crate::sync::check_thread_local_allowed();
    if TSTATE.with(|s| s.get()) != T_LIVE {
        return None;
    }
    // SAFETY: this thread's cache; no other borrow of it is live: the state
    // is LIVE, not BUSY, so no slow path of this thread is using it, and
    // `f` calls nothing that could re-enter (caller's promise).
    f(unsafe { &mut *this_cache() })
}

/// Runs `f` with the cache the calling thread may use.
///
/// A re-entrant call (a signal handler, the loader's TLS update) on a
/// thread that holds the heap lock gets `None`: it must not wait for a lock
/// the interrupted code holds. One that holds only shard locks uses another
/// shard, or gets `None` if none is free (`HeapInner::with_shard`).
fn with_cache<R>(h: &HeapInner, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    if crate::sync::holds_waited_lock() {
        return None;
    }
    let c = enter();
    let r = match c {
        // SAFETY: the thread-local cache of this thread; `T_BUSY` keeps any
        // re-entrant call away from it while `f` runs.
        CacheRef::Local(tc) => Some(f(unsafe { &mut *tc })),
        // (`None` if this thread holds a shard lock and every other shard
        // is taken.)
        CacheRef::Shard => h.with_shard(f),
    };
    leave(&c);
    r
}

/// The slow path of an allocation whose class the inline path found and
/// whose active slab is empty: an object of `class` on this thread's
/// foreign list first (no second class lookup, no layout tests, nothing
/// called out of line), then the full slow path as a tail call. (A thread
/// whose exit hook is not armed yet has nothing listed: the full path
/// arms it.)
#[cold]
#[inline(never)]
fn alloc_class_miss(config: &Config, layout: Layout, class: usize) -> *mut u8 {
    if let Some(h) = process_heap() {
        // SAFETY: the cache of this thread, for the process heap; `class`
        // is the class of `layout` (alignment at most 8).
        if let Some(p) = with_armed_cache(|tc| unsafe {
            // The thread's own frees into its active slab first, then
            // objects it freed into others' slabs.
            let p = tc.take_frees(class);
            if !p.is_null() {
                return Some(p);
            }
            h.take_foreign(tc, class)
        }) {
            return p;
        }
    }
    alloc_uncached(config, layout, false)
}

#[cold]
#[inline(never)]
fn alloc_slow(config: &Config, layout: Layout, zero: bool) -> *mut u8 {
    // An object on this thread's foreign list, or a block of 64 KiB-4 MiB
    // parked in its cache or the heap's: no lock, no reclaim machinery.
    // (Kept apart from the rest, whose stack frame costs a dozen
    // instructions a call.)
    if let Some(h) = process_heap() {
        // SAFETY: the cache of this thread, for the process heap.
        if let Some(p) = with_idle_cache(|tc| unsafe { h.take_cached(tc, layout) }) {
            if zero {
                // SAFETY: the block holds at least layout.size() bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
    }
    alloc_uncached(config, layout, zero)
}

/// The allocation slow path past the thread's own caches.
#[cold]
#[inline(never)]
fn alloc_uncached(config: &Config, layout: Layout, zero: bool) -> *mut u8 {
    let Some(h) = heap_or_init(config) else {
        return ptr::null_mut();
    };
    match alloc_process(h, layout, AllocFlags::NORMAL) {
        Ok((p, zeroed)) => {
            if zero && !zeroed {
                // SAFETY: the block holds at least layout.size() bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
        Err(_) => ptr::null_mut(),
    }
}

/// An allocation from the process heap with reclaim behind it.
fn alloc_process(
    h: &HeapInner,
    layout: Layout,
    flags: AllocFlags,
) -> Result<(*mut u8, bool), crate::AllocError> {
    h.alloc_reclaiming(
        layout,
        flags,
        &mut || {
            // SAFETY: the cache belongs to the process heap.
            with_cache(h, |tc| unsafe { h.alloc_with(tc, layout, flags) })
                .unwrap_or(Err(crate::AllocError::Reentered))
        },
        &mut || {
            // SAFETY: as above.
            with_cache(h, |tc| unsafe { tc.flush(h) });
        },
    )
}

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
unsafe fn dealloc_slow(p: *mut u8) {
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
unsafe fn free_local_fast(s: &PageDesc, p: *mut u8, tc: *mut ThreadCache) -> bool {
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
unsafe fn free_in_arena(p: *mut u8, off: usize, tc: *mut ThreadCache) {
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
unsafe fn dealloc_outside_active(p: *mut u8, class: usize, off: usize, tc: *mut ThreadCache) {
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
unsafe fn free_by_pointer(p: *mut u8, tc: *mut ThreadCache) {
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

// SAFETY: the allocator returns blocks of at least the requested size and
// alignment, never hands a block out twice, and never unwinds.
unsafe impl GlobalAlloc for Lifeboat {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        // Under `debug` every allocation takes the slow path, which adds
        // the red zone and checks the poison.
        if !cfg!(feature = "debug") && layout.align() <= 8 {
            // Two comparisons for sizes up to 1 KiB (the common case), a
            // third above; each size range has its own table.
            // (The medium branch comes first so that the small one, laid
            // out last, falls through into the pop without a jump.)
            let class = if size > LOOKUP_MAX {
                if size > MAX_SMALL_SIZE {
                    return alloc_slow(&self.config, layout, false);
                }
                class_of_medium(size)
            } else {
                class_of_small(size)
            };
            // SAFETY: class < NUM_CLASSES (the tables give classes of sizes
            // up to MAX_SMALL_SIZE); the thread's own cache.
            let p = unsafe { (*this_cache()).alloc_fast(class) };
            if !p.is_null() {
                return p;
            }
            return alloc_class_miss(&self.config, layout, class);
        }
        alloc_slow(&self.config, layout, false)
    }

    // (Always inlined: a caller that calls it directly, like the benchmarks,
    // gets the fast paths without a call, as through `__rust_dealloc`.)
    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let p = crate::arena::own_provenance(p);
        let tc = this_cache();
        // The layout path, for an object of up to 1 KiB while this thread
        // allocates as it frees (`foreign::UNCHECKED_PER_ALLOCATION`).
        // Under `debug` every free takes the slow path (red zone, live
        // bit, poison).
        let size = layout.size();
        // SAFETY: the thread's own cache; only a count is read.
        let open = size <= LOOKUP_MAX && unsafe { (*tc).foreign.layout_path_open() };
        if !cfg!(feature = "debug") && open {
            // An object in the thread's active slab of its layout's class
            // is freed there, with no descriptor lookup and no arena
            // bounds test: lying inside that slab's span makes it one of
            // its objects, whatever the alignment.
            let class = class_of_small(size);
            // SAFETY: `class < NUM_CLASSES`; the thread's own cache, whose
            // active slot holds a live slab it owns or the sentinel (whose
            // span is 0).
            let a = unsafe { &**(*tc).active.get_unchecked(class) };
            // SAFETY: `lo` and `span` are fixed while the slab is live.
            if unsafe { (p as usize).wrapping_sub(a.lo.get()) < a.span.get() } {
                // SAFETY: this thread owns `a`, of which `p` is an object
                // (inside its span), given up by the caller.
                if unsafe { free_local_fast(a, p, tc) } {
                    return;
                }
                // SAFETY: forwarded from the caller.
                return unsafe { dealloc_slow(p) };
            }
            // SAFETY: the thread's own cache; the path was open.
            unsafe { (*tc).foreign.note_layout_free() };
            // Another at the usual alignment has the class of its layout's
            // size (an object keeps its class while it lives, see
            // `realloc`): it may go onto the thread's foreign list without
            // a read of its slab's descriptor, which, for a thread freeing
            // what others allocated, misses the cache on most frees.
            let off = (p as usize).wrapping_sub(FAST.base.load(Ordering::Relaxed));
            if off < FAST.bytes.load(Ordering::Relaxed) {
                // SAFETY: `class < NUM_CLASSES`; the thread's own cache.
                if layout.align() <= 8 && unsafe { (*tc).foreign.allocates(class) } {
                    // SAFETY: `p` is inside the process heap's arena, at
                    // `off` (tested just above), handed out for `layout`,
                    // whose class is `class`, and given up by the caller.
                    return unsafe { dealloc_outside_active(p, class, off, tc) };
                }
                // SAFETY: forwarded from the caller; `off` is `p`'s offset
                // in the arena, below its size (tested just above).
                return unsafe { free_in_arena(p, off, tc) };
            }
            // SAFETY: forwarded from the caller.
            return unsafe { dealloc_slow(p) };
        }
        // SAFETY: forwarded from the caller; the thread's own cache.
        unsafe { free_by_pointer(p, tc) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if size <= LOOKUP_MAX && layout.align() <= 8 {
            // SAFETY: forwarded.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: the block holds at least `size` bytes.
                unsafe { ptr::write_bytes(p, 0, size) };
            }
            return p;
        }
        alloc_slow(&self.config, layout, true)
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = crate::arena::own_provenance(p);
        let Some(h) = process_heap() else {
            return ptr::null_mut();
        };
        if let Some(idx) = h.arena.page_of(p) {
            let d = h.arena.desc(idx);
            // A buffer growing over its growth run: in place, no lock.
            if let Some(q) = h.grow_run_in_place(p, idx, d, layout, new_size) {
                return q;
            }
            // A small object staying small: same class in place, else a
            // move through the inline fast paths (the general path below
            // adds nothing for it).
            let stays_small =
                !cfg!(feature = "debug") && layout.align() <= 8 && new_size < GROWTH_BLOCK_MIN;
            if let Some(class) = stays_small.then(|| h.slab_class_at(idx, d)).flatten() {
                let new_class = class_for(new_size, 8);
                if new_class == Some(class) {
                    return p;
                }
                // The object of the new class this thread freed last, whose
                // lines the copy then finds in cache (a buffer growing over
                // the classes frees each step's object for the next), else
                // the ordinary allocation.
                let warm = new_class.map_or(ptr::null_mut(), |c| {
                    // SAFETY: `c < NUM_CLASSES`; the thread's own cache.
                    unsafe { (*this_cache()).pop_freed_last(c) }
                });
                // SAFETY: GlobalAlloc::realloc's contract makes this layout
                // valid; `p` is live with `layout` and is freed only after
                // its bytes are copied to the distinct new block.
                unsafe {
                    let q = if warm.is_null() {
                        self.alloc(Layout::from_size_align_unchecked(new_size, 8))
                    } else {
                        warm
                    };
                    if !q.is_null() {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                    return q;
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { realloc_general(self, h, p, layout, new_size) }
    }
}

/// `realloc` past its fast cases: in place when the class or block
/// allows, else a move (into a page block with growth room when the buffer
/// is becoming big).
///
/// # Safety
/// As for `GlobalAlloc::realloc`.
#[inline(never)]
unsafe fn realloc_general(
    a: &Lifeboat,
    h: &'static HeapInner,
    p: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    if let Some(q) = h.resize_in_place(p, layout.align(), new_size, AllocFlags::NORMAL) {
        return q;
    }
    // SAFETY: GlobalAlloc::realloc's contract makes this layout valid.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    // SAFETY: forwarded; the new block is distinct from the old one and
    // the copy is bounded by both sizes; no lock is held across it.
    unsafe {
        let q = match h.alloc_growth(layout.size(), new_size, layout.align(), AllocFlags::NORMAL) {
            Some(q) => q,
            None => a.alloc(new_layout),
        };
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
            // (By pointer: the C front's `realloc` passes the usable size,
            // or 0 for a pointer that is no live block, which this
            // reports.)
            free_without_layout(p);
        }
        q
    }
}

/// Allocates from the process heap with explicit flags (plus the thread's
/// scopes); errors instead of null.
pub(crate) fn alloc_flags(
    layout: Layout,
    flags: AllocFlags,
) -> Result<ptr::NonNull<u8>, crate::AllocError> {
    let h = heap_or_init(&Config::new()).ok_or(crate::AllocError::MapFailed)?;
    let (p, _) = alloc_process(h, layout, flags)?;
    ptr::NonNull::new(p).ok_or(crate::AllocError::Layout)
}

fn heap_for_api() -> Option<&'static HeapInner> {
    heap_or_init(&Config::new())
}

/// Registers a shrinker with the process heap's reclaim. Call it outside
/// allocation paths (at start-up, say).
pub fn register_shrinker(s: &'static dyn Shrinker) -> Result<(), RegisterError> {
    match heap_for_api() {
        Some(h) => h.reclaim.shrinkers.register(s),
        None => Err(RegisterError::Full),
    }
}

/// Removes a shrinker from the process heap; when this returns, no reclaim
/// calls it any more. Returns false if it was not registered.
pub fn unregister_shrinker(s: &'static dyn Shrinker) -> bool {
    heap_for_api().is_some_and(|h| h.reclaim.shrinkers.unregister(s))
}

/// Sets (or clears) the function the process heap calls when reclaim has
/// failed, before it refuses an allocation.
pub fn set_oom_handler(handler: Option<OomHandler>) {
    if let Some(h) = heap_for_api() {
        h.reclaim.set_oom_handler(handler);
    }
}

/// Gives back everything the calling thread's cache of the process heap
/// holds, as the thread's exit would, and keeps the thread usable.
///
/// A thread cache keeps, between its allocations: an active slab (and up
/// to a few full or emptied ones) per size class it has used, the objects
/// of other threads' slabs it freed and keeps for its own next allocations
/// (up to 512 KiB), the frees it batches for other threads' slabs, and a
/// few freed blocks of 64–256 KiB. All of it comes back when the thread
/// exits. A thread that is done with its work but does not exit yet (a
/// worker about to sleep for long, a thread whose last act hands its data
/// to a successor it has just spawned) can give it back now: objects go
/// back to their slabs, blocks to the heap, and the slabs are detached:
/// the empty ones return to the arena, the others are listed for any
/// thread to take once a quarter of their objects is free (as at the
/// thread's exit). The thread's next allocations refill its cache.
/// (jemalloc's `thread.tcache.flush`, for the same reason.)
///
/// Nothing happens on a thread that has not allocated from the process
/// heap yet, or once the thread's exit hook has run. Like allocating, it
/// is not async-signal-safe.
///
/// ```
/// // A worker that is going to sleep gives its cache back first.
/// let v: Vec<u8> = vec![0; 1000];
/// drop(v);
/// lifeboat::flush_thread_cache();
/// ```
pub fn flush_thread_cache() {
    let Some(h) = process_heap() else { return };
    if crate::sync::holds_lock() {
        return;
    }
    with_live_cache(|tc| {
        // SAFETY: this thread's cache, of the process heap, marked busy by
        // `with_live_cache` (so no re-entrant call uses it meanwhile); this
        // thread holds no lifeboat lock, and the flush takes the ones it
        // needs, as reclaim's drain does from the allocation slow path.
        unsafe { tc.flush(h) };
        Some(())
    });
}

/// Returns every free block of the process heap to the OS now; returns the
/// bytes purged.
pub fn purge() -> usize {
    heap_for_api().map_or(0, |h| h.purge(0))
}

/// Starts the process heap's background reclaimer thread (once; later calls
/// do nothing). It wakes when free pages fall below `low`, reclaims until
/// `high`, and returns free memory to the OS every
/// [`Config::purge_interval_ms`].
pub fn start_reclaimer() -> std::io::Result<()> {
    static STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    let h = heap_for_api().ok_or_else(|| std::io::Error::other("lifeboat: no process heap"))?;
    if STARTED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    h.reclaim.kswapd.running.store(true, Ordering::Release);
    let ms = h.config.purge_interval_ms;
    let spawned = std::thread::Builder::new()
        .name("lifeboat-reclaim".into())
        .spawn(move || h.kswapd_loop(ms));
    if let Err(e) = spawned {
        h.reclaim.kswapd.running.store(false, Ordering::Release);
        STARTED.store(false, Ordering::Release);
        return Err(e);
    }
    Ok(())
}

/// Frees a pointer of the process heap.
///
/// # Safety
/// `p` came from the process heap and is not used afterwards.
pub(crate) unsafe fn free_ptr(p: *mut u8) {
    // (The caller's pointer may cover less than the link word: see
    // `arena::own_provenance`.)
    // SAFETY: forwarded from the caller.
    unsafe { dealloc_slow(crate::arena::own_provenance(p)) }
}

/// Whether `p` is an object of a reserve-backed slab of the process heap.
pub fn is_reserve_backed(p: *const u8) -> bool {
    process_heap().is_some_and(|h| h.is_reserve_backed(p))
}

/// Bytes usable at `p`, if the process heap handed it out (what C's
/// `malloc_usable_size` reports).
pub fn usable_size(p: *const u8) -> Option<usize> {
    process_heap()?.usable_size(p)
}

/// Whether `p` lies in memory of the process heap: its arena or one of its
/// direct mappings. A pointer from another allocator answers false.
pub fn owns(p: *const u8) -> bool {
    process_heap().is_some_and(|h| h.arena.page_of(p).is_some() || h.usable_size(p).is_some())
}

/// A snapshot of the process heap (the one behind [`Lifeboat`]); all zero
/// if no `Lifeboat` has allocated yet.
pub fn stats() -> Stats {
    match process_heap() {
        Some(h) => h.stats(),
        None => Stats::empty(),
    }
}
