//! A write-back cache under a 256 MiB budget: the main demonstration of
//! lifeboat.
//!
//! ```sh
//! cargo run --release --example writeback                   # the flusher has the reserve
//! cargo run --release --example writeback -- --no-reserve   # the same flusher without it
//! cargo run --release --example writeback -- --seconds 20   # write for 20 s instead of 12
//! ```
//!
//! # What happens
//!
//! Three writer threads put dirty entries (a short key and a 4–60 KiB
//! value) into a sharded cache, faster than a flusher thread can write them
//! to a temporary file (the "disk" is paced at 64 MiB/s, the writers at
//! 3 × 40 MiB/s). Within a few seconds the 256 MiB budget is spent, and from
//! then on the only way to get memory back runs through the flusher: a dirty
//! entry cannot be dropped, a clean one can. The cache registers a
//! [`lifeboat::Shrinker`] that drops clean entries whenever lifeboat
//! reclaims (the writers' direct reclaim, the background reclaimer started
//! with [`lifeboat::start_reclaimer`]).
//!
//! But the flusher allocates to do its work, like every real one: each
//! record is serialised (header, key, value, checksum) into a buffer sized
//! to the record, the way a serialiser or a compression library hands back
//! its output, and then packed into 64 KiB I/O buffers that come from a
//! [`lifeboat::Mempool`] (8 preallocated elements: the kernel's bio
//! mempools). When memory is gone, the code that frees memory needs memory.
//!
//! * **Default**: the flusher runs inside [`lifeboat::memalloc_scope`], the
//!   kernel's `PF_MEMALLOC`. Ordinary threads are refused at the `min`
//!   watermark; the flusher may go below it, into the reserve. It keeps
//!   writing, entries turn clean, the shrinker drops them, the writers get
//!   memory again. When the writers stop, the flusher drains every dirty
//!   entry.
//! * **`--no-reserve`**: the same flusher, with the same Mempool, inside
//!   [`lifeboat::nomemalloc_scope`]. It competes with the writers for the
//!   last pages above `min` and soon loses: its record buffer is refused,
//!   nothing turns clean, the shrinker has nothing to drop, the writers are
//!   refused too, and nothing reaches the file any more. When the writers
//!   stop (their threads stay alive, idle, as a service's workers would
//!   during a shutdown flush) the free pages are still below what the
//!   flusher needs. The drain gives up after 4 s without progress, so the
//!   run still ends on its own, and the summary says how much dirty data
//!   never reached the file.
//!
//! The live view (a few frames a second on a terminal, one plain line a
//! second otherwise) shows free pages against the `min`/`low`/`high` marks
//! (red: the reserve), the reserve pages in use and the allocations it has
//! served, refusals per tier, reclaim and capture counts,
//! the cache's dirty and clean bytes, the flusher's progress and the
//! Mempool's hits. The summary ends with [`lifeboat::stats()`].
//!
//! # Allocation discipline
//!
//! lifeboat's global allocator returns null when it refuses, and Rust
//! aborts on a null from an infallible allocation (`Vec::push`, `format!`,
//! `Box::new`). So everything that can allocate while memory is short is
//! fallible here (`Vec::try_reserve_exact`, `HashMap::try_reserve`,
//! `VecDeque::try_reserve`) and a refusal is counted and backed off from;
//! the queues are sized when an entry is inserted so that moving keys
//! between them never allocates; and the view is rendered into a buffer
//! preallocated at start that refuses to grow, written to a stdout locked at
//! start. The only infallible allocations (the cache's tables, the pool,
//! the threads, the file name, the output buffers) happen before the
//! writers start. Neither mode aborts.
//!
//! lifeboat itself prints rate-limited warnings and out-of-memory reports on
//! stderr while the writers are refused: they are part of the show. The
//! log file (in `std::env::temp_dir()`, wrapping at 64 MiB) is removed at the
//! end, also after Ctrl-C.

use lifeboat::{Config, Lifeboat, Mempool, ShrinkControl, ShrinkResult, Shrinker};
use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

/// The process budget.
const BUDGET: usize = 256 << 20;

#[global_allocator]
static GLOBAL: Lifeboat = Lifeboat::with_config(Config::new().budget(BUDGET));

const MIB: u64 = 1 << 20;
const WRITERS: usize = 3;
/// Each writer updates keys of its own key space (768 MiB of values in all,
/// three times the budget), so some puts overwrite cached entries.
const KEYS_PER_WRITER: u64 = 8192;
const MIN_VALUE: usize = 4 << 10;
const MAX_VALUE: usize = 60 << 10;
/// Bytes per second each writer puts into the cache.
const WRITER_RATE: u64 = 40 * MIB;
/// Bytes per second the simulated disk accepts.
const DISK_RATE: u64 = 64 * MIB;
/// A writer that was refused waits this long before its next put.
const REFUSED_BACKOFF: Duration = Duration::from_millis(2);

const SHARDS: usize = 8;
/// Entries per shard the tables and queues are sized for at start (about
/// twice what fits in the budget); beyond that they grow fallibly.
const SHARD_CAPACITY: usize = 2048;

/// Key text: `w<writer>/k<index>`, at most this long.
const KEY_MAX: usize = 16;
/// Record header: magic, key length, value length, version, checksum.
const HEADER: usize = 32;
/// The largest record.
const MAX_RECORD: usize = 64 << 10;
const MIN_RECORD: usize = HEADER + MIN_VALUE;
const _: () = assert!(HEADER + KEY_MAX + MAX_VALUE <= MAX_RECORD);

/// I/O buffers: Mempool elements of 64 KiB, eight preallocated.
const IO_BUF: usize = 64 << 10;
const POOL_MIN_NR: usize = 8;
const _: () = assert!(MAX_RECORD <= IO_BUF);
/// The flusher never holds more than one element, so with eight in the pool
/// it never waits; this bounds the wait if it ever did.
const POOL_WAIT: Duration = Duration::from_millis(500);
/// Records staged in one I/O buffer (64 KiB holds at most 15).
const MAX_PENDING: usize = 32;
/// The log file wraps at this size: the demo never reads data back, and a
/// bounded file keeps its disk footprint small.
const RING: u64 = 64 << 20;
/// How long the flusher waits after a refused allocation.
const STALL_BACKOFF: Duration = Duration::from_millis(5);
/// How long the flusher sleeps when nothing is dirty.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// The drain gives up after this long without a record written...
const DRAIN_NO_PROGRESS: Duration = Duration::from_secs(4);
/// ...or after this long in all.
const DRAIN_LIMIT: Duration = Duration::from_secs(12);

