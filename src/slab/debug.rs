//! The `debug` feature: heap checking for development builds.
//!
//! * **Poison**: every free object's bytes after its link word are filled
//!   with [`POISON`] (when linked from the bump region and when freed) and
//!   checked when the object is handed out again: a write after free is
//!   reported at the next allocation of that object.
//! * **Red zones**: a small request is served from the class of
//!   `size + RZ_EXTRA`; the bytes from `size` to the object's last four are
//!   filled with [`REDZONE`] (at least 4 of them) and the last four hold
//!   `size`, so the check on free is exact.
//! * **Live bits**: each slab keeps a bitmap of its objects that are out,
//!   after its last object (the class capacities leave room for it); a free
//!   of an object whose bit is clear is a double free however deep in the
//!   free list the object lies. Remote freers update it atomically.
//! * **Every link checked**: a popped object's next link must be null or
//!   an object start of the slab whose live bit is clear.
//!
//! The global allocator's fast paths are off under this feature.

use super::{bad_link, in_slab, key, obj_size};
use crate::arena::desc::PageDesc;
use crate::diag::fatal;
use core::sync::atomic::{AtomicU8, Ordering};

/// The byte of freed objects.
pub(crate) const POISON: u8 = 0xDF;
/// The byte of red zones.
pub(crate) const REDZONE: u8 = 0xFB;
/// Bytes a small request grows by: 4 of red zone (at least) and the 4 of
/// the stored size.
pub(crate) const RZ_EXTRA: usize = 8;

/// Index of the first byte of `bytes` that is not `v`: eight bytes at a
/// time, then byte by byte.
fn first_not(bytes: &[u8], v: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([v; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if u64::from_ne_bytes(w) != word {
            break;
        }
        at += 8;
    }
    bytes[at..].iter().position(|&x| x != v).map(|i| at + i)
}

/// Object index of `p` in `s`, if `p` is an object start.
fn index_of(s: &PageDesc, p: *const u8) -> Option<usize> {
    if !in_slab(s, p) {
        return None;
    }
    // SAFETY: `lo` is fixed while the slab is live.
    let off = p as usize - unsafe { s.lo.get() };
    let size = obj_size(s);
    off.is_multiple_of(size).then_some(off / size)
}

/// The bitmap byte and bit of object `i` of `s`.
fn live_bit(s: &PageDesc, i: usize) -> (&AtomicU8, u8) {
    // SAFETY: the bitmap lies after the last object, inside the slab
    // (`class::compute_cap` leaves room), and is only touched atomically.
    unsafe {
        let base = (s.lo.get() + s.span.get()) as *mut u8;
        (AtomicU8::from_ptr(base.add(i / 8)), 1 << (i % 8))
    }
}

/// Clears the live bitmap of a freshly carved slab.
///
/// # Safety
/// `s` was just carved (its `lo` and `span` are set) and is not shared.
pub(crate) unsafe fn clear_live(s: &PageDesc) {
    let cap = super::capacity(s) as usize;
    // SAFETY: the bitmap bytes lie inside the new slab (see `live_bit`).
    unsafe { core::ptr::write_bytes((s.lo.get() + s.span.get()) as *mut u8, 0, cap.div_ceil(8)) };
}

/// Fills a free object's bytes after its link word with [`POISON`].
///
/// # Safety
/// `obj` is a free object of `size` bytes owned by the caller.
pub(crate) unsafe fn poison(obj: *mut u8, size: usize) {
    // SAFETY: inside the object (size >= 8).
    unsafe { core::ptr::write_bytes(obj.add(8), POISON, size - 8) };
}

/// Checks an object being handed out by `pop_local`: poison intact, not
/// live, next link valid. Marks it live.
///
/// # Safety
/// The caller owns `s`; `b`, inside the slab, is the head of its list.
pub(crate) unsafe fn on_pop(s: &PageDesc, b: *mut u8, k: usize) {
    let Some(i) = index_of(s, b) else { bad_link(b) };
    let size = obj_size(s);
    // SAFETY: `b` is an object of `s`, `size` bytes long.
    let body = unsafe { core::slice::from_raw_parts(b.add(8), size - 8) };
    if let Some(at) = first_not(body, POISON) {
        fatal(
            "use after free (a freed object was written to; found when handing it out)",
            b as usize + 8 + at,
        );
    }
    let (byte, bit) = live_bit(s, i);
    if byte.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        fatal("free list corrupted (a live object is on it)", b as usize);
    }
    // SAFETY: the link word of a free object.
    let next = key::decode(unsafe { *(b as *const usize) }, k);
    if !next.is_null() {
        match index_of(s, next) {
            Some(j) => {
                let (nb, nbit) = live_bit(s, j);
                if nb.load(Ordering::Relaxed) & nbit != 0 {
                    fatal(
                        "free list corrupted (a live object is on it)",
                        next as usize,
                    );
                }
            }
            None => bad_link(next),
        }
    }
}

