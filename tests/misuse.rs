//! Misuse is reported with a fixed message and an abort, never silent
//! corruption. Each case runs in a forked child whose stderr is captured.

use lifeboat::{AllocFlags, Config, Heap};
use std::alloc::{GlobalAlloc, Layout};
use std::io::Read;
use std::os::fd::FromRawFd;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Runs `f` in a child; returns (terminating signal, stderr).
fn in_child(f: fn()) -> (i32, String) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs `f` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: redirect stderr to the pipe, then run the case.
        unsafe {
            libc::dup2(fds[1], 2);
            libc::close(fds[0]);
        }
        f();
        // SAFETY: the case should have aborted; exit distinctly if not.
        unsafe { libc::_exit(42) };
    }
    // SAFETY: the parent keeps the read end only.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open descriptor we own from here on.
    let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut err = String::new();
    r.read_to_string(&mut err).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let sig = if libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        -libc::WEXITSTATUS(status)
    };
    (sig, err)
}

fn expect_abort(f: fn(), message: &str) {
    let (sig, err) = in_child(f);
    assert_eq!(sig, libc::SIGABRT, "expected an abort; stderr: {err}");
    assert!(err.contains("lifeboat: fatal: "), "no fixed prefix: {err}");
    assert!(err.contains(message), "expected {message:?} in {err:?}");
    assert!(err.contains(" at 0x"), "no address: {err}");
}

#[test]
fn immediate_double_free_of_a_small_object() {
    expect_abort(
        || {
            let l = Layout::from_size_align(64, 8).unwrap();
            // SAFETY: deliberate misuse: the second dealloc is a double free.
            unsafe {
                let p = GLOBAL.alloc(l);
                let keep = GLOBAL.alloc(l);
                GLOBAL.dealloc(p, l);
                GLOBAL.dealloc(p, l);
                GLOBAL.dealloc(keep, l);
            }
        },
        "double free",
    );
}

#[test]
fn free_of_a_pointer_lifeboat_never_gave_out() {
    expect_abort(
        || {
            let mut on_stack = [0u64; 4];
            // SAFETY: deliberate misuse: not a lifeboat pointer.
            unsafe { GLOBAL.dealloc(on_stack.as_mut_ptr().cast(), Layout::new::<[u64; 4]>()) };
        },
        "invalid free",
    );
}

#[test]
fn free_of_an_interior_pointer() {
    expect_abort(
        || {
            let heap = Heap::new(Config::new().budget(4 << 20)).unwrap();
            let l = Layout::from_size_align(64, 8).unwrap();
            let p = heap.alloc(l, AllocFlags::NORMAL).unwrap();
            // SAFETY: deliberate misuse: 8 bytes into an object.
            unsafe { heap.dealloc(std::ptr::NonNull::new(p.as_ptr().add(8)).unwrap(), l) };
        },
        "not the start of an object",
    );
}

/// Allocates `size` bytes from the global allocator and frees them twice.
fn free_twice(size: usize) {
    let l = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: deliberate misuse: the second dealloc is a double free.
    unsafe {
        let p = GLOBAL.alloc(l);
        GLOBAL.dealloc(p, l);
        GLOBAL.dealloc(p, l);
    }
}

#[test]
fn double_free_of_a_large_block() {
    // 1 MiB: a buddy block, back on the free lists after the first free.
    expect_abort(|| free_twice(1 << 20), "double free");
}

#[test]
fn double_free_of_a_parked_block() {
    // 64 KiB: parked in the thread's cache by the first free.
    expect_abort(|| free_twice(64 << 10), "double free");
}

#[test]
fn remote_double_free_overflowing_a_slab() {
    expect_abort(
        || {
            let heap = Heap::new(Config::new().budget(4 << 20)).unwrap();
            let l = Layout::from_size_align(4096, 8).unwrap();
            let p = heap.alloc(l, AllocFlags::NORMAL).unwrap().as_ptr() as usize;
            // Free it again and again from other threads: the remote count
            // soon exceeds what the slab holds.
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..64 {
                        // SAFETY: deliberate misuse.
                        unsafe { heap.dealloc(std::ptr::NonNull::new(p as *mut u8).unwrap(), l) };
                    }
                });
            });
        },
        "double free",
    );
}
