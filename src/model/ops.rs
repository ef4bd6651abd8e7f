//! Operation sequences over a private [`Heap`], checked against a model.
//!
//! * [`Rng`]: a seeded, dependency-free PRNG (SplitMix64).
//! * [`Choices`]: where a generator's decisions come from: an [`Rng`] (for
//!   seeded tests) or raw bytes ([`Bytes`], for a fuzzer), which end the
//!   sequence when they run out.
//! * [`Gen`]: turns choices into [`Op`]s: allocations of any size (zero,
//!   small, page blocks, direct mappings) and alignment (up to 8 MiB) with
//!   any flags, zeroed or through [`Heap::reserve`]; frees; reallocs;
//!   memalloc and nomemalloc scopes; shrinker registration, hand-over of
//!   live blocks to a shrinker (which frees them when reclaim asks);
//!   purges, cache flushes, verification.
//! * [`Runner`]: applies ops to a heap and keeps the model: every live
//!   block with its size, alignment and a fill byte, checked on free and
//!   realloc (and for zeroed memory, on allocation). At the end
//!   ([`Runner::finish`]) everything is freed, [`Heap::verify`] must pass
//!   and the free-page count must be back where it started.
//!
//! Allocation failures are outcomes, not errors: a model error is a
//! content mismatch, a wrong usable size, a reserve object handed to a
//! caller without the right, or a failed verification.

use crate::flags::AllocFlags;
use crate::heap::Heap;
use crate::memalloc::{memalloc_scope, nomemalloc_scope, ScopeGuard};
use crate::reclaim::shrinker::{ShrinkControl, ShrinkResult, Shrinker};
use allocator_api2::alloc::Allocator;
use core::alloc::Layout;
use core::ptr::NonNull;
use std::string::String;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::vec::Vec;

/// SplitMix64: small, fast, good enough for test sequences.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A source of decisions for [`Gen`].
pub trait Choices {
    /// A value in `0..n`, or `None` when the source is exhausted.
    fn below(&mut self, n: u64) -> Option<u64>;
}

impl Choices for Rng {
    fn below(&mut self, n: u64) -> Option<u64> {
        Some(Rng::below(self, n))
    }
}

/// Decisions read from bytes (a fuzzer's input): one byte per choice of
/// up to 256 values, four bytes otherwise.
#[derive(Clone, Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, n: u64) -> Option<u64> {
        let n = n.max(1);
        let k = if n <= 256 { 1 } else { 4 };
        if self.data.len() < k {
            return None;
        }
        let (head, rest) = self.data.split_at(k);
        self.data = rest;
        let mut v = 0u64;
        for &b in head {
            v = (v << 8) | b as u64;
        }
        Some(v % n)
    }
}

/// How an allocation is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// [`Heap::alloc`].
    Plain,
    /// [`Heap::alloc_zeroed`] (checked to read as zero).
    Zeroed,
    /// Through the [`Heap::reserve`] `Allocator` handle (memalloc right).
    Reserve,
}

/// One operation of a sequence. `pick` values select a live block (modulo
/// the number of live blocks at the time the op runs).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Allocate `size` bytes at `align`.
    Alloc {
        /// Requested size (may be 0).
        size: usize,
        /// Requested alignment (a power of two).
        align: usize,
        /// Explicit flags.
        flags: AllocFlags,
        /// Which entry point.
        how: How,
    },
    /// Free a live block.
    Free {
        /// Which block.
        pick: usize,
    },
    /// Resize a live block.
    Realloc {
        /// Which block.
        pick: usize,
        /// New size (may be 0).
        new_size: usize,
        /// Explicit flags.
        flags: AllocFlags,
    },
    /// Enter a memalloc scope (reserve access).
    EnterMemalloc,
    /// Enter a nomemalloc scope (wins over memalloc).
    EnterNomemalloc,
    /// Leave the innermost scope entered by the sequence.
    ExitScope,
    /// Register model shrinker `which` with the heap.
    Register {
        /// Which shrinker (0 or 1).
        which: usize,
    },
    /// Unregister model shrinker `which`.
    Unregister {
        /// Which shrinker (0 or 1).
        which: usize,
    },
    /// Hand a live block to shrinker `which`, which frees it when reclaim
    /// scans it.
    Adopt {
        /// Which block.
        pick: usize,
        /// Which shrinker (0 or 1).
        which: usize,
    },
    /// [`Heap::purge`].
    Purge,
    /// [`Heap::flush_caches`].
    FlushCaches,
    /// [`Heap::verify`].
    Verify,
}

