//! Multi-threaded workloads modelled on the classic allocator benchmarks
//! (the ones mimalloc-bench runs), for the `workloads` driver.
//!
//! Unlike the micro-benchmarks of the crate root, each of these is a whole
//! program-like run with a fixed amount of work: it returns the wall time
//! of the run, and the driver measures the process's peak RSS around it
//! (one child process per run, so every allocator's peak is its own).
//!
//! | workload | model | cross-thread frees |
//! |---|---|---|
//! | [`larson`] | Larson & Krishnan's server benchmark | yes: windows move between threads |
//! | [`larson`], flushing | the same, each thread giving back its cache before the hand-off | yes |
//! | [`xmalloc`] | Lever & Boreham's xmalloc-test | yes: producers allocate, consumers free |
//! | [`xmalloc`], pinned | the same, each pair on one core or across two ([`Placement`]) | yes |
//! | [`cache_scratch`] | Hoard's cache-scratch (passive false sharing) | the first object only |
//! | [`cache_thrash`] | Hoard's cache-thrash (active false sharing) | no |
//! | [`mstress`] | mimalloc's test-stress (`mstress`) | yes: objects swapped through a shared array |
//! | [`handoff`] | a structure built by workers, torn down by the main thread | yes: the main thread frees all |
//!
//! Every workload takes its parameters as a struct, so the tests can run
//! tiny versions; [`Kind::run`] runs the standard size, with a `scale` that
//! stretches the amount of work (iterations, rounds) but never the live
//! set, so peak RSS does not depend on it.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{alloc_or_abort, FlushThreadCache, Rng};

/// `Layout` of `size` bytes (`>= 1`), align 8.
fn layout8(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// Allocates `size` bytes (align 8) and writes the first and the last byte,
/// as a program filling a buffer would touch it.
///
/// # Safety
///
/// `size` must be at least 1.
#[inline(always)]
unsafe fn alloc_touch<A: GlobalAlloc>(a: &A, size: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `size >= 1`.
    let p = unsafe { alloc_or_abort(a, layout8(size)) };
    // SAFETY: `p` is valid for `size >= 1` bytes of writes.
    unsafe {
        p.write(size as u8);
        p.add(size - 1).write(1);
    }
    p
}

/// An object address and its size: what a workload needs to free it.
type Slot = (usize, usize);

/// Frees every object of `objs` (each from `a.alloc(layout8(size))`).
///
/// # Safety
///
/// Every `(addr, size)` must be a live allocation of `a` with
/// `layout8(size)`, freed by no one else.
unsafe fn free_all<A: GlobalAlloc>(a: &A, objs: &[Slot]) {
    for &(addr, size) in objs {
        // SAFETY: the caller's contract.
        unsafe { a.dealloc(addr as *mut u8, layout8(size)) };
    }
}

// ---------------------------------------------------------------------------
// larson

/// Parameters of [`larson`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Larson {
    /// Worker threads (and windows).
    pub threads: usize,
    /// Objects per window.
    pub slots: usize,
    /// Rounds; after each but the last, every window moves to a new thread.
    pub rounds: usize,
    /// Random replacements per round and thread.
    pub per_round: usize,
    /// Smallest object size (bytes, at least 1).
    pub min_size: usize,
    /// Largest object size (bytes).
    pub max_size: usize,
    /// Whether a thread gives back its allocator's thread cache
    /// ([`FlushThreadCache`]) just before it starts its successor.
    pub flush_before_handoff: bool,
}

/// Larson & Krishnan's server benchmark: `threads` threads each own a
/// window of `slots` objects (sizes uniform in `min_size..=max_size`). In a
/// round, a thread replaces `per_round` random slots (free the object,
/// allocate a new random size, touch it); then, as in the original, it
/// starts a new thread that takes over its window and exits, so the objects
/// it allocated are freed by another thread (after their allocator thread
/// has gone). With `flush_before_handoff`, the thread gives back its
/// allocator's thread cache first, as a program that knows the thread is
/// done can (lifeboat's `flush_thread_cache`, jemalloc's
/// `thread.tcache.flush`, mimalloc's `mi_collect`; glibc has no such
/// call). This thread fills all windows first, and the first workers
/// start from them. Chains do not wait for each other. Returns the time
/// from the first allocation to the last free.
pub fn larson<A: GlobalAlloc + Sync + FlushThreadCache>(a: &A, p: &Larson) -> Duration {
    assert!(p.threads >= 1 && p.slots >= 1 && p.rounds >= 1);
    assert!(1 <= p.min_size && p.min_size <= p.max_size);
    let start = Instant::now();

    let span = p.max_size - p.min_size + 1;
    let mut rng = Rng::new(0x1A25_0000);
    let windows: Vec<Vec<Slot>> = (0..p.threads)
        .map(|_| {
            (0..p.slots)
                .map(|_| {
                    let size = p.min_size + rng.below(span);
                    // SAFETY: `size >= min_size >= 1`.
                    (unsafe { alloc_touch(a, size) } as usize, size)
                })
                .collect()
        })
        .collect();

    let done = Mutex::new(Vec::with_capacity(p.threads));
    thread::scope(|s| {
        for (i, window) in windows.into_iter().enumerate() {
            let rng = Rng::new(0x1A25_0001 + i as u64);
            let done = &done;
            s.spawn(move || larson_round(s, a, p, done, window, rng, p.rounds));
        }
    });
    for window in done.into_inner().expect("larson thread panicked") {
        // SAFETY: the last thread of each chain left its window here; each
        // object in it is live and listed once.
        unsafe { free_all(a, &window) };
    }
    start.elapsed()
}

