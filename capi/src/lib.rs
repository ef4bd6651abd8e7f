//! The C ABI of lifeboat: `malloc`, `free`, `calloc`, `realloc` and the
//! rest of glibc's allocation interface, built as a shared library for
//! `LD_PRELOAD`:
//!
//! ```sh
//! LD_PRELOAD=target/release/liblifeboat_capi.so python3 script.py
//! ```
//!
//! Every function serves the process heap of [`lifeboat::Lifeboat`] (its
//! budget comes from `LIFEBOAT_BUDGET` when the heap is created by the
//! first allocation). Nothing here allocates, panics or unwinds: sizes are
//! checked with `checked_*` arithmetic and [`Layout::from_size_align`], and
//! errors are reported through `errno` as glibc does.
//!
//! # Semantics (glibc's, with the choices made where glibc has options)
//!
//! * **Alignment.** Requests of 16 bytes or more are aligned to 16
//!   (`alignof(max_align_t)`), smaller ones to 8, as glibc does on x86-64.
//! * **`malloc(0)`** returns a unique, non-null pointer (a 1-byte request);
//!   so do `calloc` with a zero count or size, `realloc(NULL, 0)`, the
//!   aligned allocators with size 0, and `pvalloc(0)` (one page).
//! * **`free(NULL)`** does nothing; `free` keeps `errno` unchanged (glibc
//!   2.33 and POSIX.1-2024).
//! * **`realloc(p, 0)`** with non-null `p` frees `p` and returns `NULL`
//!   without touching `errno`: glibc's behaviour (`REALLOC_ZERO_BYTES_FREES`),
//!   and so does `reallocarray(p, 0, m)`. `realloc(NULL, n)` is `malloc(n)`.
//!   On failure `realloc` returns `NULL`, sets `ENOMEM`, and `p` stays valid.
//! * **Overflow** of `n * m` in `calloc` / `reallocarray` returns `NULL` with
//!   `ENOMEM`; so does any size too large for a `Layout`.
//! * **`posix_memalign`** returns `EINVAL` unless the alignment is a power
//!   of two and a multiple of `sizeof(void *)`, `ENOMEM` on failure, leaves
//!   `*memptr` untouched on error, and never changes `errno`.
//! * **`aligned_alloc`** with an alignment that is zero or not a power of
//!   two returns `NULL` with `EINVAL` (C17; glibc since 2.38).
//! * **`memalign`** follows glibc exactly: an alignment up to 16 is plain
//!   `malloc`, one that is not a power of two is rounded up to the next one,
//!   and only an alignment above `SIZE_MAX / 2 + 1` is `EINVAL`.
//! * **`valloc`** aligns to the system page size; **`pvalloc`** also rounds
//!   the size up to a whole page (`ENOMEM` if that overflows).
//! * Every other failure returns `NULL` with `errno = ENOMEM`; a success
//!   leaves `errno` as it was (the heap's creation and a contended lock make
//!   system calls that may fail harmlessly).
//!
//! # Foreign pointers
//!
//! A process running under `LD_PRELOAD` may hand `free` / `realloc` a block
//! that lifeboat never made: the dynamic loader allocates with its own
//! minimal bump allocator before the real `malloc` is bound, and may pass
//! those blocks on later. Such a pointer is recognised with
//! [`lifeboat::owns`] and handled without touching it as a heap block:
//!
//! * `free` ignores it: the block is **leaked** (the loader's blocks are
//!   few, small and long-lived; there is no allocator left to give them
//!   back to).
//! * `malloc_usable_size` answers 0 for it: nothing beyond what the caller
//!   asked for may be assumed.
//! * `realloc` allocates a new block of `n` bytes and copies into it the
//!   first `n` bytes of the old one **that are readable**, then leaks the old
//!   block. The old block's size is unknown, and glibc's own
//!   `malloc_usable_size` (found with `dlsym(RTLD_NEXT, ...)`) cannot tell
//!   it: it decodes a glibc chunk header in front of the pointer and the
//!   size field of the chunk after it, and the loader's minimal allocator
//!   writes no headers, so it would read garbage — possibly a size that
//!   sends it, or the copy, into unmapped memory. Under `LD_PRELOAD` glibc's
//!   `malloc` serves no one, so no foreign block is a glibc chunk. Copying
//!   `n` bytes blindly is not safe either: the old block may end just
//!   before an unmapped page. So the copy goes through
//!   `process_vm_readv(2)` on our own process, split at page boundaries,
//!   which stops at the first unreadable page instead of faulting. Bytes
//!   copied from past the old block's end are harmless: `realloc` leaves the
//!   contents beyond the old size unspecified. If `process_vm_readv` is not
//!   available (seccomp), only the rest of the old block's first page is
//!   copied, after `mincore(2)` confirms that page is mapped.
//!
//! [`lifeboat_capi_foreign_frees`] and [`lifeboat_capi_foreign_reallocs`]
//! count these events (and tell a program that lifeboat is loaded).
//!
//! # Thread-local storage
//!
//! lifeboat's thread caches are Rust `thread_local!`s. In this shared
//! library they use the general-dynamic TLS model (stable Rust has no way to
//! ask for initial-exec), so every cache access calls `__tls_get_addr`.
//! Preloaded, the library's TLS block is static (allocated with each
//! thread), so `__tls_get_addr` normally allocates nothing. After `dlopen`
//! of modules with TLS, though, a thread's next TLS access brings its dtv
//! up to date, and glibc reallocates the dtv with the interposed `realloc`:
//! lifeboat is re-entered from inside its own TLS access. Recent glibc
//! supports this (a guard added upstream in 2024 and backported, e.g. to
//! Debian 12's 2.36-9+deb12u14): the nested access to an initially loaded
//! module is served from the stale dtv without a second update. A glibc
//! without that guard (glibc 2.39's release notes warn of exactly this)
//! updates again, reallocates again, and recurses until the stack
//! overflows. glibc's advice is initial-exec TLS for interposed mallocs;
//! `ci/preload.sh` checks the case (`tls-dlopen`).
//!
//! # Exported only outside tests
//!
//! The exports carry `#[no_mangle]` only when not compiling unit tests, so
//! the test harness keeps its own allocator and calls these functions as
//! ordinary Rust functions.