/// Turns choices into operations.
pub struct Gen<C: Choices> {
    c: C,
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

impl<C: Choices> Gen<C> {
    /// A generator drawing from `c`.
    pub fn new(c: C) -> Self {
        Self { c }
    }

    fn size(&mut self) -> Option<usize> {
        let c = &mut self.c;
        Some(match c.below(100)? {
            0..=2 => 0,
            3..=54 => 1 + c.below(256)? as usize,
            55..=74 => 1 + c.below(32 * KIB as u64)? as usize,
            75..=91 => 1 + c.below(MIB as u64)? as usize,
            92..=96 => 1 + c.below(4 * MIB as u64)? as usize,
            _ => 4 * MIB + c.below(8 * MIB as u64)? as usize,
        })
    }

    fn align(&mut self) -> Option<usize> {
        let c = &mut self.c;
        Some(match c.below(100)? {
            0..=79 => 1 << c.below(4)?,          // 1..8
            80..=94 => 1 << c.below(13)?,        // up to 4 KiB
            95..=98 => 1 << (12 + c.below(11)?), // up to 4 MiB
            _ => 8 * MIB,
        })
    }

    fn flags(&mut self) -> Option<AllocFlags> {
        let bits = self.c.below(128)? as u32;
        // Mostly plain; otherwise any combination of the seven flags bits.
        Some(if bits < 64 {
            AllocFlags::NORMAL
        } else {
            AllocFlags((bits & 0x3f) | AllocFlags::NOWARN.0)
        })
    }

    /// The next operation, or `None` when the choices are exhausted.
    pub fn next_op(&mut self) -> Option<Op> {
        let kind = self.c.below(100)?;
        Some(match kind {
            0..=39 => Op::Alloc {
                size: self.size()?,
                align: self.align()?,
                flags: self.flags()?,
                how: match self.c.below(10)? {
                    0 | 1 => How::Zeroed,
                    2 => How::Reserve,
                    _ => How::Plain,
                },
            },
            40..=69 => Op::Free {
                pick: self.c.below(1 << 16)? as usize,
            },
            70..=84 => Op::Realloc {
                pick: self.c.below(1 << 16)? as usize,
                new_size: self.size()?,
                flags: self.flags()?,
            },
            85..=86 => Op::EnterMemalloc,
            87 => Op::EnterNomemalloc,
            88..=89 => Op::ExitScope,
            90 => Op::Register {
                which: self.c.below(2)? as usize,
            },
            91 => Op::Unregister {
                which: self.c.below(2)? as usize,
            },
            92..=95 => Op::Adopt {
                pick: self.c.below(1 << 16)? as usize,
                which: self.c.below(2)? as usize,
            },
            96 => Op::Purge,
            97 => Op::FlushCaches,
            _ => Op::Verify,
        })
    }

    /// Up to `n` operations (fewer if the choices run out).
    pub fn ops(&mut self, n: usize) -> Vec<Op> {
        let mut v = Vec::with_capacity(n.min(1 << 16));
        while v.len() < n {
            match self.next_op() {
                Some(op) => v.push(op),
                None => break,
            }
        }
        v
    }
}

/// A live block of the model.
#[derive(Clone, Copy, Debug)]
struct Live {
    addr: usize,
    layout: Layout,
    fill: u8,
}

fn fill(b: &Live) {
    // SAFETY: the block is live and at least `layout.size()` bytes.
    unsafe { core::ptr::write_bytes(b.addr as *mut u8, b.fill, b.layout.size()) };
}

/// The first byte of `[addr, addr + len)` that is not `want`. Blocks are
/// filled whole; above 16 KiB the check samples them (the first and last
/// 4 KiB and 64 bytes of every page), which keeps unoptimised test builds
/// fast and still catches overlapping or misplaced blocks.
fn mismatch(addr: usize, len: usize, want: u8) -> Option<usize> {
    const WHOLE: usize = 16 << 10;
    const EDGE: usize = 4 << 10;
    let part = |from: usize, to: usize| -> Option<usize> {
        // SAFETY: callers pass the live part of a live block; `from..to`
        // lies inside it.
        let s = unsafe { core::slice::from_raw_parts((addr + from) as *const u8, to - from) };
        s.iter().position(|&b| b != want).map(|i| from + i)
    };
    if len <= WHOLE {
        return part(0, len);
    }
    if let Some(i) = part(0, EDGE).or_else(|| part(len - EDGE, len)) {
        return Some(i);
    }
    let mut at = EDGE;
    while at + 64 <= len - EDGE {
        if let Some(i) = part(at, at + 64) {
            return Some(i);
        }
        at += crate::PAGE_SIZE;
    }
    None
}

/// A shrinker whose objects are blocks the sequence handed to it; a scan
/// checks and frees them.
pub struct ModelShrinker {
    heap: AtomicUsize,
    items: Mutex<Vec<Live>>,
    /// Scans so far.
    pub scans: AtomicUsize,
    /// Blocks freed by scans.
    pub freed: AtomicUsize,
    /// Blocks whose contents were wrong when a scan freed them.
    pub corrupt: AtomicUsize,
}

impl ModelShrinker {
    fn new(heap: &Heap) -> Self {
        Self {
            heap: AtomicUsize::new(heap as *const Heap as usize),
            items: Mutex::new(Vec::new()),
            scans: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
            corrupt: AtomicUsize::new(0),
        }
    }

