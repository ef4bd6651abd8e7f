//! Unit tests: the exports called as Rust functions (the test harness keeps
//! the system allocator, whose blocks serve as foreign blocks).

use super::*;

fn aligned(p: *mut c_void, a: usize) -> bool {
    (p as usize).is_multiple_of(a)
}

/// Fills `n` bytes at `p` with a pattern derived from `seed`.
///
/// # Safety
/// `p` is writable for `n` bytes.
unsafe fn fill(p: *mut c_void, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: in bounds (caller).
        unsafe { *p.cast::<u8>().add(i) = seed.wrapping_add(i as u8) };
    }
}

/// Whether `n` bytes at `p` hold the pattern of [`fill`].
///
/// # Safety
/// `p` is readable for `n` bytes.
unsafe fn check(p: *const c_void, n: usize, seed: u8) -> bool {
    // SAFETY: in bounds (caller).
    (0..n).all(|i| unsafe { *p.cast::<u8>().add(i) } == seed.wrapping_add(i as u8))
}

#[test]
fn malloc_zero_is_unique_and_freeable() {
    // SAFETY: blocks are freed once.
    unsafe {
        let a = malloc(0);
        let b = malloc(0);
        assert!(!a.is_null() && !b.is_null());
        assert_ne!(a, b);
        assert!(malloc_usable_size(a) >= 1);
        free(a);
        free(b);
        free(ptr::null_mut());
    }
}

#[test]
fn natural_alignment_is_16_from_16_bytes() {
    for size in [
        1usize,
        7,
        8,
        9,
        15,
        16,
        17,
        24,
        40,
        100,
        1000,
        5000,
        40000,
        1 << 22,
        5 << 20,
    ] {
        // SAFETY: the block is written within its size and freed once.
        unsafe {
            let p = malloc(size);
            assert!(!p.is_null());
            assert!(aligned(p, natural_align(size)), "size {size}: {p:p}");
            assert!(malloc_usable_size(p) >= size);
            fill(p, size, 3);
            assert!(check(p, size, 3));
            free(p);
        }
    }
}

