//! Benchmarks of lifeboat against System, mimalloc and jemalloc.
//!
//! All four allocators are used as *values* through [`GlobalAlloc`], side by
//! side in one process; none of them is installed as `#[global_allocator]`
//! (the harness itself allocates from `System`). This keeps ratios between
//! them meaningful: same binary, same machine state, same run.
//!
//! The workloads live here so that the criterion suite (`benches/alloc.rs`)
//! and the quick self-timed driver (`src/bin/ratios.rs`) measure exactly the
//! same code. Every workload has the shape `fn(&A, iters) -> Duration`: it
//! runs `iters` iterations and returns the time of the measured part only
//! (set-up such as building index vectors is excluded).
//!
//! The multi-threaded, program-like workloads (larson, xmalloc,
//! cache-scratch, cache-thrash, mstress) are in [`workloads`]; the
//! `workloads` driver runs each in a child process per allocator to measure
//! peak RSS as well as time, and [`report`] turns the results into the
//! markdown and SVG of `docs/`. [`machine`] reads `/proc`.

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

pub mod cli;
pub mod machine;
pub mod report;
pub mod workloads;

pub use lifeboat::Lifeboat;
pub use mimalloc::MiMalloc;
pub use tikv_jemallocator::Jemalloc;

/// The lifeboat allocator under test, used as a value.
pub static LIFEBOAT: Lifeboat = Lifeboat::new();
/// The platform allocator (glibc malloc on Linux).
pub static SYSTEM: System = System;
/// mimalloc, the reference lifeboat aims to match.
pub static MIMALLOC: MiMalloc = MiMalloc;
/// jemalloc (tikv-jemallocator).
pub static JEMALLOC: Jemalloc = Jemalloc;

/// An allocator's own way for a thread to give back what its thread cache
/// holds while the thread lives on (used by the larson-flush workload).
pub trait FlushThreadCache {
    /// Gives back the calling thread's cache, as far as the allocator has
    /// a call for it.
    fn flush_thread_cache(&self);
}

impl FlushThreadCache for Lifeboat {
    fn flush_thread_cache(&self) {
        lifeboat::flush_thread_cache();
    }
}

/// glibc has no call that empties one thread's cache (`malloc_trim`
/// works on the whole process): nothing.
impl FlushThreadCache for System {
    fn flush_thread_cache(&self) {}
}

