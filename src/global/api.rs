//! The process heap's functions beside `GlobalAlloc`: allocation with
//! explicit flags, shrinkers, the OOM handler, cache flushes, purging,
//! the background reclaimer, lookups by pointer and statistics.

use super::free::dealloc_slow;
use super::{alloc_process, heap_or_init, process_heap, with_live_cache};
use crate::config::Config;
use crate::flags::AllocFlags;
use crate::heap::HeapInner;
use crate::reclaim::shrinker::{RegisterError, Shrinker};
use crate::reclaim::OomHandler;
use crate::stats::Stats;
use core::alloc::Layout;
use core::ptr;
use core::sync::atomic::Ordering;

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
///
/// [`Lifeboat`]: crate::Lifeboat
pub fn stats() -> Stats {
    match process_heap() {
        Some(h) => h.stats(),
        None => Stats::empty(),
    }
}