const DEFAULT_SECONDS: u64 = 12;
const MAX_SECONDS: u64 = 3600;

// ---------------------------------------------------------------- the cache

struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    /// Bumped by every put; the flusher marks an entry clean only if no put
    /// came after the version it wrote.
    version: u64,
    dirty: bool,
    /// In the shard's dirty queue.
    queued: bool,
    /// In the shard's clean list.
    listed: bool,
}

/// One shard. Every key in `dirty` or `clean` is in `map` (the shrinker pops
/// a key before it removes the entry, writers never remove), and each key is
/// at most once in each queue. So a queue never holds more than `map.len()`
/// keys, and keeping both queues' capacity at least `map.len()` (done when
/// an entry is inserted) means moving a key onto a queue never allocates.
struct Shard {
    map: HashMap<u64, Entry>,
    dirty: VecDeque<u64>,
    clean: VecDeque<u64>,
}

impl Shard {
    fn with_capacity(n: usize) -> Self {
        Self {
            map: HashMap::with_capacity(n),
            dirty: VecDeque::with_capacity(n),
            clean: VecDeque::with_capacity(n),
        }
    }

    /// Room for one more entry and its queue places, allocated fallibly.
    fn make_room(&mut self) -> Result<(), Refused> {
        let need = self.map.len() + 1;
        self.map.try_reserve(1).map_err(|_| Refused)?;
        for q in [&mut self.dirty, &mut self.clean] {
            if q.capacity() < need {
                q.try_reserve(need - q.len()).map_err(|_| Refused)?;
            }
        }
        Ok(())
    }
}

/// An allocation was refused.
#[derive(Debug)]
struct Refused;

/// Event counters, shared by every thread (relaxed atomics).
#[derive(Default)]
struct Counters {
    dirty_entries: AtomicU64,
    dirty_bytes: AtomicU64,
    clean_entries: AtomicU64,
    clean_bytes: AtomicU64,
    // writers
    puts: AtomicU64,
    put_bytes: AtomicU64,
    overwrites: AtomicU64,
    writer_refusals: AtomicU64,
    // flusher
    records: AtomicU64,
    record_value_bytes: AtomicU64,
    file_bytes: AtomicU64,
    io_writes: AtomicU64,
    io_errors: AtomicU64,
    last_errno: AtomicU64,
    stalls: AtomicU64,
    stall_episodes: AtomicU64,
    stall_ms_total: AtomicU64,
    stall_ms_max: AtomicU64,
    stalled_now: AtomicBool,
    /// The flusher has returned.
    flusher_done: AtomicBool,
    /// Milliseconds from the start to the last record written.
    last_record_ms: AtomicU64,
    pool_hits: AtomicU64,
    pool_direct: AtomicU64,
    pool_waits: AtomicU64,
    pool_timeouts: AtomicU64,
    // shrinker
    shrink_calls: AtomicU64,
    shrink_no_alloc: AtomicU64,
    shrink_stops: AtomicU64,
    shrink_freed: AtomicU64,
    shrink_freed_bytes: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Relaxed);
}

fn sub(a: &AtomicU64, n: u64) {
    a.fetch_sub(n, Relaxed);
}

struct Cache {
    shards: [Mutex<Shard>; SHARDS],
    /// Where the next shrinker call starts, so contention on one shard does
    /// not always hit the same entries.
    shrink_cursor: AtomicUsize,
    c: Counters,
}

/// Locks a shard; a poisoned lock (a panic elsewhere) is used as it is.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_of(key: u64) -> usize {
    (key % SHARDS as u64) as usize
}

impl Cache {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::with_capacity(SHARD_CAPACITY))),
            shrink_cursor: AtomicUsize::new(0),
            c: Counters::default(),
        }
    }

    /// Puts a dirty value under `key`. Every allocation is fallible, and
    /// none is made while a shard lock is held except the table's own
    /// (rare) growth.
    fn put(&self, key: u64, writer: usize, size: usize, fill: u8) -> Result<(), Refused> {
        let mut value = Vec::new();
        value.try_reserve_exact(size).map_err(|_| Refused)?;
        value.resize(size, fill); // within the capacity: no allocation
        let mut text = [0u8; KEY_MAX];
        let n = key_text(&mut text, writer, key % KEYS_PER_WRITER);
        let mut key_buf = Vec::new();
        key_buf.try_reserve_exact(n).map_err(|_| Refused)?;
        key_buf.extend_from_slice(&text[..n]);

        let c = &self.c;
        let mut g = lock(&self.shards[shard_of(key)]);
        let shard = &mut *g;
        let old = if let Some(e) = shard.map.get_mut(&key) {
            e.version += 1;
            let old = std::mem::replace(&mut e.value, value);
            if e.dirty {
                sub(&c.dirty_bytes, old.len() as u64);
            } else {
                e.dirty = true;
                sub(&c.clean_entries, 1);
                sub(&c.clean_bytes, old.len() as u64);
                add(&c.dirty_entries, 1);
            }
            add(&c.dirty_bytes, size as u64);
            if !e.queued {
                e.queued = true;
                shard.dirty.push_back(key); // capacity >= map.len(): no allocation
            }
            add(&c.overwrites, 1);
            Some(old)
        } else {
            shard.make_room()?;
            shard.map.insert(
                key,
                Entry {
                    key: key_buf,
                    value,
                    version: 0,
                    dirty: true,
                    queued: true,
                    listed: false,
                },
            );
            shard.dirty.push_back(key);
            add(&c.dirty_entries, 1);
            add(&c.dirty_bytes, size as u64);
            None
        };
        drop(g);
        drop(old); // the overwritten value is freed outside the lock
        add(&c.puts, 1);
        add(&c.put_bytes, size as u64);
        Ok(())
    }

    /// Marks a written entry clean, unless a put came after the version
    /// that was written (then it stays dirty and queued).
    fn mark_clean(&self, p: &Pending) {
        let c = &self.c;
        let mut g = lock(&self.shards[p.shard]);
        let shard = &mut *g;
        if let Some(e) = shard.map.get_mut(&p.key) {
            if e.dirty && e.version == p.version {
                e.dirty = false;
                let len = e.value.len() as u64;
                sub(&c.dirty_entries, 1);
                sub(&c.dirty_bytes, len);
                add(&c.clean_entries, 1);
                add(&c.clean_bytes, len);
                if !e.listed {
                    e.listed = true;
                    shard.clean.push_back(p.key); // no allocation (see Shard)
                }
            }
        }
    }

    /// Puts a dirty entry back on its queue after a failed write.
    fn requeue(&self, shard: usize, key: u64) {
        let mut g = lock(&self.shards[shard]);
        let shard = &mut *g;
        if let Some(e) = shard.map.get_mut(&key) {
            if e.dirty && !e.queued {
                e.queued = true;
                shard.dirty.push_back(key); // no allocation (see Shard)
            }
        }
    }

    /// Drops every entry (at the end of the run).
    fn clear(&self) {
        for m in &self.shards {
            let mut g = lock(m);
            let map = std::mem::take(&mut g.map);
            let dirty = std::mem::take(&mut g.dirty);
            let clean = std::mem::take(&mut g.clean);
            drop(g);
            drop((map, dirty, clean));
        }
    }
}