/// One larson thread: one round over `window`, then hand the window to a
/// new thread for the next round (or to `done` after the last).
fn larson_round<'scope, 'env, A: GlobalAlloc + Sync + FlushThreadCache>(
    s: &'scope thread::Scope<'scope, 'env>,
    a: &'env A,
    p: &'env Larson,
    done: &'env Mutex<Vec<Vec<Slot>>>,
    mut window: Vec<Slot>,
    mut rng: Rng,
    rounds_left: usize,
) {
    let span = p.max_size - p.min_size + 1;
    for _ in 0..p.per_round {
        let k = rng.below(window.len());
        let size = p.min_size + rng.below(span);
        let (addr, old) = window[k];
        // SAFETY: every window entry is a live object of `a` with
        // `layout8(old)`; the thread holding the window owns its objects,
        // and the entry is replaced right below, so it is freed once.
        unsafe { a.dealloc(addr as *mut u8, layout8(old)) };
        // SAFETY: `size >= min_size >= 1`.
        window[k] = (unsafe { alloc_touch(a, size) } as usize, size);
    }
    if p.flush_before_handoff {
        a.flush_thread_cache();
    }
    if rounds_left > 1 {
        s.spawn(move || larson_round(s, a, p, done, window, rng, rounds_left - 1));
    } else {
        done.lock().expect("larson thread panicked").push(window);
    }
}

// ---------------------------------------------------------------------------
// xmalloc

/// Parameters of [`xmalloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xmalloc {
    /// Producer/consumer pairs (two threads each).
    pub pairs: usize,
    /// Batches each producer allocates.
    pub batches: usize,
    /// Objects per batch.
    pub batch: usize,
    /// Capacity of the bounded queue between a producer and its consumer.
    pub in_flight: usize,
    /// Smallest object size (bytes, at least 1).
    pub min_size: usize,
    /// Largest object size (bytes).
    pub max_size: usize,
    /// Where the threads run.
    pub placement: Placement,
}

/// Where the threads of [`xmalloc`] run.
///
/// On two cores with two pairs, the scheduler settles each run into one of
/// two placements and keeps it, because the threads hardly migrate once the
/// pipeline is flowing: a pair's producer and consumer on the same core, or
/// on different cores. The second moves every object, and the slab
/// metadata its free reads, between the cores' caches: it took 1.2–2.8×
/// the time of the first for lifeboat, jemalloc and mimalloc (glibc 4.6×)
/// in the runs of 2026-12-07, so the unpinned figure depends on which one
/// a run fell into. The pinned placements measure each on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts the threads.
    Scheduler,
    /// Each pair's producer and consumer pinned to one core, pair `i` to
    /// the `i`-th allowed core (mod their number).
    PairOnOneCore,
    /// Each pair's producer pinned to one core and its consumer to another
    /// (the `2i`-th and `2i + 1`-th allowed cores, mod their number). With
    /// one allowed core this is the same as [`Placement::PairOnOneCore`].
    PairAcrossCores,
}

impl Placement {
    /// Pins the calling thread for its role (`producer` or consumer) in
    /// pair `pair`; nothing for [`Placement::Scheduler`].
    ///
    /// # Panics
    ///
    /// If the process's allowed cores cannot be read or the thread cannot
    /// be pinned: a pinned figure measured unpinned would be mislabelled.
    fn pin(self, pair: usize, producer: bool) {
        let slot = match self {
            Placement::Scheduler => return,
            Placement::PairOnOneCore => pair,
            Placement::PairAcrossCores => 2 * pair + usize::from(!producer),
        };
        pin_to_allowed(slot);
    }
}

/// The cores this process may run on, in increasing order.
fn allowed_cores() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "workloads: sched_getaffinity failed");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread (and so the threads it starts later) to the
/// `slot`-th of the process's allowed cores, counted modulo their number.
///
/// # Panics
///
/// If the allowed cores cannot be read or the thread cannot be pinned: a
/// pinned figure measured unpinned would be mislabelled.
fn pin_to_allowed(slot: usize) {
    let allowed = allowed_cores();
    assert!(!allowed.is_empty(), "workloads: no allowed cores to pin to");
    pin_to(allowed[slot % allowed.len()]);
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cores`, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is an initialised `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "workloads: sched_setaffinity to core {cpu} failed");
}

/// A blocking FIFO of batches from one thread to another: a mutex and a
/// condition variable, as xmalloc-test's own queue. (std's `sync_channel`,
/// used before, spins before it blocks; with two threads sharing a core,
/// how long it spun decided much of the run's time, which then changed by
/// up to 2× with the code layout of the benchmark itself.)
struct BatchQueue {
    /// The batches, and whether the sender has closed the queue.
    state: Mutex<(VecDeque<Vec<Slot>>, bool)>,
    /// Signalled on every push and on close.
    ready: Condvar,
}

impl BatchQueue {
    /// An empty queue with room for `capacity` batches without growing.
    fn new(capacity: usize) -> BatchQueue {
        BatchQueue {
            state: Mutex::new((VecDeque::with_capacity(capacity), false)),
            ready: Condvar::new(),
        }
    }

