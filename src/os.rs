//! The page source: the only file that maps, trims, purges and unmaps memory,
//! and reads the machine's limits.
//!
//! * [`reserve`] maps a range with `MAP_NORESERVE`: nothing is committed, pages
//!   fault in on first touch, so RSS follows use and not the budget.
//! * [`purge`] gives pages back with `MADV_DONTNEED`; they read as zero after.
//! * Alignment above the page size is made by over-mapping and trimming the
//!   excess with `munmap`, so no mapping keeps unused address space.
//! * [`default_budget`] reads `LIFEBOAT_BUDGET`, the cgroup v2 `memory.max`,
//!   and physical memory, all with stack buffers and raw syscalls: it runs
//!   inside the first `malloc` of the process and must not allocate.
//! * Under Miri (`ci/miri.sh`), `os/miri.rs` stands in for the kernel:
//!   the interpreter's own heap, no advice, no `mremap`, no `mincore`.

#[cfg(miri)]
mod miri;
// Under Miri these three come from the stand-in, with the same contracts.
#[cfg(miri)]
pub(crate) use miri::{advise_huge_pages, purge, release};

pub(crate) const PAGE_SHIFT: usize = 12;
pub(crate) const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// Maps `bytes` (a multiple of the page size) aligned to `align` (a power of
/// two, at least the page size), readable and writable, not committed.
pub(crate) fn reserve(bytes: usize, align: usize) -> Option<*mut u8> {
    if crate::fault::hit(crate::fault::FailPoint::OsReserve) {
        return None;
    }
    #[cfg(miri)]
    return miri::reserve(bytes, align);
    #[cfg(not(miri))]
    reserve_mapped(bytes, align)
}

/// [`reserve`] from the kernel.
#[cfg(not(miri))]
fn reserve_mapped(bytes: usize, align: usize) -> Option<*mut u8> {
    let over = bytes.checked_add(align.saturating_sub(PAGE_SIZE))?;
    // SAFETY: an anonymous private mapping with a null hint has no
    // preconditions; failure is reported as MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let start = p as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = over - head - bytes;
    // SAFETY: both ranges lie inside the mapping just made and are page-aligned
    // (start, aligned and bytes are page multiples).
    unsafe {
        if head != 0 {
            libc::munmap(p, head);
        }
        if tail != 0 {
            libc::munmap((aligned + bytes) as *mut libc::c_void, tail);
        }
    }
    Some(aligned as *mut u8)
}

/// Alignment of a transparent huge page on x86-64 and aarch64 (4 KiB
/// base pages).
pub(crate) const HUGE_PAGE_SIZE: usize = 2 << 20;
/// The buddy order of a huge page (`HUGE_PAGE_SIZE` in pages).
pub(crate) const HUGE_PAGE_ORDER: usize = (HUGE_PAGE_SIZE >> PAGE_SHIFT).trailing_zeros() as usize;

/// Asks for transparent huge pages on `[p, p + bytes)`. Advice only: a
/// kernel without THP refuses it, and the range works the same.
///
/// # Safety
/// `[p, p + bytes)` is a range returned by [`reserve`] (or a page-aligned
/// part of one).
#[cfg(not(miri))]
pub(crate) unsafe fn advise_huge_pages(p: *mut u8, bytes: usize) {
    // SAFETY: guaranteed by the caller; the advice changes no contents.
    unsafe { libc::madvise(p.cast(), bytes, libc::MADV_HUGEPAGE) };
}

/// Unmaps a range made by [`reserve`].
///
/// # Safety
/// `[p, p + bytes)` is a whole range returned by [`reserve`] (or a page-aligned
/// part of one) that nothing uses any more.
#[cfg(not(miri))]
pub(crate) unsafe fn release(p: *mut u8, bytes: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(p.cast(), bytes) };
}

/// Returns the physical pages of a range to the OS; it reads as zero after.
///
/// # Safety
/// `[p, p + bytes)` is page-aligned, inside a live mapping, and holds no live
/// data.
#[cfg(not(miri))]
pub(crate) unsafe fn purge(p: *mut u8, bytes: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::madvise(p.cast(), bytes, libc::MADV_DONTNEED) };
}

/// Grows or shrinks a direct mapping, moving it if needed.
///
/// # Safety
/// `[p, p + old)` is a whole live mapping made by [`reserve`].
pub(crate) unsafe fn remap(p: *mut u8, old: usize, new: usize) -> Option<*mut u8> {
    if cfg!(miri) || crate::fault::hit(crate::fault::FailPoint::OsRemap) {
        // (Under Miri a remap fails, and the caller moves the block.)
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        None
    } else {
        Some(q.cast())
    }
}

/// Counts the resident pages of `[p, p + npages * PAGE_SIZE)` with `mincore`.
pub(crate) fn resident_pages(p: *const u8, npages: usize) -> usize {
    if cfg!(miri) {
        // (No `mincore` under Miri: nothing is counted.)
        return 0;
    }
    const CHUNK: usize = 4096;
    let mut vec = [0u8; CHUNK];
    let mut done = 0;
    let mut resident = 0;
    while done < npages {
        let n = (npages - done).min(CHUNK);
        let addr = p.wrapping_add(done << PAGE_SHIFT);
        // SAFETY: the range is page-aligned and mapped (the caller passes a
        // range of a live mapping); `vec` has room for `n` entries.
        let rc =
            unsafe { libc::mincore(addr as *mut libc::c_void, n << PAGE_SHIFT, vec.as_mut_ptr()) };
        if rc == 0 {
            resident += vec[..n].iter().filter(|&&b| b & 1 != 0).count();
        }
        done += n;
    }
    resident
}