impl FlushThreadCache for MiMalloc {
    fn flush_thread_cache(&self) {
        // SAFETY: mi_collect has no preconditions; `false` asks for the
        // ordinary, not the forced, collection of this thread's heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

impl FlushThreadCache for Jemalloc {
    fn flush_thread_cache(&self) {
        // SAFETY: a NUL-terminated name of a write-only control that takes
        // no value: null pointers and lengths of 0, as jemalloc documents.
        // (It fails only when the thread has no cache, `tcache:false`:
        // then there is nothing to flush.)
        unsafe {
            tikv_jemalloc_sys::mallctl(
                c"thread.tcache.flush".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
    }
}

/// Page size assumed when touching big blocks (one write per page).
pub const PAGE: usize = 4096;

/// One of the four allocators compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// [`LIFEBOAT`]
    Lifeboat,
    /// [`SYSTEM`]
    System,
    /// [`MIMALLOC`]
    Mimalloc,
    /// [`JEMALLOC`]
    Jemalloc,
}

impl Which {
    /// All allocators, in the order they are reported.
    pub const ALL: [Which; 4] = [
        Which::Lifeboat,
        Which::System,
        Which::Mimalloc,
        Which::Jemalloc,
    ];

    /// Lower-case name, as accepted by [`Which::from_name`].
    pub const fn name(self) -> &'static str {
        match self {
            Which::Lifeboat => "lifeboat",
            Which::System => "system",
            Which::Mimalloc => "mimalloc",
            Which::Jemalloc => "jemalloc",
        }
    }

    /// Parses a name (case-insensitive); `None` if unknown.
    pub fn from_name(name: &str) -> Option<Which> {
        Which::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Evaluates `$body` with `$a` bound to `&'static` allocator `$which`, with a
/// separate (monomorphised) copy of `$body` for each allocator, so no
/// workload pays for dynamic dispatch.
///
/// ```ignore
/// let d = with_allocator!(which, |a| lifeboat_bench::pairs(a, 64, 1000));
/// ```
#[macro_export]
macro_rules! with_allocator {
    ($which:expr, |$a:ident| $body:expr) => {
        match $which {
            $crate::Which::Lifeboat => {
                let $a = &$crate::LIFEBOAT;
                $body
            }
            $crate::Which::System => {
                let $a = &$crate::SYSTEM;
                $body
            }
            $crate::Which::Mimalloc => {
                let $a = &$crate::MIMALLOC;
                $body
            }
            $crate::Which::Jemalloc => {
                let $a = &$crate::JEMALLOC;
                $body
            }
        }
    };
}

/// A small, fixed-seed pseudo-random generator (xorshift64*), so every run
/// and every allocator sees the same sizes and the same free order.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (zero is replaced by a fixed constant).
    pub const fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`; the slight modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Allocates `layout` from `a`, aborting through [`handle_alloc_error`] on
/// failure (a benchmark has nothing sensible to do with a null pointer).
///
/// # Safety
///
/// `layout` must have a non-zero size.
#[inline(always)]
unsafe fn alloc_or_abort<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: the caller guarantees a non-zero size.
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    p
}

/// Sizes of the alloc/free pair workload.
pub const PAIR_SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 65536];

/// `iters` alloc/free pairs of `size` bytes (align 8).
///
/// The layout passes through [`black_box`] on every iteration, so the
/// compiler cannot constant-fold the size-class lookup of an inlinable Rust
/// allocator (the C allocators are behind FFI and never could); the pointer
/// passes through it too, so the pair is not optimised away. Nothing is
/// written to the object: this is the allocator's own cost.
pub fn pairs<A: GlobalAlloc>(a: &A, size: usize, iters: u64) -> Duration {
    let layout = Layout::from_size_align(size.max(1), 8).expect("valid layout");
    let start = Instant::now();
    for _ in 0..iters {
        let l = black_box(layout);
        // SAFETY: `l` has a non-zero size.
        let p = black_box(unsafe { alloc_or_abort(a, l) });
        // SAFETY: `p` came from `a.alloc(l)` just above and is freed once.
        unsafe { a.dealloc(p, l) };
    }
    start.elapsed()
}

/// Allocations [`pairs_after_foreign_free`] makes, at most, before it
/// starts timing.
pub const FOREIGN_SETUP_ALLOCS: usize = 10_000;

/// `iters` alloc/free pairs of 64 bytes, timed on a thread that first
/// freed one of 64 objects that another thread (alive until the end)
/// allocated, then allocated and kept 64-byte objects until its allocator
/// handed that object back to it, or [`FOREIGN_SETUP_ALLOCS`] times, and
/// freed it again if it came back. A thread whose own memory of the class
/// had run out when another thread's object was waiting for reuse: an
/// allocator that keeps handing that object out makes every pair of the
/// loop a cross-thread free and its reuse. Threads are made and the
/// objects freed outside the timing.
pub fn pairs_after_foreign_free<A: GlobalAlloc + Sync>(a: &A, iters: u64) -> Duration {
    use std::sync::mpsc::channel;
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    std::thread::scope(|s| {
        let (objects_tx, objects_rx) = channel::<usize>();
        let (done_tx, done_rx) = channel::<()>();
        s.spawn(move || {
            // 64 objects, so that their slab (or page) stays mostly in
            // use: lifeboat keeps another thread's object for its own
            // reuse only then.
            // SAFETY: a non-zero size.
            let mine: Vec<*mut u8> = (0..64)
                .map(|_| unsafe { alloc_or_abort(a, layout) })
                .collect();
            objects_tx.send(mine[0] as usize).expect("receiver alive");
            // Alive, so the object stays another live thread's, until the
            // timed thread is done.
            let _ = done_rx.recv();
            for &p in &mine[1..] {
                // SAFETY: allocated just above with `layout`, freed once
                // (the first one by the timed thread).
                unsafe { a.dealloc(p, layout) };
            }
        });
        let foreign = objects_rx.recv().expect("sender alive");
        let timed = s.spawn(move || {
            let mut kept = Vec::with_capacity(FOREIGN_SETUP_ALLOCS + 1);
            // SAFETY: a non-zero size.
            kept.push(unsafe { alloc_or_abort(a, layout) });
            // SAFETY: allocated by the other thread with `layout`, handed
            // over, freed once here.
            unsafe { a.dealloc(foreign as *mut u8, layout) };
            let mut back = false;
            while kept.len() <= FOREIGN_SETUP_ALLOCS {
                // SAFETY: a non-zero size.
                let p = unsafe { alloc_or_abort(a, layout) };
                if p as usize == foreign {
                    back = true;
                    break;
                }
                kept.push(p);
            }
            if back {
                // SAFETY: handed back just above, freed once.
                unsafe { a.dealloc(foreign as *mut u8, layout) };
            }
            let elapsed = pairs(a, 64, iters);
            for p in kept {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { a.dealloc(p, layout) };
            }
            elapsed
        });
        let elapsed = timed.join().expect("timed thread panicked");
        done_tx.send(()).expect("receiver alive");
        elapsed
    })
}

/// Number of objects of the allocate-many-then-free-shuffled workload.
pub const MANY_OBJECTS: usize = 10_000;

/// Set-up of the allocate-many-then-free-in-random-order workload: mixed
/// small sizes and a shuffled free order, both from a fixed seed.
#[derive(Clone, Debug)]
pub struct ManyRandom {
    layouts: Vec<Layout>,
    order: Vec<usize>,
    ptrs: Vec<*mut u8>,
}

impl ManyRandom {
    /// `n` objects of sizes 8..=512 (multiples of 8, skewed towards small
    /// ones: a quarter each of <= 32, <= 64, <= 128, <= 512 bytes), align 8.
    pub fn new(n: usize) -> ManyRandom {
        let mut rng = Rng::new(0x5EED_0001);
        let layouts = (0..n)
            .map(|_| {
                let max = [32, 64, 128, 512][rng.below(4)];
                let size = 8 * (1 + rng.below(max / 8));
                Layout::from_size_align(size, 8).expect("valid layout")
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        ManyRandom {
            layouts,
            order,
            ptrs: vec![std::ptr::null_mut(); n],
        }
    }

    /// Objects per iteration.
    pub fn len(&self) -> usize {
        self.layouts.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.layouts.is_empty()
    }

    /// `iters` times: allocate every object in order (writing its first
    /// byte), then free them all in the shuffled order.
    pub fn run<A: GlobalAlloc>(&mut self, a: &A, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            for (slot, &l) in self.ptrs.iter_mut().zip(&self.layouts) {
                // SAFETY: every layout has a size >= 8.
                let p = unsafe { alloc_or_abort(a, l) };
                // SAFETY: `p` is valid for `l.size() >= 1` bytes of writes.
                unsafe { p.write(1) };
                *slot = p;
            }
            black_box(&mut self.ptrs);
            for &i in &self.order {
                // SAFETY: `order` is a permutation, so each `ptrs[i]` came
                // from `a.alloc(layouts[i])` above and is freed exactly once.
                unsafe { a.dealloc(self.ptrs[i], self.layouts[i]) };
            }
        }
        start.elapsed()
    }
}

/// Objects per batch of the producer/consumer workload.
pub const CROSS_BATCH: usize = 1000;

/// Batches in flight between the two threads (bounded channel capacity).
const CROSS_IN_FLIGHT: usize = 4;

/// Producer/consumer with cross-thread frees: this thread allocates `iters`
/// batches of `batch` objects (mixed sizes 16..=256, fixed seed; first
/// byte written), sends each batch through a bounded channel to a second
/// thread, which frees every object and sends the empty buffer back for
/// reuse. Returns the time from the first allocation until the consumer has
/// freed the last batch, so divide by `iters` for the cost of one batch.
///
/// Batch buffers are recycled, so after the first few batches the harness
/// itself (System) does not allocate in the measured loop. Both threads
/// wait by spinning, then yielding, never by sleeping on a futex: with
/// two cores, sleeping hand-offs made the figures mostly scheduler noise.
pub fn producer_consumer<A: GlobalAlloc + Sync>(a: &A, batch: usize, iters: u64) -> Duration {
    use std::sync::mpsc::sync_channel;

    let mut rng = Rng::new(0x5EED_0002);
    let layouts: Vec<Layout> = (0..batch)
        .map(|_| Layout::from_size_align(16 * (1 + rng.below(16)), 8).expect("valid layout"))
        .collect();
    let layouts = &layouts[..];

    let (full_tx, full_rx) = sync_channel::<Vec<usize>>(CROSS_IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<usize>>(CROSS_IN_FLIGHT);
    for _ in 0..CROSS_IN_FLIGHT {
        empty_tx
            .send(Vec::with_capacity(batch))
            .expect("receiver alive");
    }

    std::thread::scope(|s| {
        let consumer = s.spawn(move || {
            while let Some(mut buf) = spin_recv(&full_rx) {
                for (&addr, &l) in buf.iter().zip(layouts) {
                    // SAFETY: the producer got `addr` from `a.alloc(l)` (same
                    // index, same layout) and handed it over; only we free it.
                    unsafe { a.dealloc(addr as *mut u8, l) };
                }
                buf.clear();
                // The producer may be gone after its last batch.
                let _ = empty_tx.try_send(buf);
            }
        });

        let start = Instant::now();
        for _ in 0..iters {
            let mut buf = spin_recv(&empty_rx).expect("consumer alive");
            for &l in layouts {
                // SAFETY: every layout has a size >= 16.
                let p = unsafe { alloc_or_abort(a, l) };
                // SAFETY: `p` is valid for at least one byte of writes.
                unsafe { p.write(1) };
                buf.push(p as usize);
            }
            // There are never more than CROSS_IN_FLIGHT buffers, and the
            // channel holds that many, so this cannot be full.
            full_tx
                .try_send(buf)
                .expect("consumer alive, channel not full");
        }
        drop(full_tx);
        consumer.join().expect("consumer thread panicked");
        start.elapsed()
    })
}

/// Receives from `rx`, spinning a little and then yielding while it is
/// empty; `None` once the sender is gone and the channel drained.
fn spin_recv<T>(rx: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    use std::sync::mpsc::TryRecvError;
    let mut spins = 0u32;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                if spins < 64 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Largest size the realloc workloads grow to.
pub const REALLOC_MAX: usize = 1 << 20;

/// How a buffer grows in the realloc workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// size * 2 (16 B -> 1 MiB in 16 steps).
    Double,
    /// size * 3 / 2, rounded up to 8 (16 B -> 1 MiB in 27 steps).
    Half,
}

impl Growth {
    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Growth::Double => "x2",
            Growth::Half => "x1.5",
        }
    }

    /// Next size after `size`, capped at [`REALLOC_MAX`].
    pub const fn next(self, size: usize) -> usize {
        let n = match self {
            Growth::Double => size * 2,
            Growth::Half => (size + size / 2 + 7) & !7,
        };
        if n > REALLOC_MAX {
            REALLOC_MAX
        } else {
            n
        }
    }

    /// Number of reallocs from `from` bytes to [`REALLOC_MAX`].
    pub const fn steps(self, from: usize) -> usize {
        let mut size = from;
        let mut steps = 0;
        while size < REALLOC_MAX {
            size = self.next(size);
            steps += 1;
        }
        steps
    }
}

/// `iters` times: allocate `from` bytes (at least 1), grow by `growth` up
/// to 1 MiB with `realloc` (writing the last byte after each step, as a
/// growing `Vec` would), then free.
pub fn realloc_growth<A: GlobalAlloc>(a: &A, growth: Growth, from: usize, iters: u64) -> Duration {
    assert!(from >= 1);
    let start = Instant::now();
    for _ in 0..iters {
        let mut layout = Layout::from_size_align(from, 8).expect("valid layout");
        // SAFETY: `from` is a non-zero size.
        let mut p = unsafe { alloc_or_abort(a, layout) };
        // SAFETY: `p` is valid for 16 bytes.
        unsafe { p.write(1) };
        while layout.size() < REALLOC_MAX {
            let new_size = black_box(growth.next(layout.size()));
            // SAFETY: `p` is live and was allocated from `a` with `layout`;
            // `new_size` is non-zero and far below isize::MAX.
            let q = unsafe { a.realloc(p, layout, new_size) };
            layout = Layout::from_size_align(new_size, 8).expect("valid layout");
            if q.is_null() {
                handle_alloc_error(layout);
            }
            p = q;
            // SAFETY: `p` is valid for `new_size` bytes.
            unsafe { p.add(new_size - 1).write(1) };
        }
        black_box(p);
        // SAFETY: `p` is live, from `a`, with the current `layout`.
        unsafe { a.dealloc(p, layout) };
    }
    start.elapsed()
}

/// Sizes of the big-block workload.
pub const BIG_SIZES: [usize; 3] = [1 << 20, 4 << 20, 16 << 20];

/// Cache-line size assumed when spreading the touches of a big block.
const LINE: usize = 64;

/// Offset of the byte written in page `page` of a big block: the pages
/// cycle through all 64 cache lines of a page (7 is coprime to 64).
///
/// A write at the same offset of every page would put all of a block's
/// touches in the few cache sets that one page offset selects, and the
/// benchmark would then measure conflict misses that depend on where in a
/// page each allocator starts its blocks (3–5× slower for every allocator
/// on the machine of `docs/benchmarks.md`), not the allocators.
pub const fn touch_offset(page: usize) -> usize {
    page * PAGE + (page * 7 % (PAGE / LINE)) * LINE
}

/// Writes one byte in every page of the `size`-byte block at `p` (at
/// [`touch_offset`]).
///
/// # Safety
/// `p` is valid for writes of `size` bytes, `size > 0`.
#[inline(always)]
unsafe fn touch_pages(p: *mut u8, size: usize) {
    for page in 0..size.div_ceil(PAGE) {
        let off = touch_offset(page).min(size - 1);
        // SAFETY: `off < size`, so the byte is inside the block (caller);
        // volatile so that the page really is touched.
        unsafe { p.add(off).write_volatile(1) };
    }
}

/// `iters` times: allocate `size` bytes (align 16), write one byte in every
/// page (at [`touch_offset`]), free.
pub fn big_block<A: GlobalAlloc>(a: &A, size: usize, iters: u64) -> Duration {
    let layout = Layout::from_size_align(size.max(1), 16).expect("valid layout");
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: the size is non-zero.
        let p = unsafe { alloc_or_abort(a, black_box(layout)) };
        // SAFETY: `p` holds `layout.size() > 0` bytes.
        unsafe { touch_pages(p, layout.size()) };
        // SAFETY: `p` came from `a.alloc(layout)` and is freed once.
        unsafe { a.dealloc(black_box(p), layout) };
    }
    start.elapsed()
}

/// The floor under [`big_block`]: one block of `size` bytes from `a`,
/// allocated, written once and freed outside the timing, its pages
/// written `iters` times as [`big_block`] writes them. `big_block` minus
/// this is what the allocation and free of a block cost; what is left here
/// still depends on the allocator through the block's pages (huge pages or
/// not).
pub fn big_block_touch_only<A: GlobalAlloc>(a: &A, size: usize, iters: u64) -> Duration {
    let layout = Layout::from_size_align(size.max(1), 16).expect("valid layout");
    // SAFETY: the size is non-zero.
    let p = unsafe { alloc_or_abort(a, layout) };
    // An untimed pass first: the floor is of pages already resident, not
    // of an allocator's first-touch page faults.
    // SAFETY: `p` holds `layout.size() > 0` bytes.
    unsafe { touch_pages(black_box(p), layout.size()) };
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: as above.
        unsafe { touch_pages(black_box(p), layout.size()) };
    }
    let elapsed = start.elapsed();
    // SAFETY: `p` came from `a.alloc(layout)` and is freed once.
    unsafe { a.dealloc(p, layout) };
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Which::ALL {
            assert_eq!(Which::from_name(w.name()), Some(w));
        }
        assert_eq!(Which::from_name("MiMalloc"), Some(Which::Mimalloc));
        assert_eq!(Which::from_name("tcmalloc"), None);
    }

    #[test]
    fn growth_steps() {
        assert_eq!(Growth::Double.steps(16), 16);
        assert_eq!(Growth::Half.steps(16), 27);
        assert_eq!(Growth::Double.steps(4096), 8);
    }

    #[test]
    fn touch_offsets_stay_in_their_page_and_cover_every_line() {
        let mut lines = [false; PAGE / LINE];
        for page in 0..PAGE / LINE {
            let off = touch_offset(page);
            assert_eq!(off / PAGE, page);
            assert_eq!(off % LINE, 0);
            lines[off % PAGE / LINE] = true;
        }
        assert!(lines.iter().all(|&hit| hit));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let m = ManyRandom::new(1000);
        let mut seen = m.order.clone();
        seen.sort_unstable();
        assert!(seen.into_iter().eq(0..1000));
        assert!(m.layouts.iter().all(|l| (8..=512).contains(&l.size())));
    }

    #[test]
    fn every_workload_runs_on_every_allocator() {
        for w in Which::ALL {
            with_allocator!(w, |a| {
                for size in PAIR_SIZES {
                    pairs(a, size, 3);
                }
                ManyRandom::new(100).run(a, 2);
                producer_consumer(a, 50, 5);
                pairs_after_foreign_free(a, 3);
                realloc_growth(a, Growth::Double, 16, 1);
                realloc_growth(a, Growth::Half, 16, 1);
                realloc_growth(a, Growth::Double, 4096, 1);
                big_block(a, 1 << 20, 1);
                big_block_touch_only(a, 1 << 20, 2);
            });
        }
    }
}