/// Drops clean entries when lifeboat reclaims. `scan` runs inside an
/// allocation's slow path on whatever thread is allocating (a writer, the
/// flusher, the background reclaimer), possibly one that holds a shard
/// lock, so it only *tries* each lock and skips contended shards; if every
/// shard it needed was contended it answers `Stop`. It never allocates
/// (popping a queue and removing from a table only free memory), so it
/// does the same work whether or not `may_allocate` is set; calls without
/// it (lifeboat's allocation-free "recursive" rounds) are counted.
impl Shrinker for Cache {
    fn count(&self) -> usize {
        get(&self.c.clean_entries) as usize
    }

    fn scan(&self, sc: &ShrinkControl) -> ShrinkResult {
        let c = &self.c;
        add(&c.shrink_calls, 1);
        if !sc.may_allocate {
            add(&c.shrink_no_alloc, 1);
        }
        let start = self.shrink_cursor.fetch_add(1, Relaxed);
        let mut scanned = 0;
        let mut freed = 0;
        let mut contended = 0;
        for j in 0..SHARDS {
            if scanned >= sc.nr_to_scan {
                break;
            }
            let m = &self.shards[(start + j) % SHARDS];
            let mut g = match m.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    contended += 1;
                    continue;
                }
            };
            let shard = &mut *g;
            while scanned < sc.nr_to_scan {
                let Some(key) = shard.clean.pop_front() else {
                    break;
                };
                scanned += 1;
                let droppable = match shard.map.get_mut(&key) {
                    Some(e) => {
                        e.listed = false;
                        !e.dirty // written again since: it stays
                    }
                    None => false,
                };
                if droppable {
                    if let Some(e) = shard.map.remove(&key) {
                        sub(&c.clean_entries, 1);
                        sub(&c.clean_bytes, e.value.len() as u64);
                        add(&c.shrink_freed_bytes, (e.value.len() + e.key.len()) as u64);
                        freed += 1;
                        drop(e); // frees the key and the value
                    }
                }
            }
        }
        add(&c.shrink_freed, freed as u64);
        if freed == 0 && contended > 0 {
            add(&c.shrink_stops, 1);
            ShrinkResult::Stop
        } else {
            ShrinkResult::Freed(freed)
        }
    }
}

/// Writes `w<writer>/k<index>` into `out`; returns its length.
fn key_text(out: &mut [u8; KEY_MAX], writer: usize, index: u64) -> usize {
    let mut cur = std::io::Cursor::new(&mut out[..]);
    // A cursor over a fixed slice never allocates; the text always fits.
    let _ = write!(cur, "w{writer}/k{index:05}");
    cur.position() as usize
}

// ---------------------------------------------------------------- writers

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

/// Time to move `bytes` at `rate` bytes per second.
fn transfer_time(bytes: u64, rate: u64) -> Duration {
    Duration::from_nanos(bytes.saturating_mul(1_000_000_000) / rate)
}

/// Puts entries until `ctl.stop_writers`, then stays idle until `ctl.exit`:
/// like a service's worker threads, which stop taking writes at shutdown
/// but do not go away before the data is safe.
fn writer(cache: &Cache, id: usize, ctl: &Control) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) << 32));
    let mut pace = Instant::now();
    while !ctl.stop_writers.load(Relaxed) {
        let size = MIN_VALUE + rng.below((MAX_VALUE - MIN_VALUE + 1) as u64) as usize;
        let key = id as u64 * KEYS_PER_WRITER + rng.below(KEYS_PER_WRITER);
        let now = Instant::now();
        if pace > now {
            thread::sleep(pace - now);
        }
        pace = pace.max(now) + transfer_time(size as u64, WRITER_RATE);
        if cache.put(key, id, size, rng.next() as u8).is_err() {
            add(&cache.c.writer_refusals, 1);
            thread::sleep(REFUSED_BACKOFF);
        }
    }
    while !ctl.exit.load(Relaxed) {
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- flusher

/// A record staged in the current I/O buffer, not yet written.
#[derive(Clone, Copy)]
struct Pending {
    shard: usize,
    key: u64,
    version: u64,
    value_len: usize,
}

/// A Mempool element being filled.
struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
}

/// What the main thread tells the writers and the flusher.
#[derive(Default)]
struct Control {
    /// Writers: stop putting entries.
    stop_writers: AtomicBool,
    /// Flusher: the writers have stopped; finish when nothing is dirty.
    drain: AtomicBool,
    /// Flusher: give up now.
    quit: AtomicBool,
    /// Writers: the run is over, exit.
    exit: AtomicBool,
}

