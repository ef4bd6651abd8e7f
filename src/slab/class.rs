//! Size classes: 8 B to 32 KiB.
//!
//! Eight classes of 8-byte steps up to 64 B, then eight classes per doubling
//! (step = 1/8 of the lower power of two), so for any request of at least
//! 64 B the class wastes less than 1/9 of its size (under 12.5 %); below 64 B
//! the waste is at most 7 bytes (8-byte granularity keeps objects aligned).
//!
//! Each class has a slab order: the smallest order >= 2 (16 KiB) whose slab
//! holds at least 8 objects (or, for classes above 8 KiB, is at least
//! 64 KiB and holds 2) and wastes at most 1/8 of its bytes at its end. The
//! cap keeps slabs of the big classes small, which matters when they are
//! carved from a reserve of a few hundred KiB.

use crate::arena::buddy::MAX_ORDER;

/// Number of size classes.
pub const NUM_CLASSES: usize = 80;
/// The largest size served by slabs; larger requests get whole pages.
pub const MAX_SMALL_SIZE: usize = 32 * 1024;
/// Sizes up to this use the direct lookup table.
pub(crate) const LOOKUP_MAX: usize = 1024;

pub(crate) const fn compute_size(c: usize) -> usize {
    if c < 8 {
        (c + 1) * 8
    } else {
        let g = (c - 8) / 8;
        let i = (c - 8) % 8;
        (64 << g) + (i + 1) * (8 << g)
    }
}

/// The class of a size in 1..=MAX_SMALL_SIZE (0 is treated as 1).
pub(crate) const fn compute_class(size: usize) -> usize {
    if size <= 64 {
        if size == 0 {
            0
        } else {
            (size - 1) / 8
        }
    } else {
        let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize; // 2^k < size <= 2^(k+1)
        let idx = ((size - 1) - (1 << k)) >> (k - 3);
        8 + (k - 6) * 8 + idx
    }
}

/// The smallest slab order: every slab spans at least `1 << MIN_SLAB_ORDER`
/// pages, so a page whose index is a multiple of that and that heads a
/// slab heads the slab of the pages after it too (the free path's one
/// descriptor read, `desc.rs`).
pub(crate) const MIN_SLAB_ORDER: usize = 2;

const fn compute_order(size: usize) -> usize {
    let mut o = MIN_SLAB_ORDER;
    while o < MAX_ORDER {
        let bytes = 4096usize << o;
        let cap = bytes / size;
        let waste = bytes - cap * size;
        let enough = cap >= 8 || (bytes >= 64 * 1024 && cap >= 2);
        if enough && waste * 8 <= bytes {
            return o;
        }
        o += 1;
    }
    MAX_ORDER
}

const fn build_sizes() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = compute_size(c) as u32;
        c += 1;
    }
    t
}

// Every slab spans at least `1 << MIN_SLAB_ORDER` pages (the free path
// relies on it).
const _: () = {
    let orders = build_orders();
    let mut c = 0;
    while c < NUM_CLASSES {
        assert!(orders[c] as usize >= MIN_SLAB_ORDER);
        c += 1;
    }
};

const fn build_orders() -> [u8; NUM_CLASSES] {
    let mut t = [0u8; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = compute_order(compute_size(c)) as u8;
        c += 1;
    }
    t
}

/// Objects in a slab of `bytes` bytes of objects of `size` bytes.
pub(crate) const fn compute_cap(bytes: usize, size: usize) -> usize {
    if cfg!(feature = "debug") {
        // cap objects and ceil(cap / 8) bitmap bytes must fit.
        let mut cap = bytes * 8 / (8 * size + 1);
        while cap * size + cap.div_ceil(8) > bytes {
            cap -= 1;
        }
        cap
    } else {
        bytes / size
    }
}

const fn build_caps() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let size = compute_size(c);
        t[c] = compute_cap(4096 << compute_order(size), size) as u32;
        c += 1;
    }
    t
}

const fn build_lookup() -> [u8; LOOKUP_MAX / 8 + 1] {
    let mut t = [0u8; LOOKUP_MAX / 8 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = compute_class(i * 8) as u8;
        i += 1;
    }
    t
}

