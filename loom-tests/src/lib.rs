//! Loom models of lifeboat's concurrent protocols; see `tests/`.
//!
//! Build and run with `RUSTFLAGS="--cfg loom"` (see `ci/loom.sh`). Without
//! `--cfg loom` this crate and its tests are empty.
//!
//! Every model runs the shipped protocol code (lifeboat's atomics, cells,
//! locks, futex, mutex and condition variable come from loom under
//! `--cfg loom`) on a private 64 KiB heap (128 KiB where a model needs an
//! order-4 block above `min`), and has a *broken twin*: the same model with
//! one fault injected into the real protocol step (`lifeboat::model::Fault`),
//! which loom must catch.
//!
//! The harness here adds what loom cannot see by itself: user objects are
//! plain memory, so a [`Shadow`] keeps one loom cell per object slot. A
//! thread *takes* an object's cell when the allocator hands it out and
//! *gives* it back just before freeing it; both are tracked writes, so loom
//! reports a hand-out that is not ordered after the previous holder's last
//! use (a missing release/acquire on the free path), and the values catch
//! an object handed to two holders at once. [`note`] records which paths
//! the executions took, and [`check`] fails a model that no longer reaches
//! the paths it exists for.
//!
//! Rules for models: loom runs every model thread on the OS thread that
//! called it, so lifeboat's thread-locals (memalloc scopes, the rights
//! reclaim sets) would be shared by all of them. Models therefore pass
//! rights as explicit flags ([`NORMAL`], [`MEMALLOC`]: with `NORETRY`, so a
//! refusal runs no direct reclaim), and end each thread cache
//! with [`lifeboat::model::Cache::exit`], so no later cache reuses its
//! address (its owner id).

#![cfg(loom)]

use lifeboat::model::{self, Cache, Fault};
use lifeboat::{AllocFlags, Config, Heap};
use std::alloc::Layout;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The budget of every model's heap: the loom minimum, 16 pages.
pub const BUDGET: usize = 64 << 10;

/// A fresh heap of [`BUDGET`].
pub fn heap() -> Heap {
    Heap::new(Config::new().budget(BUDGET)).expect("a 64 KiB heap (loom minimum)")
}

/// A fresh heap of `budget` bytes (a multiple of 64 KiB; models that need
/// more than [`BUDGET`], such as a capture of an order-4 block above `min`).
pub fn heap_of(budget: usize) -> Heap {
    Heap::new(Config::new().budget(budget)).expect("a small loom heap")
}

/// Flags of every model request: no direct reclaim on a refusal (it would
/// run shrinkers, retry, and set thread-local rights that loom's threads
/// would share), no warning (rate-limited by wall-clock time).
pub const QUIET: AllocFlags = AllocFlags::NORETRY.union(AllocFlags::NOWARN);
/// An unprivileged model request.
pub const NORMAL: AllocFlags = AllocFlags::NORMAL.union(QUIET);
/// A model request with memalloc rights.
pub const MEMALLOC: AllocFlags = AllocFlags::MEMALLOC.union(QUIET);

/// Layout of `size` bytes aligned to 8.
pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// A pointer sent between model threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Obj(pub usize);

impl Obj {
    /// Wraps an allocation.
    pub fn new(p: NonNull<u8>) -> Self {
        Obj(p.as_ptr() as usize)
    }

    /// The allocation.
    pub fn ptr(self) -> NonNull<u8> {
        NonNull::new(self.0 as *mut u8).expect("non-null object")
    }
}

/// `who` allocates `n` objects of `size` through `c` (unprivileged) and
/// takes their shadow cells.
pub fn alloc_taken(c: &mut Cache, shadow: &Shadow, size: usize, n: usize, who: usize) -> Vec<Obj> {
    (0..n)
        .map(|_| {
            let o = Obj::new(c.alloc(layout(size), NORMAL).expect("budget left"));
            shadow.take(o, size, who);
            o
        })
        .collect()
}