struct Flusher<'a> {
    cache: &'a Cache,
    pool: &'a Mempool<'static>,
    file: &'a File,
    ctl: &'a Control,
    io: Option<IoBuf>,
    pending: Vec<Pending>,
    cursor: usize,
    ring_pos: u64,
    pace: Instant,
    stall_since: Option<Instant>,
    /// The start of the run (for `last_record_ms`).
    start: Instant,
}

/// A cheap 64-bit checksum (FNV-1a over 8-byte words).
fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Serialises an entry into `rec` (which has room for it).
fn encode(rec: &mut Vec<u8>, e: &Entry) {
    rec.clear();
    rec.extend_from_slice(b"LBWB");
    rec.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
    rec.extend_from_slice(&0u16.to_le_bytes());
    rec.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(&e.version.to_le_bytes());
    rec.extend_from_slice(&checksum(&e.value).to_le_bytes());
    rec.extend_from_slice(&e.key);
    rec.extend_from_slice(&e.value);
}

/// A dirty entry taken off its queue, not serialised yet.
#[derive(Clone, Copy)]
struct Claim {
    shard: usize,
    key: u64,
    version: u64,
    record_len: usize,
}

fn record_len(e: &Entry) -> usize {
    HEADER + e.key.len() + e.value.len()
}

impl Flusher<'_> {
    fn run(mut self) {
        while !self.ctl.quit.load(Relaxed) {
            let Some(claim) = self.claim_dirty() else {
                self.submit();
                if self.ctl.drain.load(Relaxed) && get(&self.cache.c.dirty_entries) == 0 {
                    break;
                }
                thread::sleep(IDLE_WAIT);
                continue;
            };
            // The record buffer, sized to the record as a serialiser sizes
            // its output: an ordinary allocation, which only the memalloc
            // right can satisfy once the budget is spent.
            let mut rec: Vec<u8> = Vec::new();
            if rec.try_reserve_exact(claim.record_len).is_err() {
                self.cache.requeue(claim.shard, claim.key);
                self.stalled();
                // Writing what is staged needs no memory, and makes entries
                // clean for the shrinker.
                self.submit();
                thread::sleep(STALL_BACKOFF);
                continue;
            }
            let Some(p) = self.encode_claimed(&claim, &mut rec) else {
                continue; // written again meanwhile: it is queued again
            };
            self.unstalled();
            let full = self
                .io
                .as_ref()
                .is_some_and(|io| io.len + rec.len() > IO_BUF);
            if full || self.pending.len() == MAX_PENDING {
                self.submit();
            }
            if self.io.is_none() {
                match self.pool.alloc_timeout(POOL_WAIT) {
                    Ok(ptr) => self.io = Some(IoBuf { ptr, len: 0 }),
                    Err(_) => {
                        self.cache.requeue(p.shard, p.key);
                        self.stalled();
                        thread::sleep(STALL_BACKOFF);
                        continue;
                    }
                }
            }
            if let Some(io) = &mut self.io {
                // SAFETY: `io.ptr` is a Mempool element of IO_BUF bytes that
                // only this thread uses; `io.len + rec.len() <= IO_BUF` (a
                // fuller buffer was submitted above, and a record is at most
                // MAX_RECORD <= IO_BUF bytes); `rec` is a separate allocation.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        rec.as_ptr(),
                        io.ptr.as_ptr().add(io.len),
                        rec.len(),
                    )
                };
                io.len += rec.len();
            }
            self.pending.push(p); // len < MAX_PENDING = capacity: no allocation
            drop(rec);
            if self
                .io
                .as_ref()
                .is_some_and(|io| io.len + MIN_RECORD > IO_BUF)
            {
                self.submit();
            }
        }
        self.submit();
        self.unstalled();
    }

    /// Takes the next dirty entry off its queue (shards in turn).
    fn claim_dirty(&mut self) -> Option<Claim> {
        for _ in 0..SHARDS {
            let i = self.cursor;
            self.cursor = (i + 1) % SHARDS;
            let mut g = lock(&self.cache.shards[i]);
            let shard = &mut *g;
            while let Some(key) = shard.dirty.pop_front() {
                let Some(e) = shard.map.get_mut(&key) else {
                    continue;
                };
                e.queued = false;
                if !e.dirty {
                    continue;
                }
                return Some(Claim {
                    shard: i,
                    key,
                    version: e.version,
                    record_len: record_len(e),
                });
            }
        }
        None
    }

    /// Serialises a claimed entry into `rec`, unless a put replaced its
    /// value since the claim (that put queued it again).
    fn encode_claimed(&mut self, claim: &Claim, rec: &mut Vec<u8>) -> Option<Pending> {
        let g = lock(&self.cache.shards[claim.shard]);
        let e = g.map.get(&claim.key)?;
        if e.version != claim.version || !e.dirty || record_len(e) > rec.capacity() {
            return None;
        }
        encode(rec, e);
        Some(Pending {
            shard: claim.shard,
            key: claim.key,
            version: e.version,
            value_len: e.value.len(),
        })
    }

    /// Writes the staged buffer (at the disk's pace), marks its records
    /// clean and gives the buffer back to the pool.
    fn submit(&mut self) {
        let Some(io) = self.io.take() else {
            return;
        };
        if io.len > 0 {
            // SAFETY: the first `io.len` bytes of the element were written
            // by the copies in `run`; the element stays ours until the free
            // below.
            let bytes = unsafe { std::slice::from_raw_parts(io.ptr.as_ptr(), io.len) };
            if self.ring_pos + io.len as u64 > RING {
                self.ring_pos = 0;
            }
            let c = &self.cache.c;
            match self.file.write_all_at(bytes, self.ring_pos) {
                Ok(()) => {
                    self.ring_pos += io.len as u64;
                    add(&c.file_bytes, io.len as u64);
                    add(&c.io_writes, 1);
                    // The write "completes" when the disk would have taken it.
                    let now = Instant::now();
                    self.pace = self.pace.max(now) + transfer_time(io.len as u64, DISK_RATE);
                    if self.pace > now && !self.ctl.quit.load(Relaxed) {
                        thread::sleep(self.pace - now);
                    }
                    for p in &self.pending {
                        self.cache.mark_clean(p);
                        add(&c.records, 1);
                        add(&c.record_value_bytes, p.value_len as u64);
                    }
                    if !self.pending.is_empty() {
                        let ms = self.start.elapsed().as_millis() as u64;
                        c.last_record_ms.store(ms, Relaxed);
                    }
                }
                Err(e) => {
                    add(&c.io_errors, 1);
                    c.last_errno
                        .store(e.raw_os_error().unwrap_or(0) as u64, Relaxed);
                    for p in &self.pending {
                        self.cache.requeue(p.shard, p.key);
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        self.pending.clear();
        // SAFETY: the element came from this pool's `alloc_timeout` and is
        // not used after this.
        unsafe { self.pool.free(io.ptr) };
        // Only this thread uses the pool, so its lock is never contended.
        let st = self.pool.stats();
        let c = &self.cache.c;
        c.pool_hits.store(st.hits as u64, Relaxed);
        c.pool_direct.store(st.direct as u64, Relaxed);
        c.pool_waits.store(st.waits as u64, Relaxed);
        c.pool_timeouts.store(st.timeouts as u64, Relaxed);
    }

    fn stalled(&mut self) {
        let c = &self.cache.c;
        add(&c.stalls, 1);
        if self.stall_since.is_none() {
            self.stall_since = Some(Instant::now());
            add(&c.stall_episodes, 1);
            c.stalled_now.store(true, Relaxed);
        }
    }

    fn unstalled(&mut self) {
        if let Some(t) = self.stall_since.take() {
            let ms = t.elapsed().as_millis() as u64;
            let c = &self.cache.c;
            add(&c.stall_ms_total, ms);
            c.stall_ms_max.fetch_max(ms, Relaxed);
            c.stalled_now.store(false, Relaxed);
        }
    }
}

fn flusher(
    cache: &Cache,
    pool: &Mempool<'static>,
    file: &File,
    ctl: &Control,
    reserve: bool,
    start: Instant,
) {
    // The whole difference between the two modes.
    let _rights = if reserve {
        lifeboat::memalloc_scope()
    } else {
        lifeboat::nomemalloc_scope()
    };
    let mut pending = Vec::new();
    if pending.try_reserve_exact(MAX_PENDING).is_ok() {
        Flusher {
            cache,
            pool,
            file,
            ctl,
            io: None,
            pending,
            cursor: 0,
            ring_pos: 0,
            pace: Instant::now(),
            stall_since: None,
            start,
        }
        .run();
    } else {
        add(&cache.c.stalls, 1);
    }
    cache.c.flusher_done.store(true, Relaxed);
}

// ---------------------------------------------------------------- output

/// A text buffer allocated once that never grows: writes that do not fit
/// are refused (the view is truncated, nothing is allocated).
struct Fixed(Vec<u8>);

impl Fixed {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl fmt::Write for Fixed {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.capacity() - self.0.len() < s.len() {
            return Err(fmt::Error);
        }
        self.0.extend_from_slice(s.as_bytes()); // within the capacity
        Ok(())
    }
}

/// Bytes as MiB with one decimal.
struct Mib(u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MiB", self.0 as f64 / MIB as f64)
    }
}

/// The mempool's counters, for the live panel and the summary.
struct PoolLine<'a>(&'a Counters);

impl fmt::Display for PoolLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "hits {}, direct {}, waits {}, timeouts {}",
            get(&c.pool_hits),
            get(&c.pool_direct),
            get(&c.pool_waits),
            get(&c.pool_timeouts)
        )
    }
}