/// Physical memory in bytes.
pub(crate) fn physical_memory() -> usize {
    if cfg!(miri) {
        // (Miri has no `_SC_PHYS_PAGES`.)
        return 1 << 30;
    }
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || size <= 0 {
        return 1 << 30;
    }
    (pages as usize).saturating_mul(size as usize)
}

/// The budget of the process heap when the configuration names none:
/// `LIFEBOAT_BUDGET`, else the cgroup v2 `memory.max`, else physical memory.
pub(crate) fn default_budget() -> usize {
    if let Some(b) = env_budget() {
        return b;
    }
    let ram = physical_memory();
    match cgroup_limit() {
        Some(l) if l < ram => l,
        _ => ram,
    }
}

/// Parses `LIFEBOAT_BUDGET` (bytes, optional K/M/G suffix) without allocating.
pub(crate) fn env_budget() -> Option<usize> {
    // SAFETY: getenv takes a NUL-terminated name and returns a pointer into
    // the environment or null; we only read until the NUL.
    let p = unsafe { libc::getenv(c"LIFEBOAT_BUDGET".as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    parse_size(s.to_bytes())
}

/// Parses `123`, `64K`, `512M`, `2G` (case-insensitive, optional `B`/`iB`).
pub(crate) fn parse_size(s: &[u8]) -> Option<usize> {
    let s = trim(s);
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: usize = 0;
    for &b in &s[..digits] {
        v = v.checked_mul(10)?.checked_add((b - b'0') as usize)?;
    }
    let shift = match trim(&s[digits..]) {
        b"" | b"b" | b"B" => 0,
        b"k" | b"K" | b"kb" | b"KB" | b"KiB" | b"kib" => 10,
        b"m" | b"M" | b"mb" | b"MB" | b"MiB" | b"mib" => 20,
        b"g" | b"G" | b"gb" | b"GB" | b"GiB" | b"gib" => 30,
        b"t" | b"T" | b"tb" | b"TB" | b"TiB" | b"tib" => 40,
        _ => return None,
    };
    v.checked_mul(1usize << shift)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Reads a small file into `buf`, returning the bytes read.
fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: writes at most `buf.len() - len` bytes into `buf[len..]`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: fd is an open descriptor we own.
    unsafe { libc::close(fd) };
    Some(len)
}

/// The cgroup v2 `memory.max` of this process, if it is set to a number.
pub(crate) fn cgroup_limit() -> Option<usize> {
    if cfg!(miri) {
        // (Miri's isolation hides the file system.)
        return None;
    }
    let mut cg = [0u8; 512];
    let n = read_file(c"/proc/self/cgroup", &mut cg)?;
    // cgroup v2: a line "0::/path"
    let line_start = find(&cg[..n], b"0::")? + 3;
    let rest = &cg[line_start..n];
    let line_len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let rel = &rest[..line_len];
    let mut path = [0u8; 640];
    let mut len = 0;
    for part in [
        b"/sys/fs/cgroup".as_slice(),
        rel,
        b"/memory.max\0".as_slice(),
    ] {
        for &b in part {
            if len >= path.len() - 1 {
                return None;
            }
            if !(b == b'/' && len > 0 && path[len - 1] == b'/') {
                path[len] = b;
                len += 1;
            }
        }
    }
    let cpath = core::ffi::CStr::from_bytes_until_nul(&path[..len]).ok()?;
    let mut val = [0u8; 64];
    let m = read_file(cpath, &mut val)?;
    parse_size(&val[..m])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_suffixes() {
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"64K"), Some(64 << 10));
        assert_eq!(parse_size(b" 512m\n"), Some(512 << 20));
        assert_eq!(parse_size(b"2GiB"), Some(2 << 30));
        assert_eq!(parse_size(b"max\n"), None);
        assert_eq!(parse_size(b"12Q"), None);
        assert_eq!(parse_size(b"99999999999999999999999"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri has no mincore or madvise")]
    fn reserve_aligns_and_trims() {
        let p = reserve(8 * PAGE_SIZE, 1 << 22).expect("mmap");
        assert_eq!(p as usize % (1 << 22), 0);
        // SAFETY: the range was just mapped, is unused, and is unmapped once.
        unsafe {
            p.write(7);
            assert_eq!(resident_pages(p, 8), 1);
            purge(p, PAGE_SIZE);
            assert_eq!(resident_pages(p, 8), 0);
            assert_eq!(p.read(), 0);
            release(p, 8 * PAGE_SIZE);
        }
    }

    #[test]
    fn physical_memory_is_plausible() {
        assert!(physical_memory() >= 64 << 20);
        assert!(default_budget() >= 1 << 20);
    }
}