/// A block of four pages aligned to four: the buddy arena serves it
/// directly.
pub fn four_pages() -> Layout {
    Layout::from_size_align(4 * lifeboat::PAGE_SIZE, 4 * lifeboat::PAGE_SIZE).expect("valid layout")
}

/// Brings a fresh [`heap`] (16 pages, `min` = 4) down to `min` with three
/// [`four_pages`] blocks, which it returns for the model to free: ordinary
/// slabs can then not be carved, and memalloc requests take the reserve.
pub fn hold_down_to_min(heap: &Heap) -> Vec<Obj> {
    assert_eq!(model::min_pages(heap), 4, "the model's figures");
    let blocks = (0..3)
        .map(|_| Obj::new(heap.alloc(four_pages(), NORMAL).expect("above min")))
        .collect();
    assert_eq!(model::free_pages(heap), 4);
    blocks
}

/// Ends a reserve model after its threads joined: a fresh cache of
/// thread `who` takes over every object of `objs` (each of `size`, held by
/// the thread beside it) and frees it, `held` (a [`four_pages`] block
/// still out) is freed, and the caches are flushed; then every page must
/// be free and no reserve slab left. Returns the fresh cache's memory, for
/// the model to drop with its other exited caches.
pub fn free_everything(
    heap: &Heap,
    shadow: &Shadow,
    size: usize,
    objs: impl IntoIterator<Item = (Obj, usize)>,
    held: Obj,
    who: usize,
) -> model::Retired {
    let mut c = Cache::new(heap);
    for (o, from) in objs {
        shadow.pass(o, size, from, who);
        shadow.give(o, size, who);
        // SAFETY: live objects of this heap, each freed once.
        unsafe { c.free(o.ptr()) };
    }
    let retired = c.exit();
    // SAFETY: a live block of this heap, allocated with this layout.
    unsafe { heap.dealloc(held.ptr(), four_pages()) };
    heap.flush_caches();
    assert_all_free(heap);
    assert_eq!(model::reserve_slabs(heap), 0, "reserve slabs left");
    retired
}

/// `who` allocates `size` bytes through `c` with memalloc rights, which
/// must succeed (the reserve, if nothing else), and takes the object's
/// shadow cells.
pub fn alloc_memalloc(c: &mut Cache, shadow: &Shadow, size: usize, who: usize) -> Obj {
    let o = Obj::new(
        c.alloc(layout(size), MEMALLOC)
            .expect("a memalloc request gets the reserve"),
    );
    shadow.take(o, size, who);
    o
}

/// `who` allocates `size` bytes through `c` without rights, and takes the
/// object's shadow cells: `None` if refused. Panics if the object is of a
/// reserve-backed slab. (Read after the allocation returns: a lift of the
/// reserve by another thread in between could hide an object popped from
/// a list, but not one of a slab the caller claimed, which it then owns
/// and no lift touches.)
pub fn alloc_unprivileged(
    heap: &Heap,
    c: &mut Cache,
    shadow: &Shadow,
    size: usize,
    who: usize,
) -> Option<Obj> {
    let p = c.alloc(layout(size), NORMAL).ok()?;
    assert!(
        !heap.is_reserve_backed(p.as_ptr()),
        "an unprivileged caller got an object of a reserve-backed slab"
    );
    let o = Obj::new(p);
    shadow.take(o, size, who);
    Some(o)
}

/// `who` gives back and frees every object of `objs` (each of `size`,
/// live, held by `who`) through `c`.
pub fn free_held(c: &mut Cache, shadow: &Shadow, size: usize, objs: Vec<Obj>, who: usize) {
    for o in objs {
        shadow.give(o, size, who);
        // SAFETY: a live object of the cache's heap, held by `who` (the
        // shadow just checked it), freed once.
        unsafe { c.free(o.ptr()) };
    }
}