/// The shrinker's counters, for the live panel and the summary.
struct ShrinkerLine<'a>(&'a Counters);

impl fmt::Display for ShrinkerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "{} calls ({} no-alloc), dropped {} clean entries ({}), {} Stop",
            get(&c.shrink_calls),
            get(&c.shrink_no_alloc),
            get(&c.shrink_freed),
            Mib(get(&c.shrink_freed_bytes)),
            get(&c.shrink_stops)
        )
    }
}

/// Colours (terminal only).
struct Style {
    red: &'static str,
    yellow: &'static str,
    green: &'static str,
    dim: &'static str,
    bold: &'static str,
    reset: &'static str,
}

const COLOUR: Style = Style {
    red: "\x1b[31m",
    yellow: "\x1b[33m",
    green: "\x1b[32m",
    dim: "\x1b[2m",
    bold: "\x1b[1m",
    reset: "\x1b[0m",
};

const PLAIN: Style = Style {
    red: "",
    yellow: "",
    green: "",
    dim: "",
    bold: "",
    reset: "",
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Writing,
    Draining,
}

struct View {
    tty: bool,
    out: std::io::StdoutLock<'static>,
    buf: Fixed,
    reserve: bool,
    seconds: u64,
    /// When the last plain line was printed.
    last_line: Option<Instant>,
    /// The most reserve pages in use seen by any frame.
    reserve_peak: usize,
}

/// Cells of the bars (the frame fits 80 columns).
const BAR: usize = 40;

