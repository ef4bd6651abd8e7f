//! `fork()` while other threads are in the middle of allocating: the child
//! must be able to allocate and free (its copy of the heap's locks must not
//! be held by threads that do not exist in the child).
//!
//! Each child arms `alarm(10)`, so a deadlock shows up as death by SIGALRM
//! instead of a hung test. The child never returns into the test harness:
//! it leaves with `_exit`.

use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const FORKS: usize = 20;
const MIB: usize = 1024 * 1024;

/// A box the churn threads keep replacing; children take it over and free
/// it, freeing an object whose owner thread does not exist in the child.
static HANDOFF: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

mod common;
use common::Rng;

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=2 => 4 * MIB + rng.below(2 * MIB), // huge: direct mapping
        3..=30 => 32 * 1024 + rng.below(512 * 1024),
        31..=200 => rng.below(32 * 1024),
        _ => rng.below(512),
    }
}

/// Background churn: allocations, frees, reallocs and stats snapshots of
/// every tier, until `stop`.
fn churn(seed: u64, stop: &AtomicBool, ops: &AtomicUsize) {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match rng.below(10) {
            0..=4 => {
                let size = random_size(&mut rng);
                live.push(vec![size as u8; size]);
            }
            5 | 6 if !live.is_empty() => {
                let v = live.swap_remove(rng.below(live.len()));
                let want = v.len() as u8;
                assert!(v.iter().all(|b| *b == want), "churn object corrupted");
            }
            7 if !live.is_empty() => {
                let i = rng.below(live.len());
                let new_len = random_size(&mut rng);
                let v = &mut live[i];
                v.resize(new_len, 0);
                v.iter_mut().for_each(|b| *b = new_len as u8);
            }
            8 => {
                let size = random_size(&mut rng).min(MIB);
                let b = Box::into_raw(Box::new(vec![0x77u8; size]));
                let old = HANDOFF.swap(b, Ordering::AcqRel);
                if !old.is_null() {
                    // SAFETY: every non-null value in HANDOFF came from
                    // Box::into_raw and is taken out exactly once by swap.
                    drop(unsafe { Box::from_raw(old) });
                }
            }
            _ => {
                black_box(lifeboat::stats());
            }
        }
        while live.len() > 300 {
            live.swap_remove(rng.below(live.len()));
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a child does. Returns 0 on success, another code on a wrong result.
/// Must not panic or print: stdout/stderr locks may be held by threads that
/// do not exist in the child.
fn child_work(pre_fork: Vec<String>) -> i32 {
    // Objects allocated by the parent's main thread before the fork.
    for (i, s) in pre_fork.iter().enumerate() {
        if *s != format!("pre-fork {i}") {
            return 10;
        }
    }
    drop(pre_fork);
    // An object allocated by a thread that is not in the child.
    let h = HANDOFF.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !h.is_null() {
        // SAFETY: the pointer came from Box::into_raw in `churn`; the swap
        // took it out, so nobody else frees it.
        let v = unsafe { Box::from_raw(h) };
        if !v.iter().all(|b| *b == 0x77) {
            return 11;
        }
    }
    let v: Vec<u64> = (0..50_000).collect();
    if v.iter().sum::<u64>() != 50_000 * 49_999 / 2 {
        return 12;
    }
    let mut s = String::new();
    for i in 0..2000 {
        s.push_str(&format!("{i},"));
    }
    if s.split(',').filter(|x| !x.is_empty()).count() != 2000 {
        return 13;
    }
    let mut boxes: Vec<Box<[u8]>> = Vec::new();
    for (k, size) in [1usize, 24, 100, 3000, 32 * 1024, 40_000, MIB, 5 * MIB]
        .into_iter()
        .enumerate()
    {
        boxes.push(vec![k as u8; size].into_boxed_slice());
    }
    for (k, b) in boxes.iter().enumerate() {
        if !b.iter().all(|x| *x == k as u8) {
            return 14;
        }
    }
    drop(boxes);
    if lifeboat::stats().mapped_bytes == 0 {
        return 15;
    }
    // A thread in the child: its cache is set up and torn down in the child.
    let t = thread::spawn(|| {
        let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; i]).collect();
        v.iter()
            .enumerate()
            .filter(|(i, x)| x.len() == *i && x.iter().all(|b| *b == *i as u8))
            .count()
    });
    match t.join() {
        Ok(1000) => {}
        _ => return 16,
    }
    0
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGALRM {
            "killed by SIGALRM after 10 s (deadlock in the child)".to_string()
        } else {
            format!("killed by signal {sig}")
        }
    } else {
        format!("raw status {status:#x}")
    }
}

#[test]
fn fork_during_allocation_churn() {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let ops = Arc::clone(&ops);
            thread::spawn(move || churn(t + 1, &stop, &ops))
        })
        .collect();
    let mut failures = Vec::new();
    for round in 0..FORKS {
        // Let the churn threads get going (no timing assumption: just wait
        // for some progress).
        let target = ops.load(Ordering::Relaxed) + 50;
        while ops.load(Ordering::Relaxed) < target {
            thread::yield_now();
        }
        let pre_fork: Vec<String> = (0..100).map(|i| format!("pre-fork {i}")).collect();
        // SAFETY: fork has no memory-safety preconditions; the child only
        // runs `child_work` (no locks held by other threads are needed by
        // it except the allocator's, which is what is under test) and
        // leaves with `_exit`, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: alarm only arms a timer for this process.
            unsafe { libc::alarm(10) };
            let code = catch_unwind(AssertUnwindSafe(|| child_work(pre_fork))).unwrap_or(2);
            // SAFETY: _exit ends the child at once, without running the
            // parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; `pid` is our child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EINTR),
                "waitpid failed: {err}"
            );
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failures.push(format!("fork {round}: child {}", describe(status)));
        }
        drop(pre_fork);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("churn thread panicked");
    }
    let h = HANDOFF.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !h.is_null() {
        // SAFETY: came from Box::into_raw; taken out once by the swap.
        drop(unsafe { Box::from_raw(h) });
    }
    assert!(
        failures.is_empty(),
        "{} of {FORKS} children failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
