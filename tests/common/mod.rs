//! Helpers shared by the integration tests (each test file is its own
//! binary and includes this module with `mod common;`).

/// A tiny xorshift PRNG (no `rand` crate), deterministic per seed.
pub struct Rng(u64);

#[allow(dead_code)] // not every test binary uses every method
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` objects of `size` bytes (8-aligned) from the global allocator,
/// allocated by a thread that has exited: their slabs have no owner.
#[allow(dead_code)]
pub fn orphans(size: usize, n: usize) -> Vec<usize> {
    let l = std::alloc::Layout::from_size_align(size, 8).unwrap();
    std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                // SAFETY: a non-zero size.
                let p = unsafe { std::alloc::alloc(l) };
                assert!(!p.is_null());
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// `n` objects of `size` bytes of a thread that has exited, in address
/// order and at least `gap` bytes apart, so that each is of another slab
/// when `gap` is at least the class's slab size (freed in this order, no
/// two frees in a row are of one slab); and the other objects allocated to
/// find them, for the caller to free. (Finding them allocates vectors on
/// the calling thread, of the class of 2 KiB among others.)
#[allow(dead_code)]
pub fn scattered_orphans(size: usize, n: usize, gap: usize) -> (Vec<usize>, Vec<usize>) {
    // Enough objects to span `n` gaps twice over.
    let mut all = orphans(size, 2 * n * gap.div_ceil(size));
    all.sort_unstable();
    let (mut picked, mut rest) = (Vec::with_capacity(n), Vec::new());
    let mut next = 0;
    for p in all {
        if picked.len() < n && p >= next {
            picked.push(p);
            next = p + gap;
        } else {
            rest.push(p);
        }
    }
    assert_eq!(picked.len(), n, "the orphans spanned too few gaps");
    (picked, rest)
}

/// The process heap's statistics of the size class that serves `size`.
#[allow(dead_code)]
fn class_of(size: usize) -> Option<lifeboat::ClassStats> {
    lifeboat::stats()
        .classes
        .iter()
        .copied()
        .find(|c| c.size >= size)
}

/// Live objects of the process heap's size class that serves `size`.
#[allow(dead_code)]
pub fn live_objects_of(size: usize) -> usize {
    class_of(size).map_or(0, |c| c.live_objects)
}

/// The object size of the process heap's size class that serves `size`.
#[allow(dead_code)]
pub fn class_size_of(size: usize) -> usize {
    class_of(size).map_or(0, |c| c.size)
}

/// Slabs of the process heap's size class that serves `size`.
#[allow(dead_code)]
pub fn slabs_of(size: usize) -> usize {
    class_of(size).map_or(0, |c| c.slabs)
}