    /// Appends `batch` and wakes the receiver.
    fn push(&self, batch: Vec<Slot>) {
        self.state.lock().expect("xmalloc queue").0.push_back(batch);
        self.ready.notify_one();
    }

    /// Marks the end of the batches.
    fn close(&self) {
        // Closing runs in `Drop`, maybe while unwinding: a poisoned lock
        // still closes.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = true;
        drop(state);
        self.ready.notify_one();
    }

    /// The oldest batch, waiting for one; `None` once the queue is closed
    /// and empty.
    fn pop(&self) -> Option<Vec<Slot>> {
        let mut state = self.state.lock().expect("xmalloc queue");
        loop {
            if let Some(batch) = state.0.pop_front() {
                return Some(batch);
            }
            if state.1 {
                return None;
            }
            state = self.ready.wait(state).expect("xmalloc queue");
        }
    }
}

/// Closes its queue when dropped: the end of a thread's batches, however
/// the thread ends.
struct CloseOnDrop<'q>(&'q BatchQueue);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Lever & Boreham's xmalloc-test: `pairs` producer threads each allocate
/// `batches` batches of `batch` objects (sizes uniform in
/// `min_size..=max_size`, touched) and push them through a bounded queue of
/// `in_flight` batches to their own consumer thread, which frees every
/// object and sends the empty buffer back. Every object is freed by a
/// thread that did not allocate it. Threads block (futex) on the queues,
/// and run where `placement` says. Returns the time until the last
/// consumer has freed its last batch.
pub fn xmalloc<A: GlobalAlloc + Sync>(a: &A, p: &Xmalloc) -> Duration {
    assert!(p.pairs >= 1 && p.batch >= 1 && p.in_flight >= 1);
    assert!(1 <= p.min_size && p.min_size <= p.max_size);
    let span = p.max_size - p.min_size + 1;
    let start = Instant::now();
    let queues: Vec<[BatchQueue; 2]> = (0..p.pairs)
        .map(|_| [BatchQueue::new(p.in_flight), BatchQueue::new(p.in_flight)])
        .collect();
    thread::scope(|s| {
        for (pair, [full, empty]) in queues.iter().enumerate() {
            for _ in 0..p.in_flight {
                empty.push(Vec::with_capacity(p.batch));
            }
            s.spawn(move || {
                // If this thread ends early (a panic), the producer's next
                // wait for an empty batch ends too, instead of hanging.
                let _closer = CloseOnDrop(empty);
                p.placement.pin(pair, false);
                while let Some(mut buf) = full.pop() {
                    // SAFETY: the producer allocated every object of the
                    // batch from `a` with `layout8(size)` and gave it up.
                    unsafe { free_all(a, &buf) };
                    buf.clear();
                    empty.push(buf);
                }
            });
            s.spawn(move || {
                let _closer = CloseOnDrop(full);
                p.placement.pin(pair, true);
                let mut rng = Rng::new(0x3A11_0C00 + pair as u64);
                for _ in 0..p.batches {
                    let mut buf = empty.pop().expect("xmalloc: consumer ended early");
                    for _ in 0..p.batch {
                        let size = p.min_size + rng.below(span);
                        // SAFETY: `size >= min_size >= 1`.
                        buf.push((unsafe { alloc_touch(a, size) } as usize, size));
                    }
                    full.push(buf);
                }
            });
        }
    });
    start.elapsed()
}

// ---------------------------------------------------------------------------
// cache-scratch, cache-thrash

/// Parameters of [`cache_scratch`] and [`cache_thrash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cache {
    /// Threads (run at the same time: one per core is what shows sharing).
    pub threads: usize,
    /// Allocate/write/free cycles per thread.
    pub iterations: usize,
    /// Object size in bytes (Hoard's default is 8: many objects per line).
    pub obj_size: usize,
    /// Passes over the object's bytes per cycle.
    pub repetitions: usize,
}

/// Writes every byte of the object `repetitions` times, reading each back
/// (volatile, so every access reaches the cache line).
///
/// # Safety
///
/// `p` must be valid for reads and writes of `size` bytes.
#[inline(never)]
unsafe fn scribble(p: *mut u8, size: usize, repetitions: usize) {
    for r in 0..repetitions {
        for k in 0..size {
            // SAFETY: `k < size`, and the caller guarantees `size` bytes.
            unsafe {
                let q = p.add(k);
                q.write_volatile((k ^ r) as u8);
                let _ = q.read_volatile();
            }
        }
    }
}

/// One thread's loop of the cache workloads: allocate, scribble, free.
fn cache_loop<A: GlobalAlloc>(a: &A, p: &Cache, layout: Layout) {
    for _ in 0..p.iterations {
        // SAFETY: `obj_size >= 1`.
        let obj = unsafe { alloc_or_abort(a, layout) };
        // SAFETY: `obj` is valid for `obj_size` bytes.
        unsafe { scribble(obj, p.obj_size, p.repetitions) };
        // SAFETY: `obj` came from `a.alloc(layout)` and is freed once.
        unsafe { a.dealloc(obj, layout) };
    }
}

fn cache_layout(p: &Cache) -> Layout {
    assert!(p.threads >= 1 && p.obj_size >= 1);
    Layout::from_size_align(p.obj_size, 1).expect("valid layout")
}

