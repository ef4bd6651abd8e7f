//! Misuse is reported with a fixed message and an abort, never silent
//! corruption. Each case runs in a forked child whose stderr is captured.

mod common;

#[cfg(not(feature = "debug"))]
use common::orphans;
use lifeboat::{AllocFlags, Config, Heap};
use std::alloc::{GlobalAlloc, Layout};
use std::io::Read;
use std::os::fd::FromRawFd;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Runs `f` in a child; returns (terminating signal, stderr).
fn in_child(f: impl FnOnce()) -> (i32, String) {
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

fn expect_abort(f: impl FnOnce(), message: &str) {
    let (sig, err) = in_child(f);
    assert_eq!(sig, libc::SIGABRT, "expected an abort; stderr: {err}");
    assert!(err.contains("lifeboat: fatal: "), "no fixed prefix: {err}");
    assert!(err.contains(message), "expected {message:?} in {err:?}");
    assert!(err.contains(" at 0x"), "no address: {err}");
}

/// A private heap for one case (its slabs hold only that case's objects).
fn heap() -> Heap {
    Heap::new(Config::new().budget(4 << 20)).unwrap()
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// The message of a small double free: `plain` without `debug`; under
/// `debug` the live bit, checked first, catches every case.
fn double_free_message(plain: &'static str) -> &'static str {
    if cfg!(feature = "debug") {
        "double free (the object is not live)"
    } else {
        plain
    }
}

#[test]
fn double_free_of_the_free_list_head() {
    expect_abort(
        || {
            let h = heap();
            let p = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            let _keep = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            // SAFETY: deliberate misuse: `p` heads the free list after the
            // first free.
            unsafe {
                h.dealloc(p, layout(96));
                h.dealloc(p, layout(96));
            }
        },
        double_free_message("double free (the object is the head of its slab's free list)"),
    );
}

#[test]
fn double_free_overflowing_the_free_count() {
    expect_abort(
        || {
            let h = heap();
            let a = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            let b = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            // SAFETY: deliberate misuse: `a` is freed again while not the
            // head, with no object of the slab out. (Under `debug` the live
            // bit catches it first.)
            unsafe {
                h.dealloc(a, layout(96));
                h.dealloc(b, layout(96));
                h.dealloc(a, layout(96));
            }
        },
        double_free_message("double free (the slab's free count would exceed its capacity)"),
    );
}

#[test]
fn interior_pointer_through_the_global_allocator() {
    expect_abort(
        || {
            let l = layout(200);
            // SAFETY: deliberate misuse: a free 8 bytes into an object,
            // from a thread that does not own its slab (the exact check of
            // the slow path; the owner's fast path does not check).
            let p = unsafe { GLOBAL.alloc(l) } as usize;
            // SAFETY: the misuse above, on another thread.
            std::thread::spawn(move || unsafe { GLOBAL.dealloc((p + 8) as *mut u8, l) })
                .join()
                .unwrap();
        },
        "invalid free (not the start of an object)",
    );
}

#[test]
fn corrupted_link_written_after_free() {
    expect_abort(
        || {
            let h = heap();
            let a = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            let b = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
            // SAFETY: deliberate misuse: a write to a freed object's first
            // word (its encoded link), then allocations: once the ones
            // linked before the frees are used up, one hands `a` out and
            // the next follows the forged link. (Leaked: the case ends in
            // an abort.)
            unsafe {
                h.dealloc(b, layout(96));
                h.dealloc(a, layout(96));
                a.as_ptr().cast::<usize>().write(0x4141_4141_4141_4141);
            }
            for _ in 0..1000 {
                let _ = h.alloc(layout(96), AllocFlags::NORMAL);
            }
        },
        "free list corrupted (a link decodes outside its slab; use after free?)",
    );
}

#[test]
fn corrupted_link_through_the_global_allocator() {
    expect_abort(
        || {
            let l = layout(400);
            // SAFETY: deliberate misuse, as above, on the fast paths.
            unsafe {
                let a = GLOBAL.alloc(l);
                let b = GLOBAL.alloc(l);
                GLOBAL.dealloc(b, l);
                GLOBAL.dealloc(a, l);
                a.cast::<usize>().write(0x4141_4141_4141_4141);
                for _ in 0..1000 {
                    let _ = GLOBAL.alloc(l);
                }
            }
        },
        "free list corrupted",
    );
}

#[cfg(feature = "debug")]
mod debug {
    use super::*;

    #[test]
    fn write_after_free_found_by_the_poison() {
        expect_abort(
            || {
                let h = heap();
                let a = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
                // SAFETY: deliberate misuse: a write past the link word of
                // a freed object; allocations hand it out again once the
                // objects linked before it are used up.
                unsafe {
                    h.dealloc(a, layout(96));
                    a.as_ptr().add(40).write(7);
                }
                for _ in 0..1000 {
                    let _ = h.alloc(layout(96), AllocFlags::NORMAL);
                }
            },
            "use after free (a freed object was written to",
        );
    }

    #[test]
    fn overflow_into_the_red_zone() {
        expect_abort(
            || {
                let h = heap();
                let a = h.alloc(layout(100), AllocFlags::NORMAL).unwrap();
                // SAFETY: deliberate misuse: one byte past the request.
                unsafe {
                    a.as_ptr().add(100).write(0);
                    h.dealloc(a, layout(100));
                }
            },
            "heap overflow (a write past the end of the object hit its red zone)",
        );
    }

    #[test]
    fn overflow_through_the_global_allocator() {
        expect_abort(
            || {
                let l = layout(13);
                // SAFETY: deliberate misuse: writes past the request.
                unsafe {
                    let p = GLOBAL.alloc(l);
                    p.add(13).write(0);
                    GLOBAL.dealloc(p, l);
                }
            },
            "heap overflow",
        );
    }

    #[test]
    fn deep_double_free() {
        expect_abort(
            || {
                let h = heap();
                let v: Vec<_> = (0..4)
                    .map(|_| h.alloc(layout(96), AllocFlags::NORMAL).unwrap())
                    .collect();
                let _keep = h.alloc(layout(96), AllocFlags::NORMAL).unwrap();
                // SAFETY: deliberate misuse: v[0] is deep in the free list
                // (not its head) and objects are still out.
                unsafe {
                    for &p in &v {
                        h.dealloc(p, layout(96));
                    }
                    h.dealloc(v[0], layout(96));
                }
            },
            "double free (the object is not live)",
        );
    }

    #[test]
    fn usable_size_is_the_request() {
        let h = heap();
        let a = h.alloc(layout(100), AllocFlags::NORMAL).unwrap();
        assert_eq!(h.usable_size(a.as_ptr()), Some(100));
        // SAFETY: `a` is live and freed once.
        unsafe { h.dealloc(a, layout(100)) };
    }
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
    // 2 MiB: a buddy block, back on the free lists after the first free.
    expect_abort(|| free_twice(2 << 20), "double free");
}

#[test]
fn double_free_of_a_block_in_the_heap_block_cache() {
    // 1 MiB: parked in the process heap's block cache by the first free.
    expect_abort(|| free_twice(1 << 20), "double free");
}

#[test]
fn double_free_of_a_parked_block() {
    // 64 KiB: parked in the thread's cache by the first free.
    expect_abort(|| free_twice(64 << 10), "double free");
}

#[test]
fn free_of_the_room_held_above_a_growing_buffer() {
    expect_abort(
        || {
            let heap = Heap::new(Config::new().budget(64 << 20)).unwrap();
            let p = heap.alloc(layout(4096), AllocFlags::NORMAL).unwrap();
            // Moved into a page block with a growth run above it: the
            // 8 KiB after the buffer are the run's first held block.
            // SAFETY: `p` is live with its layout.
            let q = unsafe { heap.realloc(p, layout(4096), 8192, AllocFlags::NORMAL) }.unwrap();
            let held = std::ptr::NonNull::new(q.as_ptr().wrapping_add(8192)).unwrap();
            // SAFETY: deliberate misuse: never handed out.
            unsafe { heap.dealloc(held, layout(8192)) };
        },
        "double free (large allocation)",
    );
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

/// Expects `misuse`, run on a thread that allocates objects of 320 bytes
/// with 64 such objects whose allocating thread has exited (their slabs
/// full, so freed ones are listed), to abort with `message`. (A thread
/// lists only objects of classes it allocates; it allocates here before
/// the orphans exist, so that its own slab holds none of them.)
#[cfg(not(feature = "debug"))]
fn expect_abort_on_orphans(misuse: fn(&[usize], Layout), message: &str) {
    expect_abort_on_orphans_of(320, 64, misuse, message);
}

/// As [`expect_abort_on_orphans`], with `n` objects of `size` bytes (enough
/// that their slab stays a quarter allocated, as listing needs).
#[cfg(not(feature = "debug"))]
fn expect_abort_on_orphans_of(size: usize, n: usize, misuse: fn(&[usize], Layout), message: &str) {
    expect_abort(
        move || {
            std::thread::spawn(move || {
                // SAFETY: a non-zero size.
                let mine = unsafe { GLOBAL.alloc(layout(size)) };
                assert!(!mine.is_null());
                let v = orphans(size, n);
                misuse(&v, layout(size));
            })
            .join()
            .unwrap();
        },
        message,
    );
}

/// Allocations of `l` until the listed objects have been handed out: the
/// thread's own slab serves first, at most a refill of 64 objects.
#[cfg(not(feature = "debug"))]
fn allocate_past_own_slab(l: Layout, listed: usize) {
    for _ in 0..64 + listed {
        // SAFETY: a non-zero size; the objects are leaked.
        let _ = unsafe { GLOBAL.alloc(l) };
    }
}

/// Expects `misuse`, run with objects of 96 bytes of one slab of a live
/// thread on a thread that never allocates that class (so its foreign
/// lists refuse them, and frees go into its remote batch,
/// `remote_batch.rs`), to abort with `message`.
#[cfg(not(feature = "debug"))]
fn expect_abort_in_batch(misuse: fn(&[usize], Layout), message: &str) {
    expect_abort(
        move || {
            let (tx, rx) = std::sync::mpsc::channel();
            let (_done, wait) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                // SAFETY: a non-zero size.
                let v: Vec<usize> = (0..64)
                    .map(|_| unsafe { GLOBAL.alloc(layout(96)) } as usize)
                    .collect();
                tx.send(v).unwrap();
                let _ = wait.recv(); // stays alive, owning the slab
            });
            let v: Vec<usize> = rx.recv().unwrap();
            // Only objects of one slab: of the 16 KiB-aligned window (a
            // slab of this class is at least that, and aligned to its
            // size) that holds most of them.
            let window = |p: usize| p & !((16 << 10) - 1);
            let most = v
                .iter()
                .map(|&p| window(p))
                .max_by_key(|&w| v.iter().filter(|&&p| window(p) == w).count())
                .unwrap();
            let v: Vec<usize> = v.into_iter().filter(|&p| window(p) == most).collect();
            std::thread::spawn(move || misuse(&v, layout(96)))
                .join()
                .unwrap();
        },
        message,
    );
}

/// Misuse for the helpers above: frees `v[0]` twice in a row.
#[cfg(not(feature = "debug"))]
fn free_first_twice(v: &[usize], l: Layout) {
    // SAFETY: deliberate misuse: the same object freed twice.
    unsafe {
        GLOBAL.dealloc(v[0] as *mut u8, l);
        GLOBAL.dealloc(v[0] as *mut u8, l);
    }
}

/// Misuse for the helpers above: frees `v[0]`, `v[1]`, then `v[0]` again.
#[cfg(not(feature = "debug"))]
fn free_first_around_second(v: &[usize], l: Layout) {
    // SAFETY: deliberate misuse: `v[0]` freed twice, `v[1]` between.
    unsafe {
        GLOBAL.dealloc(v[0] as *mut u8, l);
        GLOBAL.dealloc(v[1] as *mut u8, l);
        GLOBAL.dealloc(v[0] as *mut u8, l);
    }
}

#[test]
#[cfg(not(feature = "debug"))]
fn double_free_into_a_remote_batch() {
    expect_abort_in_batch(
        free_first_twice,
        "double free (the object is already in this thread's remote batch)",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn double_free_of_the_second_object_of_a_remote_batch() {
    expect_abort_in_batch(
        free_first_around_second,
        "double free (the object is already in this thread's remote batch)",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn double_free_of_a_free_held_back() {
    expect_abort(
        || {
            // One object a slab (16 KiB: eight objects of this class), of
            // a class the freeing thread never allocates (finding them
            // does: another thread looks), so its foreign lists refuse
            // them and every chain of its batch holds one object; after a
            // run of those the batch is bypassed, and its last frees are
            // held back.
            let (v, _) = common::scattered_orphans(2000, 40, 16 << 10);
            std::thread::spawn(move || {
                let l = layout(2000);
                // SAFETY: deliberate misuse: every object freed once, then
                // one of the last again.
                unsafe {
                    for &p in &v {
                        GLOBAL.dealloc(p as *mut u8, l);
                    }
                    GLOBAL.dealloc(v[v.len() - 3] as *mut u8, l);
                }
            })
            .join()
            .unwrap();
        },
        "double free (the object is already in this thread's remote batch)",
    );
}

// Without `debug`, a free into a slab nobody owns goes onto the freeing
// thread's foreign list (`foreign.rs`); these cases check its guards.
#[test]
#[cfg(not(feature = "debug"))]
fn double_free_onto_a_foreign_list() {
    expect_abort_on_orphans(
        free_first_twice,
        "double free (the object is already on this thread's foreign list)",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn double_free_of_the_second_object_on_a_foreign_list() {
    expect_abort_on_orphans(
        free_first_around_second,
        "double free (the object is already on this thread's foreign list)",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn deeper_double_free_on_a_foreign_list_is_caught_at_the_loop() {
    expect_abort_on_orphans(
        |v, l| {
            // SAFETY: deliberate misuse: `v[0]` freed twice, two objects
            // between, which makes the list a loop; then more allocations
            // from the list than objects listed.
            unsafe {
                for i in [0, 1, 2, 0] {
                    GLOBAL.dealloc(v[i] as *mut u8, l);
                }
            }
            allocate_past_own_slab(l, 5);
        },
        "double free (this thread's foreign list loops back on itself)",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn corrupted_link_on_a_foreign_list() {
    expect_abort_on_orphans(
        |v, l| {
            // SAFETY: deliberate misuse: a write to the link of an object
            // on the foreign list, then allocations of its class: the list
            // hands that object out, then follows the forged link.
            unsafe {
                GLOBAL.dealloc(v[1] as *mut u8, l);
                GLOBAL.dealloc(v[0] as *mut u8, l);
                (v[0] as *mut usize).write(v[0] + 8);
            }
            allocate_past_own_slab(l, 2);
        },
        "free list corrupted",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn object_on_a_foreign_list_zeroed() {
    expect_abort_on_orphans(
        |v, l| {
            // SAFETY: deliberate misuse: a use-after-free memset of an
            // object on the foreign list (link and guard both zero).
            unsafe {
                GLOBAL.dealloc(v[1] as *mut u8, l);
                GLOBAL.dealloc(v[0] as *mut u8, l);
                (v[0] as *mut u8).write_bytes(0, l.size());
            }
            allocate_past_own_slab(l, 2);
        },
        "free list corrupted",
    );
}

#[test]
#[cfg(not(feature = "debug"))]
fn corrupted_link_on_a_foreign_list_of_8_byte_objects() {
    // The smallest class (one word an object): the check of a popped
    // object against its slab's descriptor is the same for every class.
    expect_abort_on_orphans_of(
        8,
        2048,
        |v, l| {
            // SAFETY: deliberate misuse: the forged link points into the
            // middle of an object.
            unsafe {
                GLOBAL.dealloc(v[4] as *mut u8, l);
                GLOBAL.dealloc(v[0] as *mut u8, l);
                let key = (v[0] as *const usize).read() ^ v[4];
                (v[0] as *mut usize).write((v[8] + 4) ^ key);
            }
            allocate_past_own_slab(l, 2);
        },
        "free list corrupted",
    );
}

/// A free with the layout of a smaller class than the allocation's, on a
/// thread that allocates that class: the free path takes the object by
/// its layout, without its slab's descriptor, onto the list of the wrong
/// class (the pointer lies where an object of that class could); the list
/// reports it when it would hand the object out.
#[test]
#[cfg(not(feature = "debug"))]
fn a_free_with_a_smaller_layout_is_caught_when_the_list_hands_it_out() {
    expect_abort_on_orphans(
        |v, _| {
            let small = layout(64);
            // SAFETY: a non-zero size; leaked. (The thread now allocates
            // the class of 64 bytes.)
            let _ = unsafe { GLOBAL.alloc(small) };
            // SAFETY: deliberate misuse: an object of 320 bytes freed with
            // the layout of 64 (its offset in its slab is a multiple of
            // 64, as an object of 64 bytes would be).
            unsafe { GLOBAL.dealloc(v[0] as *mut u8, small) };
            allocate_past_own_slab(small, 1);
        },
        "an object on a foreign list is no object of its class",
    );
}

// (The thread lists the class, so the free takes the layout path, whose
// arithmetic check finds the interior pointer at the free.)
#[test]
#[cfg(not(feature = "debug"))]
fn interior_pointer_into_a_slab_nobody_owns() {
    expect_abort_on_orphans(
        |v, l| {
            // SAFETY: deliberate misuse: 16 bytes into an object.
            unsafe { GLOBAL.dealloc((v[0] + 16) as *mut u8, l) };
        },
        "invalid free (not the start of an object)",
    );
}

/// A double free of an object of one of the thread's own slabs whose
/// first free goes onto the slab's free list (the descriptor path: the
/// layout path's bound is used up) and whose second goes onto the
/// thread's foreign list (the layout path, reopened by an allocation slow
/// path). Neither free sees the other list; the pop that would hand the
/// object out finds it at the head of its slab's free list too.
#[test]
#[cfg(not(feature = "debug"))]
fn a_double_free_split_between_a_slab_and_the_foreign_list_is_caught() {
    expect_abort(
        || {
            std::thread::spawn(|| {
                const N: usize = 4000;
                let (l, small) = (layout(64), layout(24));
                // SAFETY: non-zero sizes; the objects are leaked.
                let (v, w): (Vec<*mut u8>, Vec<*mut u8>) = (0..N)
                    .map(|_| unsafe { (GLOBAL.alloc(l), GLOBAL.alloc(small)) })
                    .unzip();
                // An object of a slab the thread has filled since, and
                // still owns (one of its kept slabs).
                let p = v[N - 300];
                // Frees outside the active slab of their class, which take
                // the layout path until its bound is used up.
                for &q in &w[..LAYOUT_PATH_BOUND] {
                    // SAFETY: each of these objects is live and freed once.
                    unsafe { GLOBAL.dealloc(q, small) };
                }
                // SAFETY: the first free of `p`: onto its slab's free list.
                unsafe { GLOBAL.dealloc(p, l) };
                // An allocation slow path (alignment 16) reopens the
                // layout path.
                // SAFETY: a non-zero size; leaked.
                let _ = unsafe { GLOBAL.alloc(Layout::from_size_align(64, 16).unwrap()) };
                // SAFETY: deliberate misuse: `p` freed again, onto the
                // thread's foreign list.
                unsafe { GLOBAL.dealloc(p, l) };
                allocate_past_own_slab(l, 1);
            })
            .join()
            .unwrap();
        },
        "double free (the object is on this thread's foreign list and on its slab's free list)",
    );
}

/// A second free of the object a thread's foreign list took last, which
/// the lists refuse (its slab is nearly empty by then): the refusal
/// checks the list's head, so the object does not go to its slab while
/// the list still holds it.
#[test]
#[cfg(not(feature = "debug"))]
fn a_refused_second_free_of_a_listed_object_is_caught() {
    expect_abort(
        || {
            // A class no other test of this file uses: the child inherits
            // the parent's heap, and a partial slab of the class left
            // there could be claimed below, with live objects that keep
            // it from being nearly empty.
            let (l, small) = (layout(640), layout(64));
            let (tx, rx) = std::sync::mpsc::channel();
            let (listed_tx, listed) = std::sync::mpsc::channel::<()>();
            let (emptied, emptied_rx) = std::sync::mpsc::channel::<()>();
            let owner = std::thread::spawn(move || {
                // SAFETY: non-zero sizes. Several slabs of 640-byte
                // objects, the last one this thread's active slab.
                let (v, w): (Vec<usize>, Vec<usize>) = unsafe {
                    (
                        (0..200).map(|_| GLOBAL.alloc(l) as usize).collect(),
                        (0..100).map(|_| GLOBAL.alloc(small) as usize).collect(),
                    )
                };
                tx.send((v.clone(), w)).unwrap();
                listed.recv().unwrap();
                // Free everything of the last slab but the object the
                // other thread holds: the slab is then nearly empty.
                for &p in &v[..199] {
                    // SAFETY: each is live and freed once, by its owner.
                    unsafe { GLOBAL.dealloc(p as *mut u8, l) };
                }
                emptied.send(()).unwrap();
                // Stays alive, owning the slab (the test ends in abort).
                std::thread::park();
            });
            let (v, w): (Vec<usize>, Vec<usize>) = rx.recv().unwrap();
            // SAFETY: non-zero sizes; leaked. This thread allocates both
            // classes, so its lists take objects of them.
            let _ = unsafe { (GLOBAL.alloc(l), GLOBAL.alloc(small)) };
            let x = v[199] as *mut u8;
            // SAFETY: the first free of `x`: listed, at its list's head.
            unsafe { GLOBAL.dealloc(x, l) };
            listed_tx.send(()).unwrap();
            emptied_rx.recv().unwrap();
            // Frees of another class use up the layout path's bound (which
            // would find `x` at the head itself), so the next free takes
            // the descriptor path.
            for &p in &w[..LAYOUT_PATH_BOUND + 8] {
                // SAFETY: each is live and freed once.
                unsafe { GLOBAL.dealloc(p as *mut u8, small) };
            }
            // SAFETY: deliberate misuse: `x` freed again, into a slab now
            // nearly empty, which the lists refuse.
            unsafe { GLOBAL.dealloc(x, l) };
            drop(owner);
        },
        "double free (the object is already on this thread's foreign list)",
    );
}

/// The frees outside the active slab that the layout path takes between
/// two allocation slow paths (`foreign::UNCHECKED_PER_ALLOCATION`).
#[cfg(not(feature = "debug"))]
const LAYOUT_PATH_BOUND: usize = 64;

/// Size of the remote-batch cases below: class 20480, slabs of three
/// objects, a remote chain of one object.
#[cfg(not(feature = "debug"))]
const ONE_PER_CHAIN: usize = 20_000;

/// Runs `second_thread` on a thread that frees objects of `n` objects of
/// `size` bytes, which a first thread allocated and keeps alive (it is
/// alive, so the frees go into the second thread's remote batch, or onto
/// its foreign lists if it allocates that class too).
#[cfg(not(feature = "debug"))]
fn free_on_another_thread(size: usize, n: usize, second_thread: fn(&[usize], Layout)) {
    let l = layout(size);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        // SAFETY: a non-zero size; the objects are freed by the other thread.
        let v: Vec<usize> = (0..n)
            .map(|_| unsafe { GLOBAL.alloc(l) } as usize)
            .collect();
        tx.send(v).unwrap();
        let _ = wait.recv(); // stays alive, owning the slabs
    });
    let v: Vec<usize> = rx.recv().unwrap();
    std::thread::spawn(move || second_thread(&v, l))
        .join()
        .unwrap();
    drop(done);
    owner.join().unwrap();
}

/// A second free of the object that makes a chain full (here a chain of
/// one object) is caught at the free, like one of a chain with room.
#[test]
#[cfg(not(feature = "debug"))]
fn double_free_of_a_full_chains_head() {
    expect_abort(
        || {
            free_on_another_thread(ONE_PER_CHAIN, 3, |v, l| {
                // SAFETY: deliberate misuse: the same object twice.
                unsafe {
                    GLOBAL.dealloc(v[0] as *mut u8, l);
                    GLOBAL.dealloc(v[0] as *mut u8, l);
                }
            })
        },
        "double free (the object is already in this thread's remote batch)",
    );
}

/// A second free of a free held back while the batch is bypassed (frees
/// of one object a slab, in a row), coming once the bypass is over: it
/// starts a new chain, which checks the frees held back.
#[test]
#[cfg(not(feature = "debug"))]
fn double_free_of_a_held_back_free_after_the_bypass() {
    expect_abort(
        || {
            // 300 slabs; one object of each is freed.
            free_on_another_thread(ONE_PER_CHAIN, 900, |v, l| {
                // Frees 1-16 make chains of one object; from the 17th the
                // batch is bypassed, and frees are held back, 256 of them;
                // the 273rd ends the bypass.
                let last = 273;
                for &p in v.iter().step_by(3).take(last) {
                    // SAFETY: each object is live and freed once.
                    unsafe { GLOBAL.dealloc(p as *mut u8, l) };
                }
                // SAFETY: deliberate misuse: the last one again.
                unsafe { GLOBAL.dealloc(v[3 * (last - 1)] as *mut u8, l) };
            })
        },
        "double free (the object is already in this thread's remote batch)",
    );
}

/// A double free three objects deep in a remote chain: the push cannot
/// see it, but the slab's counts can (more objects on its remote stack
/// than it has out), and report it rather than wrap.
#[test]
#[cfg(not(feature = "debug"))]
fn a_deep_double_free_in_a_chain_is_caught_by_the_slabs_counts() {
    expect_abort(
        || {
            // Class 1920: slabs of 8 objects. The owner keeps 3 of one
            // slab and exits: the slab is detached with 3 objects out.
            let l = layout(1900);
            let keep: Vec<usize> = std::thread::spawn(move || {
                // SAFETY: a non-zero size.
                let v: Vec<usize> = (0..8)
                    .map(|_| unsafe { GLOBAL.alloc(l) } as usize)
                    .collect();
                let slab = |p: usize| p >> 14;
                let keep: Vec<usize> = v
                    .iter()
                    .copied()
                    .filter(|&p| slab(p) == slab(v[0]))
                    .take(3)
                    .collect();
                for &p in v.iter().filter(|p| !keep.contains(p)) {
                    // SAFETY: each object is live and freed once.
                    unsafe { GLOBAL.dealloc(p as *mut u8, l) };
                }
                keep
            })
            .join()
            .unwrap();
            std::thread::spawn(move || {
                let (p, x, y) = (keep[0] as *mut u8, keep[1] as *mut u8, keep[2] as *mut u8);
                // SAFETY: deliberate misuse: `p` freed twice, three
                // objects apart, into one chain.
                unsafe {
                    GLOBAL.dealloc(p, l);
                    GLOBAL.dealloc(y, l);
                    GLOBAL.dealloc(x, l);
                    GLOBAL.dealloc(p, l);
                }
                lifeboat::flush_thread_cache();
                // A claim of the slab collects what the flush pushed.
                // SAFETY: a non-zero size; leaked.
                let _ = unsafe { GLOBAL.alloc(l) };
            })
            .join()
            .unwrap();
        },
        "double free (a slab's remote frees outnumber its allocated objects)",
    );
}
