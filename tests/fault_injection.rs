//! Fault injection: a fixed operation sequence on a private heap, with the
//! N-th call of one fail point made to fail, for every N until the
//! sequence no longer reaches an N-th call, for every fail point. Every
//! failure must surface as an error (or be absorbed by a retry), never as
//! an abort or a corruption: the model's checks hold after each operation,
//! `Heap::verify` passes, and once everything is freed the free-page count
//! is back at its start.
//!
//! This binary keeps the system allocator, so the per-thread fail points
//! count only the private heaps' calls.

use lifeboat::model::ops::{How, Op, Runner};
use lifeboat::model::{fail_calls, fail_hits, fail_nth, fail_reset, FailPoint};
use lifeboat::{AllocFlags, Config, Heap};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const BUDGET: usize = 40 * MIB;

fn alloc(size: usize, align: usize, flags: AllocFlags, how: How) -> Op {
    Op::Alloc {
        size,
        align,
        flags,
        how,
    }
}

/// The sequence: slabs of several classes, large blocks, realloc growth
/// (page blocks grown in place, moved), direct mappings (mapped, grown and
/// shrunk with mremap, freed into the mapping cache and reused, aligned
/// above 4 MiB with sizes 0 and one page), a memalloc scope under
/// pressure, zeroed memory, purge and cache flushes.
fn sequence() -> Vec<Op> {
    let n = AllocFlags::NORMAL;
    let mut v = Vec::new();
    for (i, size) in [8, 24, 100, 512, 3000, 20 * KIB].into_iter().enumerate() {
        v.push(alloc(size, 8, n, How::Plain));
        v.push(alloc(size, 16, n, How::Zeroed));
        if i % 2 == 0 {
            v.push(Op::Free { pick: 0 });
        }
    }
    v.push(alloc(40 * KIB, 4096, n, How::Plain));
    v.push(alloc(300 * KIB, 64 * KIB, n, How::Zeroed));
    v.push(alloc(2000, 8, n, How::Plain));
    let last = || Op::Realloc {
        pick: usize::MAX, // the last live block (pick % len)
        new_size: 0,
        flags: AllocFlags::NORMAL,
    };
    for size in [6000, 20 * KIB, 100 * KIB, 700 * KIB, 3 * MIB, 2 * KIB] {
        let Op::Realloc { pick, flags, .. } = last() else {
            unreachable!()
        };
        v.push(Op::Realloc {
            pick,
            new_size: size,
            flags,
        });
    }
    // Direct mappings.
    v.push(alloc(6 * MIB, 8, n, How::Plain));
    for size in [9 * MIB, 5 * MIB, 7 * MIB] {
        v.push(Op::Realloc {
            pick: usize::MAX,
            new_size: size,
            flags: n,
        });
    }
    v.push(Op::Free { pick: usize::MAX });
    v.push(alloc(6 * MIB + 100 * KIB, 8, n, How::Plain)); // reuses the cached mapping
    v.push(alloc(0, 8 * MIB, n, How::Plain));
    v.push(alloc(4096, 16 * MIB, n, How::Zeroed));
    v.push(Op::Free { pick: 1 });
    // Pressure: fill with 1 MiB blocks, then the reserve.
    for _ in 0..24 {
        v.push(alloc(MIB, 8, n | AllocFlags::NOWARN, How::Plain));
    }
    v.push(Op::EnterMemalloc);
    v.push(alloc(512 * KIB, 8, n, How::Plain));
    v.push(alloc(200, 8, n, How::Plain));
    v.push(alloc(64, 8, AllocFlags::ATOMIC, How::Reserve));
    v.push(Op::ExitScope);
    v.push(alloc(
        64,
        8,
        AllocFlags::HIGH | AllocFlags::NOWARN,
        How::Plain,
    ));
    for k in 0..10 {
        v.push(Op::Free { pick: k * 7 });
    }
    v.push(Op::Verify);
    v.push(Op::Purge);
    v.push(Op::FlushCaches);
    v.push(alloc(10 * KIB, 8, n, How::Zeroed));
    v.push(alloc(5 * MIB, 8, n, How::Zeroed));
    v
}