/// Hoard's cache-thrash (active false sharing): each of `threads` threads,
/// started together, `iterations` times allocates an object of `obj_size`
/// bytes, writes it `repetitions` times and frees it. An allocator that
/// gives threads objects in the same cache line makes their writes fight
/// for the line.
pub fn cache_thrash<A: GlobalAlloc + Sync>(a: &A, p: &Cache) -> Duration {
    let layout = cache_layout(p);
    let barrier = Barrier::new(p.threads);
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..p.threads {
            s.spawn(|| {
                barrier.wait();
                cache_loop(a, p, layout);
            });
        }
    });
    start.elapsed()
}

/// Hoard's cache-scratch (passive false sharing): this thread allocates
/// `threads` objects of `obj_size` bytes back to back (so they share cache
/// lines) and hands one to each thread. Each thread frees the object it was
/// given, then runs the cache-thrash loop. An allocator that reuses the
/// freed object for the thread's next allocation keeps every thread writing
/// into a line shared with the others for the whole run.
pub fn cache_scratch<A: GlobalAlloc + Sync>(a: &A, p: &Cache) -> Duration {
    let layout = cache_layout(p);
    let barrier = Barrier::new(p.threads);
    let start = Instant::now();
    let given: Vec<usize> = (0..p.threads)
        // SAFETY: `obj_size >= 1`.
        .map(|_| unsafe { alloc_or_abort(a, layout) } as usize)
        .collect();
    thread::scope(|s| {
        for &obj in &given {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                // SAFETY: `obj` came from `a.alloc(layout)` on the main
                // thread and was handed to this thread alone.
                unsafe { a.dealloc(obj as *mut u8, layout) };
                cache_loop(a, p, layout);
            });
        }
    });
    start.elapsed()
}

// ---------------------------------------------------------------------------
// mstress

/// Parameters of [`mstress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mstress {
    /// Threads started per iteration.
    pub threads: usize,
    /// Thread `t` makes `100 * scale * (t % 8 + 1)` short-lived allocations
    /// and half as many long-lived ones per iteration.
    pub scale: usize,
    /// Iterations; each starts `threads` fresh threads.
    pub iterations: usize,
    /// Slots of the shared transfer array.
    pub transfers: usize,
}

/// Written into every word of an mstress object, xor the words left.
const COOKIE: usize = 0xBF58_476D_1CE4_E5B9_u64 as usize;
/// Largest object in words (64 words × 1000).
const MSTRESS_MAX_WORDS: usize = 64 * 1000;

/// Allocates an object of `words` words (rarely 100 or 1000 times more),
/// zeroed as by `calloc`, and fills it with the cookie pattern; word 0
/// encodes the size for [`free_items`]. Returns its address.
fn alloc_items<A: GlobalAlloc>(a: &A, words: usize, rng: &mut Rng) -> usize {
    let mut words = words;
    if rng.below(100) < 1 {
        words *= if rng.below(100) < 10 { 1000 } else { 100 };
    }
    if words == 40 {
        // mstress does this: pthreads grows stacks by that size.
        words += 1;
    }
    let layout = Layout::array::<usize>(words).expect("valid layout");
    // SAFETY: `words >= 1`, so the size is non-zero.
    let p = unsafe { a.alloc_zeroed(layout) } as *mut usize;
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    for i in 0..words {
        // SAFETY: `p` is valid for `words` words, and `i < words`.
        unsafe { p.add(i).write((words - i) ^ COOKIE) };
    }
    p as usize
}

/// Checks the cookie pattern of an object from [`alloc_items`] and frees
/// it; `0` is a no-op. Panics on a corrupted object (a correctness check,
/// not a timing one).
///
/// # Safety
///
/// `addr` is 0 or a live object of `a` from [`alloc_items`], freed by no
/// one else.
unsafe fn free_items<A: GlobalAlloc>(a: &A, addr: usize) {
    if addr == 0 {
        return;
    }
    let p = addr as *mut usize;
    // SAFETY: every object has at least one word.
    let words = unsafe { p.read() } ^ COOKIE;
    assert!(
        (1..=MSTRESS_MAX_WORDS).contains(&words),
        "mstress: corrupted object header at {addr:#x}"
    );
    for i in 0..words {
        // SAFETY: the header is sane, so the object has `words` words.
        let w = unsafe { p.add(i).read() };
        assert!(
            w == (words - i) ^ COOKIE,
            "mstress: corrupted object at {addr:#x}"
        );
    }
    // SAFETY: the caller's contract; the layout is the one of `alloc_items`.
    unsafe {
        a.dealloc(
            p as *mut u8,
            Layout::array::<usize>(words).expect("valid layout"),
        )
    };
}