/// One loom cell per `granule` bytes of a heap's arena: who holds the
/// object that starts there (0 = nobody).
pub struct Shadow {
    base: usize,
    granule: usize,
    cells: Vec<loom::cell::UnsafeCell<usize>>,
}

// SAFETY: the cells are loom cells: every access goes through `with_mut`,
// which loom checks for ordering against all other accesses (that is the
// point of the type); the rest is immutable.
unsafe impl Sync for Shadow {}
// SAFETY: as above.
unsafe impl Send for Shadow {}

impl Shadow {
    /// Cells for every `granule` bytes of `heap`'s arena.
    pub fn new(heap: &Heap, granule: usize) -> Self {
        let bytes = model::budget_pages(heap) * lifeboat::PAGE_SIZE;
        Shadow {
            base: model::arena_base(heap),
            granule,
            cells: (0..bytes / granule)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
        }
    }

    fn cells(&self, o: Obj, len: usize) -> &[loom::cell::UnsafeCell<usize>] {
        let off = o.0.checked_sub(self.base).expect("object below the arena");
        assert_eq!(off % self.granule, 0, "object {:#x} is misaligned", o.0);
        let first = off / self.granule;
        let n = len.div_ceil(self.granule).max(1);
        self.cells
            .get(first..first + n)
            .expect("object beyond the arena")
    }

    /// Records that `who` (non-zero) received `len` bytes at `o` from the
    /// allocator: nobody may hold them.
    pub fn take(&self, o: Obj, len: usize, who: usize) {
        assert_ne!(who, 0);
        for c in self.cells(o, len) {
            c.with_mut(|v| {
                // SAFETY: `with_mut` hands out the cell exclusively (loom
                // reports any unordered access instead).
                let v = unsafe { &mut *v };
                assert_eq!(
                    *v, 0,
                    "object {:#x} handed to thread {who} while thread {} holds it",
                    o.0, *v
                );
                *v = who;
            });
        }
    }

    /// Records that `from` hands the object at `o` to `to` (before sending
    /// it to `to`'s thread).
    pub fn pass(&self, o: Obj, len: usize, from: usize, to: usize) {
        self.give(o, len, from);
        self.take(o, len, to);
    }

    /// Records that `who` gives `len` bytes at `o` back (just before the
    /// free): `who` must hold them.
    pub fn give(&self, o: Obj, len: usize, who: usize) {
        for c in self.cells(o, len) {
            c.with_mut(|v| {
                // SAFETY: as in `take`.
                let v = unsafe { &mut *v };
                assert_eq!(*v, who, "thread {who} frees {:#x}, held by {}", o.0, *v);
                *v = 0;
            });
        }
    }
}

