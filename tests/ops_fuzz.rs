//! Seeded operation sequences on private heaps, checked against a model
//! (`lifeboat::model::ops`): contents of every block on free and realloc,
//! `Heap::verify` during and after, and no page lost once everything is
//! freed.
//!
//! `LIFEBOAT_FUZZ_SEED=N` runs only seed N; `LIFEBOAT_FUZZ_SEEDS=K` runs
//! seeds 0..K instead of the default 16; `LIFEBOAT_FUZZ_OPS=N` sets the
//! sequence length.

use lifeboat::model::ops;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = env_u64("LIFEBOAT_FUZZ_SEED") {
        return vec![s];
    }
    let n = env_u64("LIFEBOAT_FUZZ_SEEDS").unwrap_or(16);
    (0..n).collect()
}

#[test]
fn seeded_sequences_match_the_model() {
    let n_ops = env_u64("LIFEBOAT_FUZZ_OPS").unwrap_or(1500) as usize;
    let mut total = ops::RunStats::default();
    for seed in seeds() {
        // Budgets from tight (watermarks and reserves in play) to roomy.
        let budget = [2usize, 4, 8, 24][(seed % 4) as usize] << 20;
        match ops::run_seed(seed, n_ops, budget) {
            Ok(st) => {
                total.ops += st.ops;
                total.allocs += st.allocs;
                total.refused += st.refused;
                total.shrunk += st.shrunk;
            }
            Err(e) => {
                panic!("{e}\n(reproduce with LIFEBOAT_FUZZ_SEED={seed} LIFEBOAT_FUZZ_OPS={n_ops})")
            }
        }
    }
    assert!(total.allocs > 0, "{total:?}");
    eprintln!("ops_fuzz: {total:?}");
}

#[test]
fn byte_driven_sequences_run() {
    // The fuzz target's entry point, on a few fixed inputs.
    for data in [
        &b""[..],
        &[0u8; 64][..],
        &[0xffu8; 300][..],
        b"lifeboat fuzz input with some bytes in it: 0123456789abcdef",
    ] {
        ops::run_bytes(data).unwrap();
    }
    let mut rng = ops::Rng::new(7);
    let data: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    ops::run_bytes(&data).unwrap();
}