/// `u64::MAX / size + 1` of each class: `off` (below 2^32) is a multiple
/// of the class size exactly when `off * CLASS_DIV_MAGIC` (wrapping) is
/// below `CLASS_DIV_MAGIC` (Lemire, Kaser and Kurz, "Faster remainder by
/// direct computation"), one multiply instead of a division.
pub(crate) static CLASS_DIV_MAGIC: [u64; NUM_CLASSES] = build_div_magic();

const fn build_div_magic() -> [u64; NUM_CLASSES] {
    let mut t = [0u64; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = div_magic(compute_size(c));
        c += 1;
    }
    t
}

/// `u64::MAX / size + 1`: see [`CLASS_DIV_MAGIC`].
const fn div_magic(size: usize) -> u64 {
    u64::MAX / size as u64 + 1
}

/// Where the objects of a class lie inside any block of the class's slab
/// size, for a check that reads no slab descriptor: a slab is a buddy
/// block, aligned to its size (the arena is aligned to the largest
/// block), whose objects start at its first byte.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct ObjectGrid {
    /// The slab's size in bytes, less one.
    slab_mask: u32,
    /// Bytes of objects at the slab's start (capacity times size).
    span: u32,
    /// The class's [`CLASS_DIV_MAGIC`] (a copy, on the same line).
    magic: u64,
}

/// The [`ObjectGrid`] of each class (one 16-byte entry: one cache line
/// read for the check).
#[cfg(not(loom))]
pub(crate) static OBJECT_GRID: [ObjectGrid; NUM_CLASSES] = build_grids();

#[cfg(not(loom))]
const fn build_grids() -> [ObjectGrid; NUM_CLASSES] {
    let mut t = [ObjectGrid {
        slab_mask: 0,
        span: 0,
        magic: 0,
    }; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let size = compute_size(c);
        let bytes = 4096usize << compute_order(size);
        t[c] = ObjectGrid {
            slab_mask: (bytes - 1) as u32,
            span: (compute_cap(bytes, size) * size) as u32,
            magic: div_magic(size),
        };
        c += 1;
    }
    t
}

/// Whether `p` would be an object start if the block of its class's slab
/// size around it were a slab of `class`: the arithmetic half of the
/// object-start check, which needs no descriptor. (Whether that block is
/// such a slab is the other half.)
///
/// # Safety
/// `class < NUM_CLASSES`.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) unsafe fn on_object_grid(p: usize, class: usize) -> bool {
    // SAFETY: in range (caller).
    let g = unsafe { OBJECT_GRID.get_unchecked(class) };
    let off = p & g.slab_mask as usize;
    off < g.span as usize && (off as u64).wrapping_mul(g.magic) < g.magic
}

/// Whether `off` (below 2^32) is a multiple of the size of `class`.
#[inline]
pub(crate) fn is_object_offset(off: usize, class: usize) -> bool {
    let m = CLASS_DIV_MAGIC[class];
    (off as u64).wrapping_mul(m) < m
}

/// Object size of each class.
pub(crate) static CLASS_SIZE: [u32; NUM_CLASSES] = build_sizes();
/// Buddy order of each class's slabs.
pub(crate) static SLAB_ORDER: [u8; NUM_CLASSES] = build_orders();
/// Objects per slab of each class. Under the `debug` feature a slab also
/// holds its live-object bitmap after the last object (see
/// `slab/debug.rs`, built with that feature only), which may cost an object.
pub(crate) static CLASS_CAP: [u32; NUM_CLASSES] = build_caps();
/// `LOOKUP[(size + 7) / 8]` is the class of `size` for sizes up to 1 KiB.
pub(crate) static LOOKUP: [u8; LOOKUP_MAX / 8 + 1] = build_lookup();

/// `MEDIUM[(size - 1) / 128]` is the class of `size` for sizes in
/// 1..=`MAX_SMALL_SIZE` (used above `LOOKUP_MAX`): every class boundary
/// above 1 KiB is a multiple of 128 bytes, so rounding up to 128 keeps the
/// class. Entries are `u32` (not `u8` like [`LOOKUP`]) so the compiler
/// keeps the two lookups apart instead of merging them behind selects.
pub(crate) static MEDIUM: [u32; MAX_SMALL_SIZE / 128] = build_medium();