/// One mstress thread (`stress` in mimalloc's test-stress.c).
fn stress<A: GlobalAlloc>(a: &A, p: &Mstress, transfer: &[AtomicUsize], tid: usize, iter: usize) {
    let mut rng = Rng::new((tid as u64 + 1) * 43 + iter as u64 * 0x1_0000_0001);
    let mut allocs = 100 * p.scale * (tid % 8 + 1);
    let mut retain = allocs / 2;
    let mut data: Vec<usize> = Vec::with_capacity(allocs);
    let mut retained: Vec<usize> = Vec::with_capacity(retain);
    while allocs > 0 || retain > 0 {
        if retain == 0 || (rng.below(100) < 50 && allocs > 0) {
            // Short-lived: 1..=16 words.
            allocs -= 1;
            data.push(alloc_items(a, 1 << rng.below(5), &mut rng));
        } else {
            // Long-lived (until the thread ends): 1..=64 words.
            retained.push(alloc_items(a, 1 << rng.below(7), &mut rng));
            retain -= 1;
        }
        if rng.below(100) < 66 && !data.is_empty() {
            let i = rng.below(data.len());
            // SAFETY: `data[i]` is 0 or a live object this thread owns;
            // it is cleared right after.
            unsafe { free_items(a, data[i]) };
            data[i] = 0;
        }
        if rng.below(100) < 25 && !data.is_empty() {
            // Swap a local object with one from the shared array: the
            // objects it receives were allocated by other threads (or by
            // this thread's earlier incarnations).
            let i = rng.below(data.len());
            let t = rng.below(transfer.len());
            data[i] = transfer[t].swap(data[i], Ordering::AcqRel);
        }
    }
    for &obj in retained.iter().chain(&data) {
        // SAFETY: every entry is 0 or a live object this thread owns.
        unsafe { free_items(a, obj) };
    }
}

/// mimalloc's test-stress (`mstress` in mimalloc-bench): `iterations`
/// times, start `threads` threads; each makes bursts of short-lived
/// objects (1–16 words, freed at random), long-lived ones (1–64 words,
/// freed when the thread ends), 1 % of them 100× larger and 0.1 % 1000×
/// larger, every object zeroed, filled and checked before it is freed; a
/// quarter of the steps swap an object with a shared array, so objects
/// move between threads and outlive the thread that allocated them.
/// Threads do uneven amounts of work. Returns the time of all iterations
/// and the final free of the shared array.
pub fn mstress<A: GlobalAlloc + Sync>(a: &A, p: &Mstress) -> Duration {
    assert!(p.threads >= 1 && p.transfers >= 1);
    let transfer: Vec<AtomicUsize> = (0..p.transfers).map(|_| AtomicUsize::new(0)).collect();
    let transfer = &transfer[..];
    let start = Instant::now();
    for iter in 0..p.iterations {
        thread::scope(|s| {
            for tid in 0..p.threads {
                s.spawn(move || stress(a, p, transfer, tid, iter));
            }
        });
    }
    for slot in transfer {
        // SAFETY: the threads are gone; each slot holds 0 or a live object
        // that no one else refers to.
        unsafe { free_items(a, slot.swap(0, Ordering::AcqRel)) };
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// handoff

/// Parameters of [`handoff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// Threads that build a batch each and exit.
    pub builders: usize,
    /// Objects per builder.
    pub objects: usize,
    /// Sizes of the built objects (bytes, at least 1).
    pub min_size: usize,
    /// Largest size of the built objects.
    pub max_size: usize,
    /// Sizes of the objects the main thread allocates afterwards.
    pub reuse_min: usize,
    /// Largest size of those.
    pub reuse_max: usize,
    /// Rounds of build, free and reuse.
    pub rounds: usize,
}

/// A program that builds a large structure on worker threads and tears
/// it down on its main thread: `builders` threads each allocate `objects`
/// objects (sizes uniform in `min_size..=max_size`, touched), hand them to
/// the main thread and exit; the main thread, which allocates objects of
/// those sizes itself (it keeps a few hundred for the whole run), frees
/// them all in random order, then allocates about as many bytes in
/// objects of `reuse_min..=reuse_max` bytes, touches them and frees them.
/// Peak RSS shows whether the memory of the freed structure served the
/// second allocation or stayed with its old slabs. Returns the time of
/// all `rounds`.
pub fn handoff<A: GlobalAlloc + Sync>(a: &A, p: &Handoff) -> Duration {
    assert!(p.builders >= 1 && p.objects >= 1 && p.rounds >= 1);
    assert!(1 <= p.min_size && p.min_size <= p.max_size);
    assert!(1 <= p.reuse_min && p.reuse_min <= p.reuse_max);
    let mut rng = Rng::new(0x4A4D_0FF0);
    let span = p.max_size - p.min_size + 1;
    let own: Vec<Slot> = (0..512)
        .map(|_| {
            let size = p.min_size + rng.below(span);
            // SAFETY: `size >= min_size >= 1`.
            (unsafe { alloc_touch(a, size) } as usize, size)
        })
        .collect();
    let start = Instant::now();
    for round in 0..p.rounds {
        let mut all: Vec<Slot> = thread::scope(|s| {
            let builders: Vec<_> = (0..p.builders)
                .map(|i| {
                    let mut rng = Rng::new(0x4A4D_1000 + (round * p.builders + i) as u64);
                    s.spawn(move || {
                        (0..p.objects)
                            .map(|_| {
                                let size = p.min_size + rng.below(span);
                                // SAFETY: `size >= min_size >= 1`.
                                (unsafe { alloc_touch(a, size) } as usize, size)
                            })
                            .collect::<Vec<Slot>>()
                    })
                })
                .collect();
            builders
                .into_iter()
                .flat_map(|b| b.join().expect("handoff builder panicked"))
                .collect()
        });
        rng.shuffle(&mut all);
        let bytes: usize = all.iter().map(|&(_, size)| size).sum();
        // SAFETY: the builders allocated every object with `layout8(size)`
        // and gave them up; each is listed once.
        unsafe { free_all(a, &all) };
        drop(all);
        let reuse_span = p.reuse_max - p.reuse_min + 1;
        let mut reused = Vec::with_capacity(bytes / p.reuse_min + 1);
        let mut total = 0;
        while total < bytes {
            let size = p.reuse_min + rng.below(reuse_span);
            // SAFETY: `size >= reuse_min >= 1`.
            reused.push((unsafe { alloc_touch(a, size) } as usize, size));
            total += size;
        }
        // SAFETY: allocated just above with `layout8(size)`, each once.
        unsafe { free_all(a, &reused) };
    }
    let elapsed = start.elapsed();
    // SAFETY: allocated above with `layout8(size)`, each once.
    unsafe { free_all(a, &own) };
    elapsed
}

// ---------------------------------------------------------------------------
// the standard runs

/// The workloads of the `workloads` driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// [`larson`]
    Larson,
    /// [`larson`] with [`Larson::flush_before_handoff`]
    LarsonFlush,
    /// [`larson`] with every thread on one core
    LarsonOneCore,
    /// [`xmalloc`]
    Xmalloc,
    /// [`xmalloc`], each pair on one core ([`Placement::PairOnOneCore`])
    XmallocOneCore,
    /// [`xmalloc`], each pair across two cores ([`Placement::PairAcrossCores`])
    XmallocAcrossCores,
    /// [`cache_scratch`]
    CacheScratch,
    /// [`cache_thrash`]
    CacheThrash,
    /// [`mstress`]
    Mstress,
    /// [`handoff`]
    Handoff,
}

