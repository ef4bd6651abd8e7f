//! The free-list link key: every link stored inside a free object (the
//! local free list and the remote stack alike) is `next ^ key`, with one
//! random key per heap. A use-after-free write to a link word then decodes
//! to an unpredictable address, which the pop's bounds check (the decoded
//! link must fall inside its slab) turns into an abort instead of a block
//! handed out at an address of the writer's choice.
//!
//! The link is XORed with the key only, not also with its own address:
//! that would cost one more instruction on both fast paths, and the bounds
//! check already stops a forged link; a link copied from one free object
//! to another still decodes to an object of the same slab.
//!
//! The key comes from `getrandom(2)` (non-blocking), else from the 16
//! random bytes the kernel gives every process (`getauxval(AT_RANDOM)`),
//! mixed with the time-stamp counter and the heap's address, so two heaps
//! of one process get different keys. None of this allocates, and all of
//! it works before `main`. Under loom the key is a constant.

/// A fresh key for the heap at `salt` (its address).
#[cfg(not(loom))]
pub(crate) fn new_key(salt: usize) -> usize {
    let mut r: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into `r`; GRND_NONBLOCK
    // makes it fail instead of waiting for entropy early in boot.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            &mut r as *mut u64 as *mut libc::c_void,
            8usize,
            libc::GRND_NONBLOCK,
        )
    };
    if n != 8 {
        // SAFETY: getauxval has no preconditions; AT_RANDOM, when present,
        // is the address of 16 random bytes that live as long as the
        // process (on the initial stack), read unaligned.
        unsafe {
            let at = libc::getauxval(libc::AT_RANDOM) as usize;
            if at != 0 {
                r = core::ptr::read_unaligned(at as *const u64)
                    ^ core::ptr::read_unaligned((at + 8) as *const u64).rotate_left(32);
            }
        }
    }
    let k = mix(r ^ mix(tsc() ^ salt as u64));
    // A zero key would store links in clear; 1 in 2^64, but free to avoid.
    (if k == 0 { 0x9E37_79B9_7F4A_7C15 } else { k }) as usize
}

/// The constant key of loom models (their runs must be reproducible).
#[cfg(loom)]
pub(crate) fn new_key(_salt: usize) -> usize {
    0x5A5A_A5A5_0F0F_F0F0u64 as usize
}

#[cfg(not(loom))]
fn tsc() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // SAFETY: rdtsc is available on every x86-64 CPU and has no
        // preconditions.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    // (Miri has no `rdtsc`.)
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64).wrapping_mul(1_000_000_007) ^ ts.tv_nsec as u64
    }
}

/// splitmix64's finaliser: every input bit reaches every output bit.
#[cfg(not(loom))]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Encodes a link (`next` may be null) for storage in a free object.
#[inline(always)]
pub(crate) fn encode(next: *mut u8, key: usize) -> usize {
    next as usize ^ key
}

/// Decodes a stored link.
#[inline(always)]
pub(crate) fn decode(word: usize, key: usize) -> *mut u8 {
    (word ^ key) as *mut u8
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_between_heaps_and_round_trip() {
        let (a, b) = (new_key(0x1000), new_key(0x2000));
        assert_ne!(a, b);
        assert_ne!(a, 0);
        let p = 0x7f00_1234_5678usize as *mut u8;
        assert_eq!(decode(encode(p, a), a), p);
        assert!(decode(encode(core::ptr::null_mut(), a), a).is_null());
        assert_ne!(encode(p, a), p as usize);
    }
}