#[test]
fn calloc_zeroes_and_detects_overflow() {
    // SAFETY: blocks are read within their size and freed once.
    unsafe {
        for (n, s) in [
            (1usize, 1usize),
            (10, 10),
            (3, 1000),
            (1, 100_000),
            (4, 2 << 20),
        ] {
            let p = malloc(n * s);
            fill(p, n * s, 0xaa);
            free(p);
            let q = calloc(n, s);
            assert!(!q.is_null());
            assert!((0..n * s).all(|i| *q.cast::<u8>().add(i) == 0));
            free(q);
        }
        set_errno(0);
        assert!(calloc(usize::MAX / 2, 3).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        let z = calloc(0, 8);
        assert!(!z.is_null());
        free(z);
    }
}

#[test]
fn realloc_keeps_contents_across_classes() {
    // SAFETY: every access is within the current block's size.
    unsafe {
        let mut p = realloc(ptr::null_mut(), 5);
        assert!(!p.is_null());
        fill(p, 5, 7);
        let mut kept = 5;
        for size in [
            8usize,
            16,
            17,
            100,
            1024,
            1025,
            4096,
            32768,
            40000,
            1 << 20,
            5 << 20,
            9 << 20,
            3000,
            12,
            1,
        ] {
            let q = realloc(p, size);
            assert!(!q.is_null(), "realloc to {size}");
            assert!(aligned(q, natural_align(size)));
            kept = kept.min(size);
            assert!(check(q, kept, 7), "contents lost at {size}");
            fill(q, size, 7);
            kept = size;
            p = q;
        }
        set_errno(0);
        assert!(realloc(p, 0).is_null());
        assert_eq!(errno(), 0, "realloc(p, 0) frees without an error");
    }
}

#[test]
fn realloc_failure_keeps_the_block() {
    // SAFETY: the block stays live after the failed realloc and is freed once.
    unsafe {
        let p = malloc(64);
        fill(p, 64, 1);
        set_errno(0);
        assert!(realloc(p, usize::MAX - 4096).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        assert!(check(p, 64, 1));
        set_errno(0);
        assert!(reallocarray(p, usize::MAX / 2, 4).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        assert!(check(p, 64, 1));
        let q = reallocarray(p, 16, 16);
        assert!(check(q, 64, 1));
        assert!(reallocarray(q, 0, 16).is_null());
    }
}

#[test]
fn posix_memalign_validates_and_keeps_errno() {
    // SAFETY: `out` is a valid slot; blocks are freed once.
    unsafe {
        let mut out: *mut c_void = 0x1234 as *mut c_void;
        for bad in [0usize, 1, 2, 4, 12, 24, 48, 4095] {
            assert_eq!(
                posix_memalign(&mut out, bad, 8),
                libc::EINVAL,
                "align {bad}"
            );
            assert_eq!(out, 0x1234 as *mut c_void);
        }
        set_errno(12345);
        assert_eq!(posix_memalign(&mut out, 64, usize::MAX - 10), libc::ENOMEM);
        assert_eq!(errno(), 12345);
        assert_eq!(out, 0x1234 as *mut c_void);
        for shift in 3..=23 {
            let a = 1usize << shift;
            for size in [0usize, 1, 100, 5000] {
                assert_eq!(posix_memalign(&mut out, a, size), 0);
                assert!(aligned(out, a), "align {a} size {size}");
                fill(out, size, 9);
                free(out);
            }
        }
    }
}

#[test]
fn aligned_alloc_memalign_valloc_pvalloc() {
    // SAFETY: blocks are written within their size and freed once.
    unsafe {
        set_errno(0);
        assert!(aligned_alloc(0, 16).is_null());
        assert_eq!(errno(), libc::EINVAL);
        set_errno(0);
        assert!(aligned_alloc(24, 48).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let p = aligned_alloc(256, 10);
        assert!(aligned(p, 256));
        free(p);

        let m = memalign(24, 10);
        assert!(aligned(m, 32), "rounded up to a power of two");
        free(m);
        let m = memalign(0, 10);
        assert!(!m.is_null());
        free(m);
        set_errno(0);
        assert!(memalign(usize::MAX / 2 + 2, 1).is_null());
        assert_eq!(errno(), libc::EINVAL);
        set_errno(0);
        assert!(memalign(1 << 20, usize::MAX - 100).is_null());
        assert_eq!(errno(), libc::ENOMEM);

        let page = page_size();
        let v = valloc(1);
        assert!(aligned(v, page));
        free(v);
        let v = pvalloc(0);
        assert!(aligned(v, page));
        assert!(malloc_usable_size(v) >= page);
        free(v);
        let v = pvalloc(page + 1);
        assert!(malloc_usable_size(v) >= 2 * page);
        fill(v, 2 * page, 4);
        free(v);
        set_errno(0);
        assert!(pvalloc(usize::MAX - 10).is_null());
        assert_eq!(errno(), libc::ENOMEM);
    }
}

#[test]
fn foreign_blocks_are_leaked_and_copied() {
    // SAFETY: the foreign block comes from the system allocator and is
    // handed over once; lifeboat's blocks are freed once.
    unsafe {
        let f = libc::malloc(100);
        assert!(!lifeboat::owns(f.cast()));
        fill(f, 100, 5);
        let frees = lifeboat_capi_foreign_frees();
        let reallocs = lifeboat_capi_foreign_reallocs();
        assert_eq!(malloc_usable_size(f), 0);
        let q = realloc(f, 200);
        assert!(lifeboat::owns(q.cast()));
        assert!(check(q, 100, 5));
        assert!(lifeboat_capi_foreign_reallocs() > reallocs);
        free(q);
        let g = libc::malloc(10);
        free(g);
        assert!(lifeboat_capi_foreign_frees() > frees);
        libc::free(g);
        libc::free(f);
    }
}

#[test]
fn copy_stops_at_an_unreadable_page() {
    let page = page_size();
    // SAFETY: two fresh pages; the second is made unreadable; every copy
    // lands in `dst`, which is large enough.
    unsafe {
        let m = libc::mmap(
            ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(m, libc::MAP_FAILED);
        assert_eq!(
            libc::mprotect(m.cast::<u8>().add(page).cast(), page, libc::PROT_NONE),
            0
        );
        let src = m.cast::<u8>().add(page - 40);
        fill(src.cast(), 40, 11);
        let mut dst = vec![0u8; 3 * page];
        let n = copy_readable(src, dst.as_mut_ptr(), dst.len());
        assert_eq!(n, 40);
        assert!(check(dst.as_ptr().cast(), 40, 11));
        let n = copy_readable(m.cast(), dst.as_mut_ptr(), 300 * page.min(dst.len() / 300));
        assert!(n > 0);
        dst.fill(0);
        assert_eq!(copy_first_page(src, dst.as_mut_ptr(), dst.len(), page), 40);
        assert!(check(dst.as_ptr().cast(), 40, 11));
        libc::munmap(m, 2 * page);
        assert_eq!(copy_first_page(src, dst.as_mut_ptr(), dst.len(), page), 0);
    }
}

#[test]
fn threads_free_each_others_blocks() {
    let blocks: Vec<usize> = std::thread::spawn(|| {
        // SAFETY: the blocks are handed to the main thread, which frees them.
        (0..2000usize)
            .map(|i| unsafe {
                let p = malloc(i % 3000 + 1);
                fill(p, i % 3000 + 1, i as u8);
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: each block is live, of the filled size, and freed once.
        unsafe {
            assert!(check(p as *const c_void, i % 3000 + 1, i as u8));
            free(p as *mut c_void);
        }
    }
}