impl View {
    fn style(&self) -> &'static Style {
        if self.tty {
            &COLOUR
        } else {
            &PLAIN
        }
    }

    fn flush(&mut self) {
        // Output errors (a closed pipe) only cost the view.
        let _ = self.out.write_all(&self.buf.0);
        let _ = self.out.flush();
        self.buf.clear();
    }

    /// One frame (terminal) or, at most once a second, one line.
    fn update(&mut self, cache: &Cache, phase: Phase, t: Duration, drain_t: Duration) {
        let st = lifeboat::stats();
        self.reserve_peak = self.reserve_peak.max(st.reserve_pages);
        if self.tty {
            self.buf.clear();
            let _ = self.frame(&st, cache, phase, t, drain_t);
            self.flush();
        } else {
            let due = self
                .last_line
                .is_none_or(|l| l.elapsed() >= Duration::from_secs(1));
            if due {
                self.last_line = Some(Instant::now());
                self.buf.clear();
                let _ = self.line(&st, cache, phase, t + drain_t);
                self.flush();
            }
        }
    }

    fn mode(&self) -> &'static str {
        if self.reserve {
            "reserve mode: flusher in a memalloc scope"
        } else {
            "--no-reserve: flusher in a nomemalloc scope"
        }
    }

    fn line(
        &mut self,
        st: &lifeboat::Stats,
        cache: &Cache,
        phase: Phase,
        t: Duration,
    ) -> fmt::Result {
        let c = &cache.c;
        let r = &st.reclaim;
        writeln!(
            self.buf,
            "[{:5.1}s {}] free {} pages (min {} low {} high {}) reserve {} pages, {} allocs \
             | refused normal {} memalloc {} | reclaim direct {} background {} shrinker {} recursive {} | capture {} | dirty {} clean {} \
             | flushed {} stalls {} | mempool hits {}",
            t.as_secs_f64(),
            if phase == Phase::Writing { "write" } else { "drain" },
            st.free_pages,
            st.min_pages,
            st.low_pages,
            st.high_pages,
            st.reserve_pages,
            st.reserve_allocs,
            st.refusals.normal,
            st.refusals.memalloc,
            r.direct_runs,
            r.background_runs,
            r.shrinker_calls,
            r.recursive_rounds,
            r.capture_hits,
            Mib(get(&c.dirty_bytes)),
            Mib(get(&c.clean_bytes)),
            Mib(get(&c.record_value_bytes)),
            get(&c.stalls),
            get(&c.pool_hits),
        )
    }

    fn frame(
        &mut self,
        st: &lifeboat::Stats,
        cache: &Cache,
        phase: Phase,
        t: Duration,
        drain_t: Duration,
    ) -> fmt::Result {
        let s = self.style();
        let mode = self.mode();
        let peak = self.reserve_peak;
        let c = &cache.c;
        let b = &mut self.buf;
        let (free, min, low, high) = (st.free_pages, st.min_pages, st.low_pages, st.high_pages);
        write!(b, "\x1b[H")?;
        writeln!(
            b,
            " {}lifeboat writeback demo{} — {}\x1b[K",
            s.bold, s.reset, mode
        )?;
        match phase {
            Phase::Writing => writeln!(
                b,
                " writing for {:4.1} s of {} s   (Ctrl-C stops early)\x1b[K",
                t.as_secs_f64(),
                self.seconds
            )?,
            Phase::Draining => writeln!(
                b,
                " writers stopped after {:.1} s; draining for {:4.1} s: {} dirty left\x1b[K",
                t.as_secs_f64(),
                drain_t.as_secs_f64(),
                Mib(get(&c.dirty_bytes))
            )?,
        }
        writeln!(b, "\x1b[K")?;
        writeln!(
            b,
            " budget    {} pages ({} MiB); watermarks min {} low {} high {} pages\x1b[K",
            st.budget_pages,
            (st.budget_pages * 4096) >> 20,
            min,
            low,
            high
        )?;
        // Free pages over the whole budget.
        let cells = (free * BAR)
            .checked_div(st.budget_pages)
            .unwrap_or(0)
            .min(BAR);
        write!(b, " free      [{}", s.green)?;
        for i in 0..BAR {
            b.write_str(if i < cells { "█" } else { "░" })?;
        }
        writeln!(
            b,
            "{}] {} pages ({})\x1b[K",
            s.reset,
            free,
            Mib(free as u64 * 4096)
        )?;
        // Free pages near the marks: 0 ..= 2 * high, coloured by region.
        let zmax = (2 * high).max(1);
        let col = |pages: usize| (pages * BAR / zmax).min(BAR - 1);
        write!(b, " near min  [")?;
        for i in 0..BAR {
            let lo = i * zmax / BAR;
            let colour = if lo < min {
                s.red
            } else if lo < low {
                s.yellow
            } else {
                s.green
            };
            if lo < free {
                write!(b, "{colour}█")?;
            } else {
                write!(b, "{}·", s.dim)?;
            }
        }
        writeln!(
            b,
            "{}] 0..{} pages{}\x1b[K",
            s.reset,
            zmax,
            if free < min { "  IN RESERVE" } else { "" }
        )?;
        let mut marks = [b' '; BAR + 8];
        let mut next = 0;
        for (pages, label) in [(min, &b"^min"[..]), (low, b"^low"), (high, b"^high")] {
            let at = col(pages).max(next);
            for (k, &ch) in label.iter().enumerate() {
                if let Some(m) = marks.get_mut(at + k) {
                    *m = ch;
                }
            }
            next = at + label.len() + 1;
        }
        let marks = std::str::from_utf8(&marks).unwrap_or("");
        writeln!(b, "            {}\x1b[K", marks.trim_end())?;
        writeln!(
            b,
            " reserve   {} pages in use (peak seen {}); {} allocations served from it\x1b[K",
            st.reserve_pages, peak, st.reserve_allocs
        )?;
        let rf = &st.refusals;
        writeln!(
            b,
            " refused   normal {}{}{}  high {}  oom-victim {}  atomic {}  memalloc {}\x1b[K",
            if rf.normal > 0 { s.yellow } else { "" },
            rf.normal,
            s.reset,
            rf.high,
            rf.oom_victim,
            rf.atomic,
            rf.memalloc
        )?;
        let r = &st.reclaim;
        writeln!(
            b,
            " reclaim   direct {}  background {}  recursive {}  reclaimed {} pages\x1b[K",
            r.direct_runs, r.background_runs, r.recursive_rounds, r.reclaimed_pages
        )?;
        writeln!(
            b,
            " capture   hits {}  misses {}  ({} pages handed over)\x1b[K",
            r.capture_hits, r.capture_misses, r.captured_pages
        )?;
        writeln!(b, "\x1b[K")?;
        writeln!(
            b,
            " cache     dirty {} ({} entries)  clean {} ({} entries)\x1b[K",
            Mib(get(&c.dirty_bytes)),
            get(&c.dirty_entries),
            Mib(get(&c.clean_bytes)),
            get(&c.clean_entries)
        )?;
        writeln!(
            b,
            " writers   put {} ({} puts, {} overwrites)  refused {} times\x1b[K",
            Mib(get(&c.put_bytes)),
            get(&c.puts),
            get(&c.overwrites),
            get(&c.writer_refusals)
        )?;
        let (state_colour, state) = if c.flusher_done.load(Relaxed) {
            if get(&c.dirty_entries) == 0 {
                (s.green, "done")
            } else {
                (s.red, "GAVE UP")
            }
        } else if c.stalled_now.load(Relaxed) {
            (s.red, "STARVED")
        } else {
            (s.green, "working")
        };
        writeln!(
            b,
            " flusher   wrote {} ({} records)  {}{}{}  stalls {} (longest {:.1} s)\x1b[K",
            Mib(get(&c.record_value_bytes)),
            get(&c.records),
            state_colour,
            state,
            s.reset,
            get(&c.stalls),
            get(&c.stall_ms_max) as f64 / 1000.0
        )?;
        writeln!(
            b,
            " mempool   {}  ({} × {} KiB)\x1b[K",
            PoolLine(c),
            POOL_MIN_NR,
            IO_BUF >> 10
        )?;
        writeln!(b, " shrinker  {}\x1b[K", ShrinkerLine(c))?;
        write!(b, "\x1b[J")
    }
}

