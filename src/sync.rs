//! Synchronisation primitives, switchable to loom.
//!
//! Everything in lifeboat that is shared between threads is built from this
//! module, so the loom models (`--cfg loom`) check the code that ships:
//!
//! * atomics come from `core` (or `loom`);
//! * [`RacyCell`] is a plain cell whose *protocol* (an owner thread, or a
//!   lock) makes accesses exclusive; under loom it is loom's `UnsafeCell`,
//!   which reports any access the protocol failed to order;
//! * [`RawLock`] is a small futex lock that never allocates (the rule of the
//!   allocation path: no `parking_lot`, whose slow path allocates);
//! * [`wait_on`]/[`wake_all`] are the bare futex, for counters that other
//!   threads wait on (the background reclaimer, the reserve gate);
//! * [`Mutex`]/[`Condvar`] are for code *off* the allocation path only
//!   (`Mempool`): `parking_lot`'s, or loom's under `--cfg loom`.
//!
//! Under loom the futex is modelled faithfully (see `futex_wait`): a wait
//! returns at once if the word has changed, else blocks until a wake on the
//! same word. Timeouts are not modelled: a wait that only its timeout would
//! end is reported by loom as a deadlock, which is how a lost wake-up shows.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

pub(crate) use core::sync::atomic::Ordering;

/// A cell whose accesses are made exclusive by a protocol, not by the type.
///
/// Each field of this type names, in its owner's docs, who may touch it: the
/// thread that owns a slab, or the holder of a lock.
#[repr(transparent)]
pub(crate) struct RacyCell<T> {
    #[cfg(not(loom))]
    inner: core::cell::UnsafeCell<T>,
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
}

