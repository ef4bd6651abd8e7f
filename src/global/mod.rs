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
//!
//! This file holds `Lifeboat`, the process heap's creation, the thread's
//! cache states, the allocation paths and `GlobalAlloc`; `free.rs` the
//! free paths past the inline one; `api.rs` the process heap's public
//! functions beside `GlobalAlloc`.

use crate::arena::desc::PageDesc;
use crate::config::Config;
use crate::diag;
use crate::flags::AllocFlags;
use crate::heap::{HeapInner, GROWTH_BLOCK_MIN};
use crate::os::PAGE_SHIFT;
use crate::slab::class::{class_for, class_of_medium, class_of_small, LOOKUP_MAX, MAX_SMALL_SIZE};
use crate::tcache::ThreadCache;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr;
use core::sync::atomic::{compiler_fence, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;

mod api;
mod free;

use free::{dealloc_outside_active, dealloc_slow, free_by_pointer, free_in_arena, free_local_fast};

pub(crate) use api::{alloc_flags, free_ptr};
pub use api::{
    flush_thread_cache, is_reserve_backed, owns, purge, register_shrinker, set_oom_handler,
    start_reclaimer, stats, unregister_shrinker, usable_size,
};
pub use free::free_without_layout;

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
