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

/// Live objects of the process heap's size class that serves `size`.
#[allow(dead_code)]
pub fn live_objects_of(size: usize) -> usize {
    lifeboat::stats()
        .classes
        .iter()
        .find(|c| c.size >= size)
        .map_or(0, |c| c.live_objects)
}