std::thread_local! {
    // Loom runs a model's threads on the thread that called it, so this
    // counts for one run.
    static NOTES: std::cell::RefCell<std::collections::BTreeMap<&'static str, usize>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
    // Paths noted by the current execution.
    static SEEN: std::cell::RefCell<std::collections::BTreeSet<&'static str>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// Counts that an execution of the model reached `what` (a path worth
/// covering). Runs report the counts, and [`check`] fails if an expected
/// path was never reached, so a model cannot pass vacuously.
pub fn note(what: &'static str) {
    if SEEN.with(|s| s.borrow_mut().insert(what)) {
        NOTES.with(|n| *n.borrow_mut().entry(what).or_insert(0) += 1);
    }
}

/// Checks after a model's threads joined: every page is back.
pub fn assert_all_free(heap: &Heap) {
    assert_eq!(
        model::free_pages(heap),
        model::budget_pages(heap),
        "pages lost (or counted twice) after everything was freed and flushed"
    );
}

/// Loom's per-execution branch limit for the models (unless
/// `LOOM_MAX_BRANCHES` is set).
pub const MAX_BRANCHES: usize = 100_000;

/// Loom's own complaints, which are failures of the harness, never a
/// caught fault.
const HARNESS_FAILURES: [&str; 4] = [
    "maximum number of branches",
    "Model exceeded",
    "fully deterministic",
    // A model thread's stack overflow (loom's coroutines have 32 KiB): the
    // models' and lifeboat's own checks all panic with a message.
    "(non-string panic)",
];

/// What one loom run found.
#[derive(Debug)]
pub struct Run {
    /// Executions (interleavings) loom ran.
    pub iterations: usize,
    /// Wall time.
    pub seconds: f64,
    /// The panic message, if loom (or the model) panicked.
    pub failure: Option<String>,
    /// How many executions reached each [`note`]d path.
    pub notes: std::collections::BTreeMap<&'static str, usize>,
}

fn run(name: &str, fault: Option<Fault>, f: impl Fn() + Send + Sync + 'static) -> Run {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let progress = std::env::var_os("LOOM_PROGRESS").is_some();
    let label = name.to_string();
    let t0 = Instant::now();
    let body = move || {
        let i = c.fetch_add(1, Ordering::Relaxed) + 1;
        SEEN.with(|s| s.borrow_mut().clear());
        if progress && i.is_multiple_of(100_000) {
            eprintln!(
                "{label}: {i} iterations, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
        f();
    };
    NOTES.with(|n| n.borrow_mut().clear());
    let prev = model::inject(fault);
    let start = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut b = loom::model::Builder::new();
        if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
            // The shipped code is long-winded for loom (every atomic access
            // is a branch point, and a flush looks at every class); most of
            // those points are uncontended and cost nothing to explore.
            b.max_branches = MAX_BRANCHES;
        }
        b.check(body);
    }));
    let seconds = start.elapsed().as_secs_f64();
    model::inject(prev);
    let failure = res.err().map(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(non-string panic)".into())
    });
    let run = Run {
        iterations: count.load(Ordering::Relaxed),
        seconds,
        failure,
        notes: NOTES.with(|n| std::mem::take(&mut *n.borrow_mut())),
    };
    // One line per run, for ci/loom.sh's summary (visible with --nocapture).
    println!(
        "loom-summary: {name} fault={} iterations={} seconds={:.2} result={}",
        fault.map_or("none".into(), |f| format!("{f:?}")),
        run.iterations,
        run.seconds,
        match (&run.failure, fault) {
            (None, None) => "ok".to_string(),
            (Some(m), Some(_)) => format!("caught: {}", m.lines().next().unwrap_or("")),
            (None, Some(_)) => "MISSED".to_string(),
            (Some(m), None) => format!("FAILED: {}", m.lines().next().unwrap_or("")),
        }
    );
    if fault.is_none() {
        for (what, n) in &run.notes {
            println!("loom-summary:   {name}: {n} executions {what}");
        }
    }
    run
}

/// Runs model `f` under loom with no fault; panics with loom's finding if
/// any interleaving fails, or if some path of `expect` (see [`note`]) was
/// reached by no execution.
pub fn check(name: &str, expect: &[&str], f: impl Fn() + Send + Sync + 'static) -> Run {
    let r = run(name, None, f);
    if let Some(m) = &r.failure {
        panic!(
            "loom model {name} failed after {} iterations: {m}",
            r.iterations
        );
    }
    for what in expect {
        assert!(
            r.notes.get(what).copied().unwrap_or(0) > 0,
            "loom model {name}: no execution {what} (the model no longer covers it)"
        );
    }
    r
}

/// Runs model `f` under loom with `fault` injected into lifeboat's protocol
/// code; panics unless loom catches it (some interleaving fails).
pub fn check_catches(name: &str, fault: Fault, f: impl Fn() + Send + Sync + 'static) -> Run {
    let r = run(name, Some(fault), f);
    let Some(m) = &r.failure else {
        panic!(
            "loom did not catch fault {fault:?} in {name} ({} iterations)",
            r.iterations
        );
    };
    assert!(
        !HARNESS_FAILURES.iter().any(|h| m.contains(h)),
        "twin {name}/{fault:?} failed for a harness reason, not the fault: {m}"
    );
    r
}
