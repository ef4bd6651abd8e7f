//! The remote-free word of a slab: a lock-free stack of objects freed by
//! threads that do not own the slab, packed in one `u64`:
//!
//! ```text
//!  63        62..48          47..0
//! [DETACHED][count (15 bits)][address of the top object]
//! ```
//!
//! Pushing is a CAS loop (release); the owner takes the whole stack with one
//! swap (acquire), so there is no ABA problem. The count makes "this push
//! freed the slab's last live object" decidable in the same atomic step, and
//! bounds it: a count beyond the slab's capacity can only come from a
//! double free, which is reported instead of overflowing into `DETACHED`.
//! Addresses fit 48 bits on x86-64 and AArch64 user space.
//!
//! The word itself holds the top object's address in clear (it is
//! allocator metadata); the links inside the objects are encoded with the
//! heap's key, like those of the local list (see [`super::key`]).

use crate::arena::desc::PageDesc;
use crate::diag::fatal;
use crate::sync::{AtomicU64, Ordering};

/// No thread owns the slab.
pub(crate) const DETACHED: u64 = 1 << 63;
const CNT_SHIFT: u32 = 48;
const PTR_MASK: u64 = (1 << CNT_SHIFT) - 1;
const CNT_MASK: u64 = (1 << 15) - 1;

#[inline(always)]
pub(crate) fn rptr(w: u64) -> *mut u8 {
    (w & PTR_MASK) as usize as *mut u8
}

#[inline(always)]
pub(crate) fn rcnt(w: u64) -> u32 {
    ((w >> CNT_SHIFT) & CNT_MASK) as u32
}

/// The remote word of slab `s`. It lives in the descriptor of the slab's
/// *second* page, its owner line (`PageDesc::owner_line`), beside the
/// fields the owner writes on every allocation: other threads write it
/// once a chain of objects (`remote_batch.rs`), and what every free reads
/// (the first page's `kind`, `class`, `owner` and range) stays apart from
/// both.
///
/// # Safety
/// As for [`PageDesc::owner_line`]: `s` is a slab's first page (live, or
/// released since the caller found it: the word is then another's or
/// stale, but it exists), or the first of a pair of stand-in descriptors.
#[inline(always)]
pub(crate) unsafe fn word(s: &PageDesc) -> &AtomicU64 {
    // SAFETY: forwarded from the caller.
    unsafe { &s.owner_line().remote }
}

/// Pushes `p` onto the remote stack of `s`; returns the word before.
///
/// # Safety
/// `p` is a live object of slab `s`, given up by the caller; `key` is the
/// key of the heap of `s`; `cap` is the capacity of `s` (read before the
/// push: the class is fixed while the slab has live objects).
#[inline]
pub(crate) unsafe fn push(s: &PageDesc, p: *mut u8, key: usize, cap: u32) -> u64 {
    #[cfg(feature = "debug")]
    // SAFETY: forwarded from the caller.
    unsafe {
        super::debug::on_free(s, p)
    };
    // SAFETY: forwarded from the caller; one object is a chain of one.
    unsafe { push_chain(s, p, p, 1, key, cap) }
}

/// Pushes the chain of `n` objects from `head` to `tail` (linked with
/// `key`; `tail`'s link is set here) onto the remote stack of `s` in one
/// CAS; returns the word before.
///
/// # Safety
/// The chain's objects are distinct live objects of slab `s`, given up by
/// the caller; `key` and `cap` as for [`push`]. (The `debug` feature's
/// bookkeeping is done by [`push`] only: chains are not built under it.)
#[inline]
pub(crate) unsafe fn push_chain(
    s: &PageDesc,
    head: *mut u8,
    tail: *mut u8,
    n: u32,
    key: usize,
    cap: u32,
) -> u64 {
    // SAFETY: `s` is a live slab (caller).
    let word = unsafe { word(s) };
    let mut w = word.load(Ordering::Relaxed);
    loop {
        let total = rcnt(w) + n;
        if total > cap {
            fatal(
                "double free (the slab's free count would exceed its capacity)",
                head as usize,
            );
        }
        // SAFETY: the chain is ours until the CAS publishes it.
        unsafe { *(tail as *mut usize) = super::key::encode(rptr(w), key) };
        let new = (head as u64 & PTR_MASK) | ((total as u64) << CNT_SHIFT) | (w & DETACHED);
        match word.compare_exchange_weak(
            w,
            new,
            crate::model::fault_ordering!(WeakRemotePush, Ordering::AcqRel, Ordering::Relaxed),
            Ordering::Relaxed,
        ) {
            Ok(_) => return w,
            Err(cur) => w = cur,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let p = 0x7fff_1234_5678usize as *mut u8;
        let w = (p as u64) | (123u64 << CNT_SHIFT) | DETACHED;
        assert_eq!(rptr(w), p);
        assert_eq!(rcnt(w), 123);
        assert_ne!(w & DETACHED, 0);
        assert_eq!(rcnt(0), 0);
        assert!(rptr(0).is_null());
    }
}