/// How the run ended.
struct Outcome {
    wrote_for: Duration,
    drained_for: Duration,
    drained: bool,
    interrupted: bool,
    reserve_peak: usize,
}

fn summary(
    b: &mut Fixed,
    reserve: bool,
    o: &Outcome,
    c: &Counters,
    st: &lifeboat::Stats,
) -> fmt::Result {
    let mode = if reserve {
        "reserve mode (flusher in a memalloc scope)"
    } else {
        "--no-reserve (flusher in a nomemalloc scope)"
    };
    let secs = |ms: u64| ms as f64 / 1000.0;
    writeln!(b)?;
    writeln!(b, "== summary: {mode} ==")?;
    writeln!(
        b,
        "run        writers ran {:.1} s{}; drain {:.1} s, {}",
        o.wrote_for.as_secs_f64(),
        if o.interrupted {
            " (stopped by Ctrl-C)"
        } else {
            ""
        },
        o.drained_for.as_secs_f64(),
        if o.drained {
            "complete"
        } else {
            "gave up (no progress)"
        }
    )?;
    writeln!(
        b,
        "writers    put {} in {} puts ({} overwrites); refused {} times",
        Mib(get(&c.put_bytes)),
        get(&c.puts),
        get(&c.overwrites),
        get(&c.writer_refusals)
    )?;
    writeln!(
        b,
        "flusher    flushed {} entries, {} of values ({} in {} writes to the file, {} I/O errors)",
        get(&c.records),
        Mib(get(&c.record_value_bytes)),
        Mib(get(&c.file_bytes)),
        get(&c.io_writes),
        get(&c.io_errors)
    )?;
    if get(&c.io_errors) > 0 {
        writeln!(b, "           last I/O error: errno {}", get(&c.last_errno))?;
    }
    writeln!(
        b,
        "           last record written at {:.1} s",
        secs(get(&c.last_record_ms))
    )?;
    if get(&c.stalls) == 0 {
        writeln!(
            b,
            "           never stalled: it always got the memory it needed"
        )?;
    } else {
        writeln!(
            b,
            "           STARVED: {} refused allocations in {} episodes, {:.1} s in all, longest {:.1} s",
            get(&c.stalls),
            get(&c.stall_episodes),
            secs(get(&c.stall_ms_total)),
            secs(get(&c.stall_ms_max))
        )?;
    }
    writeln!(
        b,
        "reserve    {} allocations served below `min` (peak seen {} pages in use)",
        st.reserve_allocs, o.reserve_peak
    )?;
    writeln!(b, "mempool    {}", PoolLine(c))?;
    writeln!(b, "shrinker   {} (Stop: contended)", ShrinkerLine(c))?;
    let dirty = get(&c.dirty_entries);
    if dirty == 0 {
        writeln!(
            b,
            "at the end no dirty data left: everything reached the file"
        )?;
    } else {
        writeln!(
            b,
            "at the end {} dirty entries ({}) NEVER reached the file",
            dirty,
            Mib(get(&c.dirty_bytes))
        )?;
    }
    writeln!(b)?;
    if get(&c.writer_refusals) == 0 && get(&c.stalls) == 0 && dirty == 0 {
        writeln!(
            b,
            "verdict: memory never ran short in this run (the budget lasts about 4 s);\n\
             run it longer to see the reserve at work."
        )?;
    } else if reserve && dirty == 0 {
        writeln!(
            b,
            "verdict: the writers were refused at `min` {} times, but the flusher, the only\n\
             thread with the memalloc right, was served {} times below it. Its records kept\n\
             reaching the file, entries turned clean, and the shrinker gave their memory back.\n\
             Run with --no-reserve to see the same flusher without the right.",
            get(&c.writer_refusals),
            st.reserve_allocs
        )?;
    } else if reserve {
        writeln!(
            b,
            "verdict: the flusher had the reserve but did not finish; see the stats below."
        )?;
    } else if dirty > 0 {
        writeln!(
            b,
            "verdict: without the reserve the flusher competed with the writers for the last\n\
             pages above `min` and lost. From {:.1} s on nothing reached the file: its record\n\
             buffers were refused {} times, no entry turned clean, the shrinker had nothing to\n\
             drop, the writers were refused too, and {} of dirty data stayed stuck in memory.\n\
             The default mode (memalloc) flushes all of it.",
            secs(get(&c.last_record_ms)),
            get(&c.stalls),
            Mib(get(&c.dirty_bytes))
        )?;
    } else {
        writeln!(
            b,
            "verdict: without the reserve the flusher was starved {} times ({:.1} s in all)\n\
             but got through in the end; the default mode (memalloc) is never starved.",
            get(&c.stalls),
            secs(get(&c.stall_ms_total))
        )?;
    }
    writeln!(b)?;
    writeln!(b, "lifeboat::stats() at the end of the run:")?;
    write!(b, "{st}")
}