    /// Frees up to `n` held blocks, taking them one at a time so that a
    /// scan allocates nothing (recursive reclaim rounds forbid it).
    fn free_n(&self, n: usize) -> usize {
        // SAFETY: the runner keeps the heap alive while the shrinker can be
        // called (it unregisters and empties it before the heap goes).
        let heap = unsafe { &*(self.heap.load(Ordering::Relaxed) as *const Heap) };
        let mut freed = 0;
        while freed < n {
            let Some(b) = self.items.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                break;
            };
            if mismatch(b.addr, b.layout.size(), b.fill).is_some() {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(p) = NonNull::new(b.addr as *mut u8) {
                // SAFETY: the block is live and was handed to us.
                unsafe { heap.dealloc(p, b.layout) };
            }
            freed += 1;
        }
        self.freed.fetch_add(freed, Ordering::Relaxed);
        freed
    }
}

impl Shrinker for ModelShrinker {
    fn count(&self) -> usize {
        self.items.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn scan(&self, sc: &ShrinkControl) -> ShrinkResult {
        self.scans.fetch_add(1, Ordering::Relaxed);
        ShrinkResult::Freed(self.free_n(sc.nr_to_scan.max(1)))
    }
}

/// Counts of what a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Operations applied.
    pub ops: usize,
    /// Allocations (and reallocs) that succeeded.
    pub allocs: usize,
    /// Allocations (and reallocs) refused with an error.
    pub refused: usize,
    /// Blocks freed by the sequence.
    pub frees: usize,
    /// Blocks freed by shrinkers during reclaim.
    pub shrunk: usize,
    /// Most blocks live at once.
    pub max_live: usize,
}

/// Applies operations to a heap and checks them against the model.
pub struct Runner<'h> {
    heap: &'h Heap,
    live: Vec<Live>,
    scopes: Vec<ScopeGuard>,
    shrinkers: [&'static ModelShrinker; 2],
    registered: [bool; 2],
    next_fill: u8,
    start_free: usize,
    /// Counts so far.
    pub stats: RunStats,
}

impl<'h> Runner<'h> {
    /// A runner over `heap`, which should be fresh (or at least have
    /// nothing live that the runner does not know about). The model's two
    /// shrinkers are leaked (`&'static` is what registration takes; they
    /// are small and unregistered at the end).
    pub fn new(heap: &'h Heap) -> Self {
        let mk = || &*Box::leak(Box::new(ModelShrinker::new(heap)));
        Self {
            heap,
            live: Vec::new(),
            scopes: Vec::new(),
            shrinkers: [mk(), mk()],
            registered: [false; 2],
            next_fill: 0,
            start_free: crate::model::free_pages(heap),
            stats: RunStats::default(),
        }
    }

    /// Blocks live now.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    fn fill_byte(&mut self) -> u8 {
        self.next_fill = self.next_fill % 254 + 1;
        self.next_fill
    }

    fn check(&self, b: &Live, len: usize, what: &str) -> Result<(), String> {
        match mismatch(b.addr, len.min(b.layout.size()), b.fill) {
            None => Ok(()),
            Some(i) => Err(std::format!(
                "{what}: block {:#x} ({:?}) byte {i} is not {:#x}",
                b.addr,
                b.layout,
                b.fill
            )),
        }
    }