/// Checks and records the free of `p`, an object start of `s`: its live
/// bit must be set (else a double free); clears it and poisons `p`.
///
/// # Safety
/// `p` is an object start of the live slab `s`, given up by the caller.
pub(crate) unsafe fn on_free(s: &PageDesc, p: *mut u8) {
    let Some(i) = index_of(s, p) else {
        fatal("invalid free (not the start of an object)", p as usize)
    };
    let (byte, bit) = live_bit(s, i);
    if byte.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
        fatal("double free (the object is not live)", p as usize);
    }
    // SAFETY: the object is the caller's to give up.
    unsafe { poison(p, obj_size(s)) };
}

/// Whether `p` (an object start of `s`) is live; for the red-zone check,
/// which must not read a freed object's poison as a broken red zone.
pub(crate) fn is_live(s: &PageDesc, p: *const u8) -> bool {
    match index_of(s, p) {
        Some(i) => {
            let (byte, bit) = live_bit(s, i);
            byte.load(Ordering::Relaxed) & bit != 0
        }
        None => false,
    }
}

/// Writes the red zone and the stored size of a new object of `s`.
///
/// # Safety
/// `p` is an object of `s` just handed out for `size` bytes, with
/// `size + RZ_EXTRA <= obj_size(s)`.
pub(crate) unsafe fn arm_redzone(s: &PageDesc, p: *mut u8, size: usize) {
    let osize = obj_size(s);
    // SAFETY: inside the object, per the caller.
    unsafe {
        core::ptr::write_bytes(p.add(size), REDZONE, osize - 4 - size);
        core::ptr::write_unaligned(p.add(osize - 4) as *mut u32, size as u32);
    }
}

/// The requested size stored in a live object of `s`.
///
/// # Safety
/// `p` is a live object start of `s`.
pub(crate) unsafe fn stored_size(s: &PageDesc, p: *const u8) -> usize {
    // SAFETY: the last four bytes of the object.
    unsafe { core::ptr::read_unaligned(p.add(obj_size(s) - 4) as *const u32) as usize }
}

/// Checks the red zone of `p`, a live object start of `s`, on its free.
///
/// # Safety
/// `p` is a live object start of `s`.
pub(crate) unsafe fn check_redzone(s: &PageDesc, p: *const u8) {
    let osize = obj_size(s);
    // SAFETY: `p` is live.
    let size = unsafe { stored_size(s, p) };
    if size + RZ_EXTRA > osize {
        fatal(
            "heap overflow (the red zone's stored size was overwritten)",
            p as usize,
        );
    }
    // SAFETY: inside the object.
    let zone = unsafe { core::slice::from_raw_parts(p.add(size), osize - 4 - size) };
    if let Some(at) = first_not(zone, REDZONE) {
        fatal(
            "heap overflow (a write past the end of the object hit its red zone)",
            p as usize + size + at,
        );
    }
}