// ---------------------------------------------------------------- main

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    if INTERRUPTED.swap(true, Relaxed) {
        // Second Ctrl-C: leave at once.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

struct Options {
    reserve: bool,
    seconds: u64,
}

const USAGE: &str = "\
usage: cargo run --release --example writeback -- [--no-reserve] [--seconds N]

A write-back cache under a 256 MiB lifeboat budget: three writers fill it
with dirty entries faster than a flusher can write them to a temporary file.

  --no-reserve   run the flusher in a nomemalloc scope instead of a memalloc
                 scope: it gets no reserve below the `min` watermark
  --seconds N    let the writers run N seconds (default 12), then drain
  -h, --help     this text

The run ends by itself: writers stop after N seconds, the flusher drains
(giving up after 4 s without progress or 12 s in all), and a summary with
lifeboat::stats() is printed. Ctrl-C stops the writers early; a second
Ctrl-C exits at once.";

fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        reserve: true,
        seconds: DEFAULT_SECONDS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--no-reserve" => o.reserve = false,
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a value")?;
                o.seconds = match v.parse::<u64>() {
                    Ok(n) if (1..=MAX_SECONDS).contains(&n) => n,
                    _ => return Err(format!("--seconds: expected 1..={MAX_SECONDS}, got {v:?}")),
                };
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(Some(o))
}

/// The temporary file, removed when dropped.
struct TempFile {
    path: std::path::PathBuf,
    file: File,
}

impl TempFile {
    fn create() -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "lifeboat-writeback-{}-{nanos}.log",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("writeback: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writeback: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that allocates infallibly happens here, before the writers
/// start: the cache's tables, the Mempool, the file, the output buffers.
fn run(opts: &Options) -> Result<(), String> {
    // SAFETY: installing a handler that only touches an atomic and calls
    // the async-signal-safe _exit.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    let tmp = TempFile::create().map_err(|e| format!("cannot create a temporary file: {e}"))?;
    let cache: &'static Cache = Box::leak(Box::new(Cache::new()));
    lifeboat::register_shrinker(cache).map_err(|e| e.to_string())?;
    lifeboat::start_reclaimer().map_err(|e| format!("cannot start the reclaimer: {e}"))?;
    let layout = Layout::from_size_align(IO_BUF, 4096).map_err(|e| e.to_string())?;
    let pool = Mempool::new(POOL_MIN_NR, layout).map_err(|e| format!("mempool: {e:?}"))?;
    let ctl = Control::default();

    let tty = std::io::stdout().is_terminal();
    let mut view = View {
        tty,
        out: std::io::stdout().lock(),
        buf: Fixed::with_capacity(64 << 10),
        reserve: opts.reserve,
        seconds: opts.seconds,
        last_line: None,
        reserve_peak: 0,
    };
    {
        let mode = view.mode();
        let b = &mut view.buf;
        let st = lifeboat::stats();
        if tty {
            let _ = write!(b, "\x1b[2J");
        }
        let _ = writeln!(
            b,
            "lifeboat writeback demo, {}\nbudget {} pages, min {} low {} high {}; writing to {}",
            mode,
            st.budget_pages,
            st.min_pages,
            st.low_pages,
            st.high_pages,
            tmp.path.display()
        );
        view.flush();
    }

    let outcome = thread::scope(|s| -> Result<Outcome, String> {
        let mut handles = Vec::with_capacity(WRITERS);
        let ctl_ref = &ctl;
        let spawn_err = |e: std::io::Error| {
            ctl_ref.stop_writers.store(true, Relaxed);
            ctl_ref.quit.store(true, Relaxed);
            ctl_ref.exit.store(true, Relaxed);
            format!("cannot spawn a thread: {e}")
        };
        for id in 0..WRITERS {
            let h = thread::Builder::new()
                .name(format!("writer-{id}"))
                .spawn_scoped(s, move || writer(cache, id, ctl_ref))
                .map_err(spawn_err)?;
            handles.push(h);
        }
        let (pool, file) = (&pool, &tmp.file);
        let reserve = opts.reserve;
        let t0 = Instant::now();
        let flush = thread::Builder::new()
            .name("flusher".into())
            .spawn_scoped(s, move || flusher(cache, pool, file, ctl_ref, reserve, t0))
            .map_err(spawn_err)?;

        let frame = Duration::from_millis(if tty { 200 } else { 100 });
        let run_for = Duration::from_secs(opts.seconds);
        while t0.elapsed() < run_for && !INTERRUPTED.load(Relaxed) {
            thread::sleep(frame);
            view.update(cache, Phase::Writing, t0.elapsed(), Duration::ZERO);
        }
        let wrote_for = t0.elapsed();
        ctl.stop_writers.store(true, Relaxed);
        ctl.drain.store(true, Relaxed);
        if !tty {
            view.buf.clear();
            let _ = writeln!(
                view.buf,
                "writers stopped after {:.1} s; draining {} of dirty data",
                wrote_for.as_secs_f64(),
                Mib(get(&cache.c.dirty_bytes))
            );
            view.flush();
        }

        let t1 = Instant::now();
        let mut progress = (get(&cache.c.records), t1);
        let mut drained = true;
        while !flush.is_finished() {
            thread::sleep(frame);
            view.update(cache, Phase::Draining, wrote_for, t1.elapsed());
            let n = get(&cache.c.records);
            if n != progress.0 {
                progress = (n, Instant::now());
            }
            if progress.1.elapsed() >= DRAIN_NO_PROGRESS || t1.elapsed() >= DRAIN_LIMIT {
                drained = false;
                ctl.quit.store(true, Relaxed);
                break;
            }
        }
        let _ = flush.join();
        let drained_for = t1.elapsed();
        ctl.exit.store(true, Relaxed);
        for h in handles.drain(..) {
            let _ = h.join();
        }
        if tty {
            view.update(cache, Phase::Draining, wrote_for, drained_for);
        }
        Ok(Outcome {
            wrote_for,
            drained_for,
            drained: drained && get(&cache.c.dirty_entries) == 0,
            interrupted: INTERRUPTED.load(Relaxed),
            reserve_peak: view.reserve_peak,
        })
    })?;

    // The summary is rendered before anything is freed, into the buffer
    // allocated at start: memory may still be full of dirty data.
    let st = lifeboat::stats();
    view.buf.clear();
    if summary(&mut view.buf, opts.reserve, &outcome, &cache.c, &st).is_err() {
        let _ = writeln!(view.buf, "\n(summary truncated)");
    }
    view.flush();

    lifeboat::unregister_shrinker(cache);
    cache.clear();
    drop(pool);
    drop(tmp);
    Ok(())
}