#![deny(unsafe_op_in_unsafe_fn)]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use lifeboat::Lifeboat;

/// The allocator: every `Lifeboat` value shares the one process heap.
static HEAP: Lifeboat = Lifeboat::new();

/// `alignof(max_align_t)` on the 64-bit Linux targets.
const MAX_ALIGN: usize = 16;

/// Foreign blocks passed to `free` (ignored) and `realloc` (copied, leaked).
static FOREIGN_FREES: AtomicUsize = AtomicUsize::new(0);
static FOREIGN_REALLOCS: AtomicUsize = AtomicUsize::new(0);

/// The system page size, read once (0 = not read yet).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

#[inline]
fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

fn page_size() -> usize {
    let p = PAGE_SIZE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let s = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let s = if s > 0 && (s as usize).is_power_of_two() {
        s as usize
    } else {
        lifeboat::PAGE_SIZE
    };
    PAGE_SIZE.store(s, Ordering::Relaxed);
    s
}

/// The alignment C expects of `malloc(size)`: 16 from 16 bytes up, else 8
/// (an object smaller than 16 bytes cannot need more than 8).
#[inline]
fn natural_align(size: usize) -> usize {
    if size >= MAX_ALIGN {
        MAX_ALIGN
    } else {
        8
    }
}

/// Allocates `size` bytes (0 counts as 1) at `align` (a power of two);
/// sets `ENOMEM` and returns null on failure.
#[inline]
fn alloc_block(size: usize, align: usize, zero: bool) -> *mut c_void {
    // lifeboat promises 16-byte alignment for every block whose size is a
    // multiple of 16 (`lifeboat::Lifeboat` docs); asking for align 8 with
    // the size rounded up keeps C's 16-byte requests on its fast path.
    let (size, align) = if align == MAX_ALIGN {
        match size.max(1).checked_add(MAX_ALIGN - 1) {
            Some(s) => (s & !(MAX_ALIGN - 1), 8),
            None => (size, align),
        }
    } else {
        (size, align)
    };
    let Ok(layout) = Layout::from_size_align(size.max(1), align) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let saved = errno();
    // SAFETY: the layout has a non-zero size.
    let p = unsafe {
        if zero {
            HEAP.alloc_zeroed(layout)
        } else {
            HEAP.alloc(layout)
        }
    };
    // Success leaves errno as it was, whatever system calls the allocator
    // made (the heap's creation reads files that may be missing; a
    // contended lock's futex wait may fail with EAGAIN).
    set_errno(if p.is_null() { libc::ENOMEM } else { saved });
    p.cast()
}

