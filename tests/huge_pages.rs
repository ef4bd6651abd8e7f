//! Transparent huge pages (`Config::huge_pages`): the arena (slabs and
//! page blocks) is advised `MADV_HUGEPAGE`, and a request above 4 MiB is
//! mapped 2 MiB-aligned and advised, when the option is on (the default);
//! both are left alone when it is off. The kernel's verdict is read from
//! `/proc/self/smaps` (`THPeligible`), so the test checks what the kernel
//! will do, not only what lifeboat asked.

use std::alloc::Layout;

use lifeboat::{AllocFlags, Config, Heap};

const MIB: usize = 1 << 20;

/// The kernel's THP mode: "always", "madvise" or "never" (None when the
/// kernel has no THP).
fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')? + 1;
    let end = start + s[start..].find(']')?;
    Some(s[start..end].to_string())
}

/// `THPeligible` of the mapping that contains `addr`, from smaps.
fn thp_eligible(addr: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
    }
    None
}

fn map_and_check(on: bool) {
    let h = Heap::new(Config::new().budget(256 * MIB).huge_pages(on)).unwrap();
    let l = Layout::from_size_align(9 * MIB, 8).unwrap();
    let block = h.alloc(l, AllocFlags::NORMAL).unwrap();
    let p = block.as_ptr();
    // SAFETY: the block holds 9 MiB.
    unsafe {
        p.write_bytes(0x5A, l.size());
        assert_eq!(*p.add(l.size() - 1), 0x5A);
    }
    if on {
        assert_eq!(
            p as usize % (2 * MIB),
            0,
            "a direct mapping is 2 MiB-aligned"
        );
    }
    // The arena: a small object and a page block.
    let small = Layout::from_size_align(64, 8).unwrap();
    let page_block = Layout::from_size_align(64 << 10, 8).unwrap();
    let in_arena = [small, page_block].map(|l| (h.alloc(l, AllocFlags::NORMAL).unwrap(), l));
    for (addr, what) in [
        (p as usize, "direct mapping"),
        (in_arena[0].0.as_ptr() as usize, "slab"),
        (in_arena[1].0.as_ptr() as usize, "page block"),
    ] {
        match (thp_mode().as_deref(), thp_eligible(addr)) {
            // The kernel has THP and reports on the mapping.
            (Some("madvise"), Some(eligible)) => assert_eq!(eligible, on, "{what}"),
            (Some("always"), Some(eligible)) => assert!(eligible, "{what}"),
            _ => {}
        }
    }
    for (q, l) in in_arena {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { h.dealloc(q, l) };
    }
    // SAFETY: allocated above with `l`, freed once.
    unsafe { h.dealloc(block, l) };
    assert!(h.verify().is_ok());
}

#[test]
fn the_arena_and_direct_mappings_are_advised_for_huge_pages() {
    map_and_check(true);
}

#[test]
fn huge_pages_can_be_turned_off() {
    map_and_check(false);
}