impl<T: Copy> RacyCell<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(v: T) -> Self {
        Self {
            inner: core::cell::UnsafeCell::new(v),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(v: T) -> Self {
        Self {
            inner: loom::cell::UnsafeCell::new(v),
        }
    }

    /// Reads the value.
    ///
    /// # Safety
    /// The caller is the field's owner under its protocol (no concurrent write).
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> T {
        #[cfg(not(loom))]
        // SAFETY: the caller guarantees no concurrent write.
        unsafe {
            *self.inner.get()
        }
        #[cfg(loom)]
        // SAFETY: as above; loom checks it.
        self.inner.with(|p| unsafe { *p })
    }

    /// Writes the value.
    ///
    /// # Safety
    /// The caller is the field's owner under its protocol (no concurrent access).
    #[inline(always)]
    pub(crate) unsafe fn set(&self, v: T) {
        #[cfg(not(loom))]
        // SAFETY: the caller guarantees exclusive access.
        unsafe {
            *self.inner.get() = v
        }
        #[cfg(loom)]
        // SAFETY: as above; loom checks it.
        self.inner.with_mut(|p| unsafe { *p = v })
    }
}

// SAFETY: a RacyCell is only touched by the owner its protocol names; the
// protocols publish ownership with release/acquire atomics or locks.
unsafe impl<T> Sync for RacyCell<T> {}
// SAFETY: as above.
unsafe impl<T> Send for RacyCell<T> {}

/// Tells the CPU (or loom) that we are spinning.
#[inline]
#[cfg_attr(loom, allow(dead_code))] // RawLock does not spin under loom
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and some thread may be asleep in `futex_wait`.
const CONTENDED: u32 = 2;

/// A non-allocating mutex: a short spin, then a futex sleep.
///
/// It is the Drepper three-state futex lock; it needs no allocation and no
/// thread registry, so it is safe inside `malloc`. `force_unlock` exists for
/// the `fork()` child, which inherits locks taken by the `atfork` prepare
/// handler of the forking thread.
///
/// Every lock keeps the calling thread's count of held locks up to date
/// (see [`holds_lock`]) without touching a thread-local while the count is
/// wrong: see [`HeldCount`].
pub(crate) struct RawLock {
    state: AtomicU32,
    /// The holder's [`HeldCount`], written after the acquire and read
    /// before the release (so only by the holder).
    #[cfg(not(loom))]
    holder: core::sync::atomic::AtomicPtr<core::cell::Cell<i32>>,
    /// What holding this lock adds to the holder's count: [`ONE_LOCK`],
    /// plus [`ONE_WAITED`] for a lock that the allocation path waits for.
    #[cfg(not(loom))]
    weight: i32,
    /// Acquisitions, and those that found the lock taken: written by the
    /// holder only (a load and a store, no read-modify-write), read
    /// anywhere for statistics.
    #[cfg(not(loom))]
    acquired: core::sync::atomic::AtomicUsize,
    #[cfg(not(loom))]
    contended: core::sync::atomic::AtomicUsize,
}

/// Adds one to a counter only the lock's holder writes: a load and a
/// store, cheaper than a read-modify-write, exact because writers are
/// serialised by the lock.
#[cfg(not(loom))]
#[inline]
fn bump(c: &core::sync::atomic::AtomicUsize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// The share of one held lock in a thread's count (`HELD`).
#[cfg(not(loom))]
const ONE_LOCK: i32 = 1;
/// The share of one held *waited* lock (see [`RawLock::new_waited`]): the
/// count's bits from here on count those alone.
#[cfg(not(loom))]
const ONE_WAITED: i32 = 1 << 16;

impl RawLock {
    /// A lock that the allocation path takes only with
    /// [`RawLock::try_lock`], or only where the thread holds no lock (the
    /// shard locks, see `HeapInner::with_shard`; the shrinker registry).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self::with_weight(ONE_LOCK)
    }

    /// A lock that the allocation path waits for wherever it runs (the
    /// heap lock): a re-entered allocation on a thread that holds one must
    /// be refused ([`holds_waited_lock`]), where one that holds only
    /// locks made by [`RawLock::new`] can go on.
    #[cfg(not(loom))]
    pub(crate) const fn new_waited() -> Self {
        Self::with_weight(ONE_LOCK + ONE_WAITED)
    }

    #[cfg(not(loom))]
    const fn with_weight(weight: i32) -> Self {
        Self {
            state: AtomicU32::new(UNLOCKED),
            holder: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            weight,
            acquired: core::sync::atomic::AtomicUsize::new(0),
            contended: core::sync::atomic::AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new_waited() -> Self {
        Self::new()
    }

    /// This lock's share of its holder's count.
    #[inline]
    fn weight(&self) -> i32 {
        #[cfg(not(loom))]
        {
            self.weight
        }
        #[cfg(loom)]
        0
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.try_lock_as(HeldCount::current())
    }

    /// [`RawLock::try_lock`] for a thread whose count is `held`.
    #[inline]
    pub(crate) fn try_lock_as(&self, held: HeldCount) -> bool {
        // Counted before the attempt and uncounted after a release, so a
        // signal handler never sees this thread holding a lock uncounted.
        held.add(self.weight());
        let ok = self
            .state
            .compare_exchange(
                UNLOCKED,
                LOCKED,
                crate::model::fault_ordering!(
                    WeakLockAcquire,
                    Ordering::Acquire,
                    Ordering::Relaxed
                ),
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            self.set_holder(held);
        } else {
            held.add(-self.weight());
        }
        ok
    }

    #[inline]
    pub(crate) fn lock(&self) {
        self.lock_as(HeldCount::current());
    }

    /// [`RawLock::lock`] for a thread whose count is `held`: for a lock
    /// taken while another is held, where resolving the count again could
    /// run the loader's TLS update under the first lock.
    #[inline]
    pub(crate) fn lock_as(&self, held: HeldCount) {
        if !self.try_lock_as(held) {
            self.lock_contended(held);
        }
    }

    #[cold]
    fn lock_contended(&self, held: HeldCount) {
        // Under loom, spinning only multiplies the interleavings to explore.
        #[cfg(not(loom))]
        for _ in 0..64 {
            spin_hint();
            if self.state.load(Ordering::Relaxed) == UNLOCKED && self.try_lock_as(held) {
                bump(&self.contended);
                return;
            }
        }
        let acquire =
            crate::model::fault_ordering!(WeakLockAcquire, Ordering::Acquire, Ordering::Relaxed);
        held.add(self.weight());
        while self.state.swap(CONTENDED, acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
        self.set_holder(held);
        #[cfg(not(loom))]
        bump(&self.contended);
    }

    /// Records the new holder; called by it right after the acquire.
    #[inline]
    fn set_holder(&self, _held: HeldCount) {
        #[cfg(not(loom))]
        {
            self.holder.store(_held.0.cast_mut(), Ordering::Relaxed);
            bump(&self.acquired);
        }
    }

    /// Acquisitions of this lock so far, and how many of them found it
    /// taken (and spun or slept); statistics, exact while no thread holds
    /// the lock.
    #[cfg(not(loom))]
    pub(crate) fn acquisitions(&self) -> (usize, usize) {
        // Contended first: the holder bumps it after `acquired`.
        let contended = self.contended.load(Ordering::Relaxed);
        (self.acquired.load(Ordering::Relaxed), contended)
    }

    /// The holder's count; called by the holder only.
    #[inline]
    fn holder(&self) -> HeldCount {
        #[cfg(not(loom))]
        {
            HeldCount(self.holder.load(Ordering::Relaxed))
        }
        #[cfg(loom)]
        HeldCount()
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        let held = self.holder();
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
        held.add(-self.weight());
    }

    /// Resets the lock in a `fork()` child.
    ///
    /// # Safety
    /// Only the single thread of a freshly forked child may call this, for a
    /// lock that the forking thread took in the `atfork` prepare handler.
    #[cfg(not(loom))]
    pub(crate) unsafe fn force_unlock(&self) {
        // The child's thread is the forking thread: same count.
        let held = self.holder();
        self.state.store(UNLOCKED, Ordering::Relaxed);
        held.add(-self.weight());
    }

    /// Runs `f` under the lock.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.lock();
        let r = f();
        // SAFETY: we took the lock just above; `f` cannot unwind (no panics
        // on the allocation path, and the crate aborts on panic paths).
        unsafe { self.unlock() };
        r
    }
}

#[cfg(not(loom))]
std::thread_local! {
    /// Lifeboat locks the calling thread holds (or is taking): each adds
    /// its `RawLock::weight`. A re-entrant allocation (a signal handler, a
    /// loader's TLS update) on a thread that holds one must not wait for a
    /// lock: it may be the very lock the interrupted code holds.
    static HELD: core::cell::Cell<i32> = const { core::cell::Cell::new(0) };
}

/// The calling thread's count of held locks (`HELD`), resolved to its
/// address.
///
/// Resolving a thread-local is not always a plain load: in a shared
/// library (`LD_PRELOAD`) it calls `__tls_get_addr`, and the first such
/// call after a `dlopen` of a module with TLS updates the thread's dtv,
/// which allocates and frees through lifeboat. That nested allocation reads
/// the count to decide whether it may take a lock, so the count must be
/// right whenever a thread-local is resolved. A lock resolves it before
/// counting itself in and keeps the address for its release; resolving it
/// again after the release, with the count still one too high, would have
/// the nested allocation refused and the loader abort. For the same reason
/// code under the heap lock resolves no thread-local (the fault hooks of
/// `fault.rs` do once a test arms them). Code under a shard lock may (the
/// heap lock's count, the memalloc scope on the reserve path): a nested
/// allocation there takes another shard, with `try_lock`
/// (`HeapInner::with_shard`). Under the `debug` feature the slow path's
/// thread-local accessors check the rule ([`check_thread_local_allowed`]).
#[derive(Clone, Copy)]
pub(crate) struct HeldCount(#[cfg(not(loom))] *const core::cell::Cell<i32>);

impl HeldCount {
    /// Resolves the calling thread's count.
    #[inline]
    pub(crate) fn current() -> Self {
        #[cfg(not(loom))]
        {
            HeldCount(HELD.with(|h| h as *const _))
        }
        #[cfg(loom)]
        HeldCount()
    }

    /// Whether the thread holds (or is taking) any lock.
    #[inline]
    pub(crate) fn any(self) -> bool {
        self.get() > 0
    }

    /// Whether the thread holds (or is taking) a lock made by
    /// [`RawLock::new_waited`].
    #[cfg(not(loom))]
    #[inline]
    fn waited(self) -> bool {
        self.get() >= ONE_WAITED
    }

    #[inline]
    fn get(self) -> i32 {
        #[cfg(not(loom))]
        {
            // SAFETY: as in `add`.
            unsafe { &*self.0 }.get()
        }
        #[cfg(loom)]
        0
    }

    #[inline]
    fn add(self, _d: i32) {
        #[cfg(not(loom))]
        {
            // The count must change on the right side of the lock operation
            // even as seen by a signal handler on this thread: keep the
            // compiler from moving it across.
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
            // SAFETY: `HELD` is a const thread-local without a destructor:
            // its address stays valid for the whole life of the thread that
            // resolved it, which is the only thread that uses this value.
            let h = unsafe { &*self.0 };
            h.set(h.get() + _d);
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
        }
    }
}

/// Whether the calling thread holds (or is taking) any lifeboat lock.
#[cfg(not(loom))]
pub(crate) fn holds_lock() -> bool {
    HeldCount::current().any()
}

/// Under the `debug` feature, aborts if the calling thread holds (or is
/// taking) the heap lock: the slow path's thread-local accessors call this
/// first, so that the debug test run catches a thread-local resolved
/// under the heap lock (see [`HeldCount`]; the fault hooks, armed by tests
/// only, are the exception). Nothing in other builds.
#[inline(always)]
pub(crate) fn check_thread_local_allowed() {
    #[cfg(all(feature = "debug", not(loom)))]
    if holds_waited_lock() {
        crate::diag::fatal("a thread-local resolved under the heap lock", 0);
    }
}

/// Whether the calling thread holds (or is taking) a lock made by
/// [`RawLock::new_waited`]: a re-entered allocation must then be refused.
/// (A thread that holds only other locks may allocate through a shard it
/// can take without waiting: `HeapInner::with_shard`.)
#[cfg(not(loom))]
pub(crate) fn holds_waited_lock() -> bool {
    HeldCount::current().waited()
}

#[cfg(not(loom))]
fn futex_wait(state: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the u32 at a valid, aligned address; a null
    // timeout means "until woken"; spurious wake-ups are handled by the caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            state.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(not(loom))]
fn futex_wake(state: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            state.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

// Under loom the futex is one loom mutex and condition variable for all
// words (the kernel's futex hash table with a single bucket), which holds a
// wake-up generation per word. A waiter checks the word under the bucket
// lock and then blocks until the generation of *its* word changes: exactly
// the futex contract (the check and the sleep are atomic with respect to a
// wake; no spurious returns, so a model never hides a lost wake-up behind
// one; no timeouts). The waker changes the word before it takes the bucket,
// so a waiter that takes the bucket after the wake sees the new value.
#[cfg(loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<Vec<(usize, u64)>>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(Vec::new()), loom::sync::Condvar::new());
}

#[cfg(loom)]
fn futex_generation(bucket: &[(usize, u64)], key: usize) -> u64 {
    bucket.iter().find(|e| e.0 == key).map_or(0, |e| e.1)
}

#[cfg(loom)]
fn futex_wait(word: &AtomicU32, expected: u32) {
    let key = word as *const AtomicU32 as usize;
    let mut bucket = FUTEX.0.lock().unwrap_or_else(|e| e.into_inner());
    if word.load(Ordering::Relaxed) != expected {
        return;
    }
    let gen = futex_generation(&bucket, key);
    while futex_generation(&bucket, key) == gen {
        bucket = FUTEX.1.wait(bucket).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(loom)]
fn futex_wake(word: &AtomicU32) {
    let key = word as *const AtomicU32 as usize;
    let mut bucket = FUTEX.0.lock().unwrap_or_else(|e| e.into_inner());
    match bucket.iter_mut().find(|e| e.0 == key) {
        Some(e) => e.1 += 1,
        None => bucket.push((key, 1)),
    }
    // Waking every waiter of the word is allowed for a wake of one (they
    // re-check the word), and waiters of other words sleep on.
    FUTEX.1.notify_all();
}

/// Sleeps while `*word == expected`, at most `ms` milliseconds (the futex
/// wait of [`RawLock`], with a timeout). Spurious returns are allowed.
#[cfg(not(loom))]
pub(crate) fn wait_on(word: &AtomicU32, expected: u32, ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned u32; the timeout is relative and
    // valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every thread sleeping in [`wait_on`] on `word`.
#[cfg(not(loom))]
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Under loom: returns at once if `*word != expected`, else blocks until a
/// [`wake_all`] on `word`. The timeout is not modelled (see the module
/// docs): no model may rely on it to make progress.
#[cfg(loom)]
pub(crate) fn wait_on(word: &AtomicU32, expected: u32, _ms: u64) {
    futex_wait(word, expected);
}

/// Under loom: wakes every thread blocked in [`wait_on`] on `word`.
#[cfg(loom)]
pub(crate) fn wake_all(word: &AtomicU32) {
    futex_wake(word);
}

// ------------------------------------------------------------- blocking

/// A mutex for code off the allocation path (`parking_lot`'s; loom's under
/// `--cfg loom`). Never use it on the allocation path (see the module docs).
#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(loom)]
pub(crate) use loom_blocking::{Condvar, Mutex};

/// `parking_lot`'s `Mutex`/`Condvar` interface over loom's, for the methods
/// lifeboat uses.
#[cfg(loom)]
mod loom_blocking {
    use std::time::Instant;

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Holds loom's guard; empty only inside [`Condvar::wait_until`].
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> core::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().expect("mutex guard held")
        }
    }

    impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("mutex guard held")
        }
    }

    pub(crate) struct Condvar(loom::sync::Condvar);

    /// The result of [`Condvar::wait_until`]: under loom, never a timeout.
    pub(crate) struct WaitTimeoutResult;

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            false
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        /// Blocks until notified. The deadline is not modelled: a waiter
        /// that nobody notifies is reported by loom as a deadlock, which is
        /// what a lost wake-up looks like (a modelled timeout would hide
        /// it).
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            let g = guard.0.take().expect("mutex guard held");
            guard.0 = Some(self.0.wait(g).unwrap_or_else(|e| e.into_inner()));
            WaitTimeoutResult
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        #[allow(dead_code)] // parity with parking_lot's interface
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
