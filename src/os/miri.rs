//! The page source under Miri, which interprets the crate's unit tests
//! with the aliasing rules checked (`ci/miri.sh`) but runs no `mmap`
//! beyond a plain anonymous one, no partial `munmap` and no `madvise`.
//!
//! A reservation is an ordinary zeroed allocation of the interpreter with
//! the alignment asked for, recorded in a small table so that [`release`]
//! can give it back with its layout; its provenance is exposed, as free
//! lists turn object addresses into integers and back. A release of part
//! of a reservation keeps the whole (the real page source unmaps the
//! part). A purge zeroes the range, which is what `MADV_DONTNEED` leaves
//! behind. The allocations come from `System` (Miri's own heap), not
//! from the global allocator, which may be lifeboat itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Live reservations: address, size and alignment (0 address: a free
/// entry).
static LIVE: Mutex<[(usize, usize, usize); 64]> = Mutex::new([(0, 0, 0); 64]);

pub(crate) fn reserve(bytes: usize, align: usize) -> Option<*mut u8> {
    let layout = Layout::from_size_align(bytes, align).ok()?;
    if bytes == 0 {
        return None;
    }
    let mut live = LIVE.lock().ok()?;
    let slot = live.iter().position(|e| e.0 == 0)?;
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { System.alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    let _ = p.expose_provenance();
    live[slot] = (p as usize, bytes, align);
    Some(p)
}

/// # Safety
/// As for the real `release`.
pub(crate) unsafe fn release(p: *mut u8, bytes: usize) {
    let Ok(mut live) = LIVE.lock() else { return };
    if let Some(e) = live.iter_mut().find(|e| e.0 == p as usize && e.1 == bytes) {
        // SAFETY: `p` was allocated with this layout by `reserve` and is
        // released whole, once (the entry is cleared).
        unsafe { System.dealloc(p, Layout::from_size_align_unchecked(e.1, e.2)) };
        *e = (0, 0, 0);
    }
}

/// No advice under Miri.
///
/// # Safety
/// As for the real `advise_huge_pages`.
pub(crate) unsafe fn advise_huge_pages(_p: *mut u8, _bytes: usize) {}

/// # Safety
/// As for the real `purge`.
pub(crate) unsafe fn purge(p: *mut u8, bytes: usize) {
    // SAFETY: the range is inside a live reservation and holds no live
    // data (caller).
    unsafe { core::ptr::write_bytes(p, 0, bytes) };
}