const fn build_medium() -> [u32; MAX_SMALL_SIZE / 128] {
    let mut t = [0u32; MAX_SMALL_SIZE / 128];
    let mut i = 0;
    while i < t.len() {
        t[i] = compute_class((i + 1) * 128) as u32;
        i += 1;
    }
    t
}

/// The class of a size in `LOOKUP_MAX + 1..=MAX_SMALL_SIZE`, by table.
#[inline(always)]
pub(crate) fn class_of_medium(size: usize) -> usize {
    // The index is at most MAX_SMALL_SIZE / 128; the check folds away
    // under the caller's size test.
    MEDIUM[(size - 1) >> 7] as usize
}

/// The class of a small size (`size <= LOOKUP_MAX`), by table.
#[inline(always)]
pub(crate) fn class_of_small(size: usize) -> usize {
    // The index is at most LOOKUP_MAX / 8; get_unchecked would save a
    // bounds check, but the check folds away under the caller's size test.
    LOOKUP[(size + 7) >> 3] as usize
}

/// The class for `size` bytes at alignment `align`, or `None` if the request
/// must be served with whole pages.
#[inline]
pub(crate) fn class_for(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        if size <= LOOKUP_MAX {
            return Some(class_of_small(size));
        }
        if size <= MAX_SMALL_SIZE {
            return Some(class_of_medium(size));
        }
        return None;
    }
    // Objects sit at multiples of the class size from a page-aligned slab
    // start, so a class whose size is a multiple of `align` (<= one page)
    // returns aligned objects.
    if align > 4096 {
        return None;
    }
    let need = if size > align { size } else { align };
    if need > MAX_SMALL_SIZE {
        return None;
    }
    let mut c = compute_class(need);
    while c < NUM_CLASSES {
        if (CLASS_SIZE[c] as usize).is_multiple_of(align) {
            return Some(c);
        }
        c += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "millions of divisions, no unsafe code: too slow interpreted"
    )]
    fn object_offsets_match_the_remainder() {
        for c in 0..NUM_CLASSES {
            let size = CLASS_SIZE[c] as usize;
            let slab = 4096usize << SLAB_ORDER[c];
            for off in (0..slab).chain([u32::MAX as usize - 7, u32::MAX as usize]) {
                assert_eq!(
                    is_object_offset(off, c),
                    off % size == 0,
                    "class {c} offset {off}"
                );
            }
        }
    }

    #[test]
    fn medium_table_agrees_with_the_formula() {
        for size in LOOKUP_MAX + 1..=MAX_SMALL_SIZE {
            assert_eq!(class_of_medium(size), compute_class(size), "size {size}");
        }
    }

    #[test]
    fn capacities_fit_their_slabs() {
        for c in 0..NUM_CLASSES {
            let bytes = 4096usize << SLAB_ORDER[c];
            let (size, cap) = (CLASS_SIZE[c] as usize, CLASS_CAP[c] as usize);
            // Under `debug` the bitmap may cost the 32 KiB class its second
            // object.
            let min = if cfg!(feature = "debug") { 1 } else { 2 };
            assert!(cap >= min && cap * size <= bytes, "class {c}");
            if cfg!(feature = "debug") {
                assert!(cap * size + cap.div_ceil(8) <= bytes, "class {c}");
            }
        }
    }

    #[test]
    fn table_is_monotonic_and_ends_at_32k() {
        assert_eq!(CLASS_SIZE[0], 8);
        assert_eq!(CLASS_SIZE[7], 64);
        assert_eq!(CLASS_SIZE[8], 72);
        assert_eq!(CLASS_SIZE[NUM_CLASSES - 1] as usize, MAX_SMALL_SIZE);
        for c in 1..NUM_CLASSES {
            assert!(CLASS_SIZE[c] > CLASS_SIZE[c - 1]);
            assert_eq!(CLASS_SIZE[c] % 8, 0);
        }
    }

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 1..=MAX_SMALL_SIZE {
            let c = class_for(size, 1).unwrap();
            assert!(CLASS_SIZE[c] as usize >= size, "size {size}");
            if c > 0 {
                assert!((CLASS_SIZE[c - 1] as usize) < size, "size {size} not tight");
            }
        }
        assert_eq!(class_for(0, 1), Some(0));
        assert_eq!(class_for(MAX_SMALL_SIZE + 1, 1), None);
    }

    #[test]
    fn waste_under_one_eighth_from_64_bytes() {
        for size in 64..=MAX_SMALL_SIZE {
            let cs = CLASS_SIZE[class_for(size, 1).unwrap()] as usize;
            assert!((cs - size) * 8 < cs, "size {size} class {cs}");
        }
        for size in 1..64 {
            let cs = CLASS_SIZE[class_for(size, 1).unwrap()] as usize;
            assert!(cs - size < 8);
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_alignment() {
        for shift in 3..=12 {
            let align = 1 << shift;
            for size in [
                1,
                7,
                8,
                9,
                63,
                64,
                65,
                100,
                1000,
                4095,
                4096,
                4097,
                20000,
                MAX_SMALL_SIZE,
            ] {
                if let Some(c) = class_for(size, align) {
                    let cs = CLASS_SIZE[c] as usize;
                    assert_eq!(cs % align, 0);
                    assert!(cs >= size);
                }
            }
        }
        assert_eq!(class_for(8, 8192), None);
    }

    #[test]
    fn slabs_hold_enough_objects_and_waste_little() {
        for c in 0..NUM_CLASSES {
            let bytes = 4096usize << SLAB_ORDER[c];
            let size = CLASS_SIZE[c] as usize;
            let cap = bytes / size;
            assert!(cap >= 8 || (bytes >= 64 * 1024 && cap >= 2), "class {c}");
            assert!(bytes <= 256 * 1024, "class {c}: slab of {bytes} bytes");
            assert!(cap < 1 << 15, "remote count must fit 15 bits");
            assert!(
                SLAB_ORDER[c] >= 1,
                "the remote word lives in the second page's descriptor"
            );
            assert!((bytes - cap * size) * 8 <= bytes, "class {c}");
        }
    }

    #[test]
    fn sizes_that_are_multiples_of_16_get_16_aligned_classes() {
        for size in (16..=MAX_SMALL_SIZE).step_by(16) {
            let cs = CLASS_SIZE[class_for(size, 8).unwrap()] as usize;
            assert_eq!(cs % 16, 0, "size {size} -> class {cs}");
        }
    }

    /// The arithmetic object-start check agrees with the slabs' layout:
    /// every object start of a slab of the class passes, anywhere in the
    /// arena (slabs are aligned to their size), and the offsets between
    /// and after them do not.
    #[test]
    #[cfg(not(loom))]
    fn the_object_grid_is_the_slab_layout() {
        // (Interpreted, the first and last few objects of a class only.)
        let ends = if cfg!(miri) { 3 } else { usize::MAX };
        for class in 0..NUM_CLASSES {
            let size = CLASS_SIZE[class] as usize;
            let bytes = 4096usize << SLAB_ORDER[class];
            let cap = CLASS_CAP[class] as usize;
            let span = cap * size;
            // SAFETY: `class < NUM_CLASSES`.
            let on = |p: usize| unsafe { on_object_grid(p, class) };
            for base in [0usize, bytes, 0x7f00_0000_0000] {
                for i in (0..cap).filter(|&i| i < ends || cap - i <= ends) {
                    let start = base + i * size;
                    assert!(on(start), "class {class}, object {i}");
                    assert!(!on(start + 1), "class {class}, object {i} + 1");
                    if size > 8 {
                        assert!(!on(start + 8), "class {class}, object {i} + 8");
                    }
                }
                // Past the last object: the slab's tail, if any, and its
                // last byte.
                if span < bytes {
                    assert!(!on(base + span), "class {class}, span");
                }
                assert!(!on(base + bytes - 1), "class {class}, last byte");
            }
        }
    }
}