/// Allocates `size` bytes at `align` (a power of two), at least at the
/// natural alignment of `size`.
#[inline]
fn alloc_aligned(align: usize, size: usize) -> *mut c_void {
    alloc_block(size, align.max(natural_align(size)), false)
}

/// Allocates `size` bytes (glibc's `malloc`).
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc_block(size, natural_align(size), false)
}

/// Frees a block from any function of this library; null does nothing; a
/// foreign block is ignored (leaked). `errno` is preserved.
///
/// # Safety
/// `p` is null, or a live block from this library (or a foreign block, see
/// the crate docs), not used afterwards.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let p = p.cast::<u8>();
    if !lifeboat::owns(p) {
        FOREIGN_FREES.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let saved = errno();
    // SAFETY: `p` is a live block of the process heap (caller, and `owns`).
    unsafe { lifeboat::free_without_layout(p) };
    set_errno(saved);
}

/// The pre-C23 alias of [`free`].
///
/// # Safety
/// As for [`free`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

/// Allocates `n * size` zeroed bytes; `ENOMEM` if the product overflows.
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    alloc_block(total, natural_align(total), true)
}

/// Resizes a block (see the crate docs for `realloc(p, 0)` and foreign
/// blocks).
///
/// # Safety
/// `p` is null, or a live block from this library (or a foreign block);
/// on success it must not be used afterwards.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc_block(size, natural_align(size), false);
    }
    if size == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let old = p.cast::<u8>();
    if !lifeboat::owns(old) {
        // SAFETY: forwarded from the caller.
        return unsafe { realloc_foreign(old, size) };
    }
    let align = natural_align(size);
    if Layout::from_size_align(size, align).is_err() {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    // The copy on a move is bounded by the old layout's size: give it the
    // whole usable size. A pointer inside the arena that is no live block
    // gets size 0, and lifeboat's free then reports it.
    let old_size = lifeboat::usable_size(old).unwrap_or(0);
    let Ok(old_layout) = Layout::from_size_align(old_size, align) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let saved = errno();
    // SAFETY: `old` is a live block of the process heap whose usable size is
    // `old_size` (the size of its class, for a small object, so the layout
    // names the class the block is of); the alignment only chooses the new
    // block's; `size` is non-zero and fits a layout at `align`.
    let q = unsafe { HEAP.realloc(old, old_layout, size) };
    set_errno(if q.is_null() { libc::ENOMEM } else { saved });
    q.cast()
}

/// `realloc` of a block lifeboat did not make: a new block with as much of
/// the old contents as can be read safely; the old block is leaked.
///
/// # Safety
/// `old` is a live block of another allocator.
#[cold]
unsafe fn realloc_foreign(old: *const u8, size: usize) -> *mut c_void {
    FOREIGN_REALLOCS.fetch_add(1, Ordering::Relaxed);
    let q = alloc_block(size, natural_align(size), false);
    if q.is_null() {
        return q;
    }
    let saved = errno();
    // SAFETY: `q` holds `size` bytes; `old` is a live foreign block.
    unsafe { copy_readable(old, q.cast(), size) };
    set_errno(saved);
    q
}