    fn has_right(flags: AllocFlags) -> bool {
        crate::memalloc::resolve(flags).memalloc
    }

    fn adopt(&mut self, addr: usize, layout: Layout, right: bool) -> Result<(), String> {
        if !addr.is_multiple_of(layout.align()) {
            return Err(std::format!("block {addr:#x} misaligned for {layout:?}"));
        }
        match self.heap.usable_size(addr as *const u8) {
            Some(u) if u >= layout.size() => {}
            u => {
                return Err(std::format!(
                    "block {addr:#x} for {layout:?}: usable size {u:?}"
                ))
            }
        }
        if !right && self.heap.is_reserve_backed(addr as *const u8) {
            return Err(std::format!(
                "reserve-backed block {addr:#x} handed to a caller without the memalloc right"
            ));
        }
        let b = Live {
            addr,
            layout,
            fill: self.fill_byte(),
        };
        fill(&b);
        self.live.push(b);
        self.stats.allocs += 1;
        self.stats.max_live = self.stats.max_live.max(self.live.len());
        Ok(())
    }

    fn take(&mut self, pick: usize) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        let i = pick % self.live.len();
        Some(self.live.swap_remove(i))
    }

    /// Applies one operation; `Err` is a model violation.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        self.stats.ops += 1;
        match *op {
            Op::Alloc {
                size,
                align,
                flags,
                how,
            } => {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    return Ok(());
                };
                let got = match how {
                    How::Plain => self.heap.alloc(layout, flags),
                    How::Zeroed => self.heap.alloc_zeroed(layout, flags),
                    How::Reserve => self
                        .heap
                        .reserve()
                        .allocate(layout)
                        .map(|p| p.cast::<u8>())
                        .map_err(|_| crate::AllocError::Watermark),
                };
                match got {
                    Ok(p) => {
                        let addr = p.as_ptr() as usize;
                        if how == How::Zeroed {
                            if let Some(i) = mismatch(addr, size, 0) {
                                return Err(std::format!(
                                    "zeroed block {addr:#x} ({layout:?}) byte {i} is not zero"
                                ));
                            }
                        }
                        let right = how == How::Reserve || Self::has_right(flags);
                        self.adopt(addr, layout, right)?;
                    }
                    Err(_) => self.stats.refused += 1,
                }
            }
            Op::Free { pick } => {
                if let Some(b) = self.take(pick) {
                    self.check(&b, usize::MAX, "free")?;
                    self.stats.frees += 1;
                    if let Some(p) = NonNull::new(b.addr as *mut u8) {
                        // SAFETY: a live block of this heap, freed once.
                        unsafe { self.heap.dealloc(p, b.layout) };
                    }
                }
            }
            Op::Realloc {
                pick,
                new_size,
                flags,
            } => {
                let Some(b) = self.take(pick) else {
                    return Ok(());
                };
                self.check(&b, usize::MAX, "before realloc")?;
                let p = NonNull::new(b.addr as *mut u8).ok_or("null live block")?;
                // SAFETY: a live block of this heap with its layout.
                match unsafe { self.heap.realloc(p, b.layout, new_size, flags) } {
                    Ok(q) => {
                        let nb = Live {
                            addr: q.as_ptr() as usize,
                            layout: Layout::from_size_align(new_size, b.layout.align())
                                .map_err(|e| std::format!("{e}"))?,
                            fill: b.fill,
                        };
                        self.check(&nb, b.layout.size(), "after realloc")?;
                        if !nb.addr.is_multiple_of(nb.layout.align()) {
                            return Err(std::format!("realloc lost the alignment: {nb:?}"));
                        }
                        match self.heap.usable_size(nb.addr as *const u8) {
                            Some(u) if u >= new_size => {}
                            u => {
                                return Err(std::format!(
                                    "realloc to {new_size}: usable size {u:?} ({nb:?})"
                                ))
                            }
                        }
                        let nb = Live {
                            fill: self.fill_byte(),
                            ..nb
                        };
                        fill(&nb);
                        self.live.push(nb);
                        self.stats.allocs += 1;
                    }
                    Err(_) => {
                        self.check(&b, usize::MAX, "after a failed realloc")?;
                        self.live.push(b);
                        self.stats.refused += 1;
                    }
                }
            }
            Op::EnterMemalloc => {
                if self.scopes.len() < 8 {
                    self.scopes.push(memalloc_scope());
                }
            }
            Op::EnterNomemalloc => {
                if self.scopes.len() < 8 {
                    self.scopes.push(nomemalloc_scope());
                }
            }
            Op::ExitScope => {
                self.scopes.pop();
            }
            Op::Register { which } => {
                let w = which % 2;
                if !self.registered[w] && self.heap.register_shrinker(self.shrinkers[w]).is_ok() {
                    self.registered[w] = true;
                }
            }
            Op::Unregister { which } => {
                let w = which % 2;
                if self.registered[w] {
                    self.heap.unregister_shrinker(self.shrinkers[w]);
                    self.registered[w] = false;
                }
            }
            Op::Adopt { pick, which } => {
                if let Some(b) = self.take(pick) {
                    self.check(&b, usize::MAX, "adopt")?;
                    let s = self.shrinkers[which % 2];
                    s.items.lock().unwrap_or_else(|e| e.into_inner()).push(b);
                }
            }
            Op::Purge => {
                self.heap.purge();
            }
            Op::FlushCaches => self.heap.flush_caches(),
            Op::Verify => self.heap.verify().map_err(|e| std::format!("{e}"))?,
        }
        for s in self.shrinkers {
            if s.corrupt.load(Ordering::Relaxed) != 0 {
                return Err("a shrinker freed a block whose contents were wrong".into());
            }
        }
        Ok(())
    }

    /// Leaves every scope, unregisters the shrinkers, frees every block
    /// (checking it), flushes the caches, then checks [`Heap::verify`] and
    /// that the free-page count is back at its starting value.
    pub fn finish(mut self) -> Result<RunStats, String> {
        while self.scopes.pop().is_some() {}
        for w in 0..2 {
            if self.registered[w] {
                self.heap.unregister_shrinker(self.shrinkers[w]);
                self.registered[w] = false;
            }
            self.stats.shrunk += self.shrinkers[w].freed.load(Ordering::Relaxed);
            self.shrinkers[w].free_n(usize::MAX);
            if self.shrinkers[w].corrupt.load(Ordering::Relaxed) != 0 {
                return Err("a shrinker freed a block whose contents were wrong".into());
            }
        }
        while let Some(b) = self.live.pop() {
            self.check(&b, usize::MAX, "final free")?;
            if let Some(p) = NonNull::new(b.addr as *mut u8) {
                // SAFETY: a live block of this heap, freed once.
                unsafe { self.heap.dealloc(p, b.layout) };
            }
        }
        self.heap.flush_caches();
        self.heap
            .verify()
            .map_err(|e| std::format!("after freeing everything: {e}"))?;
        let free = crate::model::free_pages(self.heap);
        if free != self.start_free {
            return Err(std::format!(
                "free pages {free} after freeing everything, {} at the start",
                self.start_free
            ));
        }
        Ok(self.stats)
    }
}

