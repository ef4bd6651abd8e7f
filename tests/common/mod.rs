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