/// Copies up to `len` bytes from `src` to `dst`, stopping at the first page
/// of `src` that cannot be read; returns the bytes copied.
///
/// # Safety
/// `dst` is writable for `len` bytes and does not overlap `src`; `src` is
/// a pointer into a live block.
unsafe fn copy_readable(src: *const u8, dst: *mut u8, len: usize) -> usize {
    const IOVS: usize = 64;
    let page = page_size();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut done = 0usize;
    while done < len {
        let mut remote = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; IOVS];
        let mut n = 0;
        let mut want = 0usize;
        while n < IOVS && done + want < len {
            let addr = (src as usize).wrapping_add(done + want);
            let chunk = (page - addr % page).min(len - done - want);
            remote[n] = libc::iovec {
                iov_base: addr as *mut c_void,
                iov_len: chunk,
            };
            n += 1;
            want += chunk;
        }
        let local = libc::iovec {
            // SAFETY: done < len, inside `dst`.
            iov_base: unsafe { dst.add(done) }.cast(),
            iov_len: want,
        };
        // SAFETY: the local range lies in `dst`; the remote ranges are only
        // read by the kernel, which reports unreadable ones as EFAULT
        // instead of faulting; n <= IOVS entries are initialised.
        let r = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), n as _, 0) };
        if r < 0 {
            let e = errno();
            if done == 0 && e != libc::EFAULT {
                // SAFETY: forwarded from the caller.
                return unsafe { copy_first_page(src, dst, len, page) };
            }
            break;
        }
        let r = r as usize;
        done += r;
        if r < want {
            break;
        }
    }
    done
}

/// The fallback of [`copy_readable`] without `process_vm_readv`: copies
/// the rest of `src`'s page if `mincore` finds that page mapped.
///
/// # Safety
/// As for [`copy_readable`].
unsafe fn copy_first_page(src: *const u8, dst: *mut u8, len: usize, page: usize) -> usize {
    let start = src as usize & !(page - 1);
    let mut vec = [0u8; 1];
    // SAFETY: mincore only inspects the mapping of one page-aligned page and
    // writes one byte into `vec`.
    let mapped = unsafe { libc::mincore(start as *mut c_void, page, vec.as_mut_ptr()) } == 0;
    if !mapped {
        return 0;
    }
    let n = (start + page - src as usize).min(len);
    // SAFETY: `src`'s page is mapped and belongs to a live block, so its
    // rest is readable; `dst` holds `len >= n` bytes and does not overlap.
    unsafe { ptr::copy_nonoverlapping(src, dst, n) };
    n
}

/// `realloc(p, n * size)`, with `ENOMEM` if the product overflows.
///
/// # Safety
/// As for [`realloc`].
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: forwarded from the caller.
    unsafe { realloc(p, total) }
}

/// Stores in `*memptr` a block of `size` bytes aligned to `align`. Returns
/// 0, `EINVAL` (bad alignment) or `ENOMEM`; never changes `errno`.
///
/// # Safety
/// `memptr` is valid for a pointer-sized write.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = alloc_aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable `memptr`.
    unsafe { *memptr = p };
    0
}

/// C11 `aligned_alloc`: `EINVAL` unless `align` is a power of two.
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc_aligned(align, size)
}

/// glibc's `memalign`: small alignments are `malloc`, others are rounded up
/// to a power of two; `EINVAL` above `SIZE_MAX / 2 + 1`.
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if align <= MAX_ALIGN {
        return alloc_block(size, natural_align(size), false);
    }
    let Some(align) = align.checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    alloc_aligned(align, size)
}

/// `memalign(page size, size)`.
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_aligned(page_size(), size)
}

/// `valloc` of `size` rounded up to whole pages (one page for 0).
///
/// # Safety
/// Always safe to call; unsafe only to match the C declaration.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(rounded) = size.checked_next_multiple_of(page) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    alloc_aligned(page, rounded.max(page))
}

/// The usable size of a block of this library; 0 for null and for foreign
/// blocks.
///
/// # Safety
/// `p` is null or a live block.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    lifeboat::usable_size(p.cast::<u8>()).unwrap_or(0)
}

/// How many foreign blocks `free` has ignored (leaked).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn lifeboat_capi_foreign_frees() -> usize {
    FOREIGN_FREES.load(Ordering::Relaxed)
}

/// How many foreign blocks `realloc` has moved into lifeboat (and leaked).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn lifeboat_capi_foreign_reallocs() -> usize {
    FOREIGN_REALLOCS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
