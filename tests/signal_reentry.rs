//! Re-entry from a signal handler must not deadlock: a handler that
//! allocates while the interrupted code holds a lifeboat lock gets an
//! error (`AllocError::Reentered`) instead of waiting forever.
//!
//! Private heaps have no lock-free fast path that a handler could tear, so
//! a handler may use them freely; the test runs in a forked child so that a
//! deadlock shows up as a timeout, not a hung test run.

use lifeboat::{AllocError, AllocFlags, Config, Heap};
use std::alloc::Layout;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// The timer's period. Under `debug` the handler's four allocations fill
/// and check poison over about 80 KiB, which takes longer than 50 µs on a
/// loaded machine: signals would then arrive faster than the handler ends
/// and the main loop would starve (a livelock, not the deadlock this test
/// looks for).
const TICK_US: libc::suseconds_t = if cfg!(feature = "debug") { 400 } else { 50 };

static HEAP: AtomicPtr<Heap> = AtomicPtr::new(std::ptr::null_mut());
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static REENTERED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    // SAFETY: set before the timer starts and never freed in the child.
    let heap = unsafe { &*HEAP.load(Ordering::Acquire) };
    HANDLED.fetch_add(1, Ordering::Relaxed);
    for size in [24usize, 700, 9000, 70_000] {
        let l = Layout::from_size_align(size, 8).unwrap();
        match heap.alloc(l, AllocFlags::NORMAL) {
            // SAFETY: allocated just above.
            Ok(p) => unsafe { heap.dealloc(p, l) },
            Err(AllocError::Reentered) => {
                REENTERED.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

fn child() -> ! {
    let heap = Box::leak(Box::new(Heap::new(Config::new().budget(64 << 20)).unwrap()));
    HEAP.store(heap, Ordering::Release);
    // SAFETY: installing a handler and an interval timer; the handler only
    // touches atomics and the private heap.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: TICK_US,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: TICK_US,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
    let start = Instant::now();
    let mut held = Vec::with_capacity(64);
    let mut i = 0usize;
    while start.elapsed() < Duration::from_millis(1500) {
        i += 1;
        let size = [16usize, 100, 3000, 40_000, 200_000][i % 5];
        let l = Layout::from_size_align(size, 8).unwrap();
        if let Ok(p) = heap.alloc(l, AllocFlags::NORMAL) {
            if held.len() < 64 {
                held.push((p, l));
            } else {
                // SAFETY: allocated just above.
                unsafe { heap.dealloc(p, l) };
            }
        }
        if i.is_multiple_of(3) {
            if let Some((p, l)) = held.pop() {
                // SAFETY: allocated by this loop.
                unsafe { heap.dealloc(p, l) };
            }
        }
    }
    // SAFETY: stop the timer before exiting.
    unsafe {
        let off: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut());
    }
    let code = if HANDLED.load(Ordering::Relaxed) > 0 {
        0
    } else {
        3
    };
    // SAFETY: leave without running the test harness's exit path.
    unsafe { libc::_exit(code) }
}

#[test]
fn a_handler_that_allocates_never_deadlocks() {
    // SAFETY: the child runs only `child`, which ends in `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        child();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the child deadlocked with an allocating signal handler");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the handler never ran");
}