/// Runs `ops` on a fresh heap of `budget` bytes through a [`Runner`].
pub fn run(ops: &[Op], budget: usize) -> Result<RunStats, String> {
    let heap = Heap::new(crate::Config::new().budget(budget)).map_err(|e| std::format!("{e}"))?;
    let mut r = Runner::new(&heap);
    for (i, op) in ops.iter().enumerate() {
        r.apply(op)
            .map_err(|e| std::format!("op {i} ({op:?}): {e}"))?;
    }
    r.finish()
}

/// `n` operations from `seed` on a fresh heap of `budget` bytes.
pub fn run_seed(seed: u64, n: usize, budget: usize) -> Result<RunStats, String> {
    let ops = Gen::new(Rng::new(seed)).ops(n);
    run(&ops, budget).map_err(|e| std::format!("seed {seed:#x}: {e}"))
}

/// The operations decoded from fuzz bytes (the first byte picks the
/// budget: 1..=32 MiB), on a fresh heap.
pub fn run_bytes(data: &[u8]) -> Result<RunStats, String> {
    let Some((&b, rest)) = data.split_first() else {
        return Ok(RunStats::default());
    };
    let budget = (1 + (b as usize % 32)) << 20;
    let ops = Gen::new(Bytes::new(rest)).ops(4096);
    run(&ops, budget)
}
