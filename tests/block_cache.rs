//! The process heap's block cache: a freed block of 512 KiB to 4 MiB is
//! parked for the next request of its order from any thread, still counts
//! as allocated, and goes back to the arena on a purge (as on every reclaim
//! round).

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const MIB: usize = 1 << 20;

// One test function: the steps read the process heap's free-page count,
// which a concurrent test in this binary would disturb.
#[test]
fn big_blocks_are_reused_across_threads_and_given_back_by_purge() {
    // Only blocks of at most 1/64 of the budget are parked.
    let budget = lifeboat::stats().budget_pages * lifeboat::PAGE_SIZE;
    assert!(budget >= 64 * MIB / 2, "budget too small for this test");
    for size in [MIB / 2, MIB, 2 * MIB, 4 * MIB] {
        if size > budget / 64 {
            continue;
        }
        let l = Layout::from_size_align(size, 8).unwrap();
        let pages = size / lifeboat::PAGE_SIZE;
        // SAFETY: `l` has a non-zero size.
        let p = unsafe { GLOBAL.alloc(l) } as usize;
        assert_ne!(p, 0);
        // SAFETY: a page of a live block of ours.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0xAB, 4096) };
        lifeboat::purge();
        let in_use = lifeboat::stats().free_pages;

        // SAFETY: `p` is ours, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, l) };
        assert_eq!(
            lifeboat::stats().free_pages,
            in_use,
            "a parked block still counts as allocated"
        );

        // Another thread gets the very same block, and zeroed memory is
        // really zero although the block was written.
        let q = std::thread::spawn(move || {
            // SAFETY: `l` has a non-zero size.
            let q = unsafe { GLOBAL.alloc_zeroed(l) } as usize;
            // SAFETY: a live block of `size` bytes.
            let all_zero = unsafe { std::slice::from_raw_parts(q as *const u8, size) }
                .iter()
                .all(|&b| b == 0);
            assert!(all_zero, "alloc_zeroed from the block cache is not zero");
            q
        })
        .join()
        .unwrap();
        assert_eq!(q, p, "the parked {size}-byte block was not reused");

        // (Measured again: the thread's start and exit allocate too.)
        lifeboat::purge();
        let in_use = lifeboat::stats().free_pages;
        // SAFETY: `q` is ours, freed once.
        unsafe { GLOBAL.dealloc(q as *mut u8, l) };
        assert_eq!(lifeboat::stats().free_pages, in_use);
        lifeboat::purge();
        assert_eq!(
            lifeboat::stats().free_pages,
            in_use + pages,
            "purge did not give the parked block back"
        );
    }
}