/// Runs the sequence with call `nth` of `point` failing; returns whether
/// the failure was injected.
fn run_failing(ops: &[Op], point: FailPoint, nth: u32) -> bool {
    let heap = Heap::new(Config::new().budget(BUDGET)).unwrap();
    let mut r = Runner::new(&heap);
    fail_nth(point, nth);
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = r.apply(op) {
            panic!("{point:?} failing at call {nth}: op {i} ({op:?}): {e}");
        }
    }
    let hit = fail_hits(point) != 0;
    fail_reset();
    if let Err(e) = heap.verify() {
        panic!("{point:?} failing at call {nth}: {e}");
    }
    if let Err(e) = r.finish() {
        panic!("{point:?} failing at call {nth}: {e}");
    }
    hit
}

fn sweep(point: FailPoint) -> u32 {
    let ops = sequence();
    // A run without failure first: the sequence must pass as is.
    fail_reset();
    assert!(!run_failing(&ops, point, 0));
    let mut n = 1;
    while run_failing(&ops, point, n) {
        n += 1;
        assert!(n < 10_000, "{point:?}: the sequence never ends its calls");
    }
    eprintln!("{point:?}: failed each of {} calls in turn", n - 1);
    n - 1
}

#[test]
fn os_reserve_failures() {
    assert!(sweep(FailPoint::OsReserve) >= 3);
}

#[test]
fn os_remap_failures() {
    assert!(sweep(FailPoint::OsRemap) >= 2);
}

#[test]
fn arena_alloc_failures() {
    assert!(sweep(FailPoint::ArenaAlloc) >= 20);
}

#[test]
fn arena_charge_failures() {
    assert!(sweep(FailPoint::ArenaCharge) >= 4);
}

#[test]
fn heap_creation_failures() {
    for nth in 1..=2 {
        fail_nth(FailPoint::OsReserve, nth);
        let r = Heap::new(Config::new().budget(4 * MIB));
        assert_eq!(fail_hits(FailPoint::OsReserve), 1);
        assert_eq!(r.err(), Some(lifeboat::Error::MapFailed));
    }
    fail_nth(FailPoint::OsReserve, 3);
    let heap = Heap::new(Config::new().budget(4 * MIB)).unwrap();
    assert_eq!(fail_calls(FailPoint::OsReserve), 2);
    fail_reset();
    heap.verify().unwrap();
}

#[test]
fn full_direct_mapping_table_is_refused_not_hung() {
    // A 4 MiB heap has a table of 4 slots (3 usable); small blocks aligned
    // above 4 MiB are direct mappings of one page each.
    let heap = Heap::new(Config::new().budget(4 * MIB)).unwrap();
    let start = lifeboat::model::free_pages(&heap);
    let mut got = Vec::new();
    for size in [0, 4096, 1, 100, 4096, 0] {
        let l = std::alloc::Layout::from_size_align(size, 8 * MIB).unwrap();
        match heap.alloc(l, AllocFlags::NOWARN) {
            Ok(p) => {
                assert_eq!(p.as_ptr() as usize % (8 * MIB), 0);
                // SAFETY: the block has at least `size` bytes (0: one page).
                unsafe { p.as_ptr().write_bytes(0xa5, size.max(1)) };
                got.push((p, l));
            }
            Err(e) => assert_eq!(e, lifeboat::AllocError::MapFailed),
        }
    }
    assert_eq!(got.len(), 3);
    heap.verify().unwrap();
    for (p, l) in got {
        // SAFETY: live blocks of this heap.
        unsafe { heap.dealloc(p, l) };
    }
    heap.verify().unwrap();
    assert_eq!(lifeboat::model::free_pages(&heap), start);
}