impl Kind {
    /// All workloads, in the order they are reported.
    pub const ALL: [Kind; 10] = [
        Kind::Larson,
        Kind::LarsonFlush,
        Kind::LarsonOneCore,
        Kind::Xmalloc,
        Kind::XmallocOneCore,
        Kind::XmallocAcrossCores,
        Kind::Mstress,
        Kind::Handoff,
        Kind::CacheScratch,
        Kind::CacheThrash,
    ];

    /// Name, as accepted by [`Kind::from_name`].
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Larson => "larson",
            Kind::LarsonFlush => "larson-flush",
            Kind::LarsonOneCore => "larson-one-core",
            Kind::Xmalloc => "xmalloc",
            Kind::XmallocOneCore => "xmalloc-one-core",
            Kind::XmallocAcrossCores => "xmalloc-across-cores",
            Kind::CacheScratch => "cache-scratch",
            Kind::CacheThrash => "cache-thrash",
            Kind::Mstress => "mstress",
            Kind::Handoff => "handoff",
        }
    }

    /// Parses a name (case-insensitive); `None` if unknown.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Whether objects are routinely freed by a thread other than the one
    /// that allocated them (the "cross-thread workloads").
    pub const fn cross_thread(self) -> bool {
        matches!(
            self,
            Kind::Larson
                | Kind::LarsonFlush
                | Kind::LarsonOneCore
                | Kind::Xmalloc
                | Kind::XmallocOneCore
                | Kind::XmallocAcrossCores
                | Kind::Mstress
                | Kind::Handoff
        )
    }

    /// The workload this one is a variant of: the same program pinned to
    /// cores or calling the allocators' thread-cache flush. The report's
    /// geometric means and issue 6's targets leave variants out, so that
    /// no program counts twice.
    pub const fn variant_of(self) -> Option<Kind> {
        match self {
            Kind::LarsonFlush | Kind::LarsonOneCore => Some(Kind::Larson),
            Kind::XmallocOneCore | Kind::XmallocAcrossCores => Some(Kind::Xmalloc),
            _ => None,
        }
    }

    /// Whether this is larson or one of its variants.
    pub const fn is_larson(self) -> bool {
        matches!(self, Kind::Larson) || matches!(self.variant_of(), Some(Kind::Larson))
    }

    /// Whether the geometric means of the report include this workload
    /// (it is no variant of another).
    pub const fn in_mean(self) -> bool {
        self.variant_of().is_none()
    }

    /// The placement of an xmalloc workload's threads; `None` for the
    /// other workloads.
    pub const fn placement(self) -> Option<Placement> {
        match self {
            Kind::Xmalloc => Some(Placement::Scheduler),
            Kind::XmallocOneCore => Some(Placement::PairOnOneCore),
            Kind::XmallocAcrossCores => Some(Placement::PairAcrossCores),
            _ => None,
        }
    }

    /// Whether issue 6's targets (`report::Targets`) cover this workload:
    /// the five they were set over. [`handoff`] came later, to show what a
    /// thread that only frees keeps.
    pub const fn targeted(self) -> bool {
        self.in_mean() && !matches!(self, Kind::Handoff)
    }

    /// Standard parameters of larson at `scale` (rounds scale).
    pub fn larson(scale: f64) -> Larson {
        Larson {
            threads: 4,
            slots: 8000,
            rounds: scaled(100, scale),
            per_round: 10_000,
            min_size: 16,
            max_size: 1024,
            flush_before_handoff: false,
        }
    }

    /// Standard parameters of xmalloc at `scale` (batches scale), with
    /// the threads wherever the scheduler puts them.
    pub fn xmalloc(scale: f64) -> Xmalloc {
        Xmalloc {
            pairs: 2,
            batches: scaled(8000, scale),
            batch: 500,
            in_flight: 8,
            min_size: 16,
            max_size: 512,
            placement: Placement::Scheduler,
        }
    }

    /// Standard parameters of the cache workloads at `scale` (iterations
    /// scale): one thread per core (2 to 16).
    pub fn cache(scale: f64) -> Cache {
        Cache {
            threads: cores().clamp(2, 16),
            iterations: scaled(5000, scale),
            obj_size: 8,
            repetitions: 10_000,
        }
    }

    /// Standard parameters of mstress at `scale` (iterations scale): four
    /// threads per core (8 to 32).
    pub fn mstress(scale: f64) -> Mstress {
        Mstress {
            threads: (4 * cores()).clamp(8, 32),
            scale: 50,
            iterations: scaled(10, scale),
            transfers: 1000,
        }
    }

    /// Standard parameters of handoff at `scale` (rounds scale).
    pub fn handoff(scale: f64) -> Handoff {
        Handoff {
            builders: 2,
            objects: 200_000,
            min_size: 16,
            max_size: 128,
            reuse_min: 256,
            reuse_max: 1024,
            rounds: scaled(4, scale),
        }
    }

    /// Threads of the standard run.
    pub fn threads(self) -> usize {
        match self {
            Kind::Larson | Kind::LarsonFlush | Kind::LarsonOneCore => Kind::larson(1.0).threads,
            Kind::Xmalloc | Kind::XmallocOneCore | Kind::XmallocAcrossCores => {
                2 * Kind::xmalloc(1.0).pairs
            }
            Kind::CacheScratch | Kind::CacheThrash => Kind::cache(1.0).threads,
            Kind::Mstress => Kind::mstress(1.0).threads,
            Kind::Handoff => Kind::handoff(1.0).builders + 1,
        }
    }

    /// One line on what the standard run does.
    pub fn describe(self) -> String {
        match self {
            Kind::Larson => {
                let p = Kind::larson(1.0);
                format!(
                    "{} threads × window of {} objects ({}–{} B); {} random \
                     replacements per round, then the thread hands its window to \
                     a new thread and exits; {} rounds",
                    p.threads, p.slots, p.min_size, p.max_size, p.per_round, p.rounds
                )
            }
            Kind::Xmalloc => {
                let p = Kind::xmalloc(1.0);
                format!(
                    "{} producer → consumer pairs; {} batches of {} objects \
                     ({}–{} B) per producer through a queue of {} batches; the \
                     consumer frees",
                    p.pairs, p.batches, p.batch, p.min_size, p.max_size, p.in_flight
                )
            }
            Kind::LarsonOneCore => "larson with every thread pinned to one core: each \
                                    thread's successor runs before the thread exits, \
                                    so many threads' caches are alive at once"
                .to_owned(),
            Kind::LarsonFlush => "larson with each thread giving back its allocator's \
                                  thread cache just before it starts its successor \
                                  (no such call in glibc)"
                .to_owned(),
            Kind::XmallocOneCore => "xmalloc with each pair's two threads pinned to \
                                     one core, the pairs to different cores"
                .to_owned(),
            Kind::XmallocAcrossCores => "xmalloc with each pair's producer and consumer \
                                         pinned to different cores"
                .to_owned(),
            Kind::CacheScratch => {
                let p = Kind::cache(1.0);
                format!(
                    "main thread allocates {} adjacent {}-B objects, one per thread; \
                     each thread frees its own, then {} × (allocate, write {} times, free)",
                    p.threads, p.obj_size, p.iterations, p.repetitions
                )
            }
            Kind::CacheThrash => {
                let p = Kind::cache(1.0);
                format!(
                    "{} threads, each {} × (allocate {} B, write {} times, free)",
                    p.threads, p.iterations, p.obj_size, p.repetitions
                )
            }
            Kind::Mstress => {
                let p = Kind::mstress(1.0);
                format!(
                    "{} iterations × {} fresh threads; bursts of short-lived (8–128 B) \
                     and long-lived (8–512 B) objects, 1 % ×100 and 0.1 % ×1000 larger, \
                     a quarter swapped through a shared array of {}",
                    p.iterations, p.threads, p.transfers
                )
            }
            Kind::Handoff => {
                let p = Kind::handoff(1.0);
                format!(
                    "{} threads each allocate {} objects ({}–{} B) and exit; the main \
                     thread frees them all in random order, then allocates as many \
                     bytes in {}–{} B objects and frees them; {} rounds",
                    p.builders,
                    p.objects,
                    p.min_size,
                    p.max_size,
                    p.reuse_min,
                    p.reuse_max,
                    p.rounds
                )
            }
        }
    }

    /// Runs larson with the parameters `p` as this larson workload does
    /// (flushing for larson-flush, on one core for larson-one-core: from a
    /// thread of its own pinned to the first allowed core, whose threads
    /// inherit the pinning, so the caller's thread stays as it was).
    ///
    /// # Panics
    ///
    /// If `self` is not a larson workload, or the thread cannot be pinned.
    pub fn run_larson<A: GlobalAlloc + Sync + FlushThreadCache>(
        self,
        a: &A,
        p: Larson,
    ) -> Duration {
        match self {
            Kind::Larson => larson(a, &p),
            Kind::LarsonFlush => larson(
                a,
                &Larson {
                    flush_before_handoff: true,
                    ..p
                },
            ),
            Kind::LarsonOneCore => thread::scope(|s| {
                s.spawn(|| {
                    pin_to_allowed(0);
                    larson(a, &p)
                })
                .join()
                .expect("larson-one-core: the pinned run panicked")
            }),
            _ => panic!("{self} is not a larson workload"),
        }
    }

    /// Runs the standard workload at `scale` on `a`; returns its time.
    pub fn run<A: GlobalAlloc + Sync + FlushThreadCache>(self, a: &A, scale: f64) -> Duration {
        match self {
            Kind::Larson | Kind::LarsonFlush | Kind::LarsonOneCore => {
                self.run_larson(a, Kind::larson(scale))
            }
            Kind::Xmalloc | Kind::XmallocOneCore | Kind::XmallocAcrossCores => {
                let placement = self.placement().expect("an xmalloc workload");
                xmalloc(
                    a,
                    &Xmalloc {
                        placement,
                        ..Kind::xmalloc(scale)
                    },
                )
            }
            Kind::CacheScratch => cache_scratch(a, &Kind::cache(scale)),
            Kind::CacheThrash => cache_thrash(a, &Kind::cache(scale)),
            Kind::Mstress => mstress(a, &Kind::mstress(scale)),
            Kind::Handoff => handoff(a, &Kind::handoff(scale)),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `n * scale`, at least 1.
fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

/// Logical cores available to this process (1 if unknown).
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{with_allocator, Which};

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert!(!k.describe().is_empty());
            assert!(k.threads() >= 2);
        }
        assert_eq!(Kind::from_name("Cache-Scratch"), Some(Kind::CacheScratch));
        assert_eq!(Kind::from_name("espresso"), None);
    }

    #[test]
    fn scale_changes_work_not_live_set() {
        let (a, b) = (Kind::larson(1.0), Kind::larson(0.1));
        assert_eq!((a.threads, a.slots), (b.threads, b.slots));
        assert!(b.rounds < a.rounds);
        let (a, b) = (Kind::mstress(1.0), Kind::mstress(0.01));
        assert_eq!((a.threads, a.scale), (b.threads, b.scale));
        assert_eq!(b.iterations, 1);
    }

    #[test]
    fn placements_pin_each_role_to_its_core() {
        let allowed = allowed_cores();
        let core_of = |placement: Placement, pair: usize, producer: bool| {
            thread::spawn(move || {
                placement.pin(pair, producer);
                // SAFETY: sched_getcpu has no preconditions.
                unsafe { libc::sched_getcpu() }
            })
            .join()
            .expect("pinned thread")
        };
        let nth = |i: usize| allowed[i % allowed.len()] as i32;
        for pair in 0..3 {
            for producer in [true, false] {
                assert_eq!(core_of(Placement::PairOnOneCore, pair, producer), nth(pair));
                let slot = 2 * pair + usize::from(!producer);
                assert_eq!(
                    core_of(Placement::PairAcrossCores, pair, producer),
                    nth(slot)
                );
            }
        }
    }

    #[test]
    fn mstress_items_round_trip() {
        let mut rng = Rng::new(7);
        let objs: Vec<usize> = (0..2000)
            .map(|i| alloc_items(&crate::SYSTEM, 1 << (i % 7), &mut rng))
            .collect();
        for obj in objs {
            // SAFETY: each object is live, from `alloc_items` on SYSTEM.
            unsafe { free_items(&crate::SYSTEM, obj) };
        }
    }

    /// Tiny versions of every workload on every allocator: they must run
    /// to completion (nothing is asserted about time).
    #[test]
    fn every_workload_runs_on_every_allocator() {
        let larson_p = Larson {
            threads: 3,
            slots: 50,
            rounds: 4,
            per_round: 100,
            min_size: 16,
            max_size: 1024,
            flush_before_handoff: false,
        };
        let xmalloc_p = Xmalloc {
            pairs: 2,
            batches: 20,
            batch: 30,
            in_flight: 3,
            min_size: 16,
            max_size: 512,
            placement: Placement::Scheduler,
        };
        let cache_p = Cache {
            threads: 3,
            iterations: 20,
            obj_size: 8,
            repetitions: 10,
        };
        let mstress_p = Mstress {
            threads: 4,
            scale: 1,
            iterations: 2,
            transfers: 16,
        };
        let handoff_p = Handoff {
            builders: 2,
            objects: 300,
            min_size: 16,
            max_size: 128,
            reuse_min: 256,
            reuse_max: 1024,
            rounds: 2,
        };
        for w in Which::ALL {
            with_allocator!(w, |a| {
                let cores = allowed_cores();
                for k in [Kind::Larson, Kind::LarsonFlush, Kind::LarsonOneCore] {
                    k.run_larson(a, larson_p);
                }
                // larson-one-core pins threads of its own, not this one.
                assert_eq!(allowed_cores(), cores);
                for placement in [
                    Placement::Scheduler,
                    Placement::PairOnOneCore,
                    Placement::PairAcrossCores,
                ] {
                    xmalloc(
                        a,
                        &Xmalloc {
                            placement,
                            ..xmalloc_p
                        },
                    );
                }
                cache_scratch(a, &cache_p);
                cache_thrash(a, &cache_p);
                mstress(a, &mstress_p);
                handoff(a, &handoff_p);
            });
        }
    }
}
