//! Criterion suite: lifeboat, System, mimalloc and jemalloc side by side.
//!
//! Each group holds one workload with one benchmark per allocator, so
//! criterion's report lines up the four. The workloads are the ones in the
//! library (`lifeboat_bench`), shared with the `ratios` driver.
//!
//! ```text
//! cargo bench -p lifeboat-bench --bench alloc [-- FILTER]
//! ```
//!
//! Defaults are short (0.5 s warm-up, 1 s measurement, 20 samples) so the
//! whole suite takes a few minutes; criterion's command-line flags
//! (`--measurement-time`, `--warm-up-time`, `--sample-size`) override them.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use lifeboat_bench::{
    big_block, pairs, pairs_after_foreign_free, producer_consumer, realloc_growth, with_allocator,
    Growth, ManyRandom, Which, BIG_SIZES, CROSS_BATCH, MANY_OBJECTS, PAIR_SIZES,
};

/// Adds one benchmark per allocator to `g`; `run(which, iters)` returns the
/// measured time of `iters` iterations.
fn each_allocator(g: &mut BenchmarkGroup<'_, WallTime>, run: impl Fn(Which, u64) -> Duration) {
    for w in Which::ALL {
        g.bench_function(w.name(), |b| b.iter_custom(|iters| run(w, iters)));
    }
}

fn pair(c: &mut Criterion) {
    for size in PAIR_SIZES {
        let mut g = c.benchmark_group(format!("pair/{size}"));
        g.throughput(Throughput::Elements(1));
        each_allocator(&mut g, |w, n| with_allocator!(w, |a| pairs(a, size, n)));
        g.finish();
    }
}

fn pair_after_foreign_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair_after_foreign_free/64");
    g.throughput(Throughput::Elements(1));
    // (Each sample starts two threads.)
    g.sampling_mode(SamplingMode::Flat);
    each_allocator(&mut g, |w, n| {
        with_allocator!(w, |a| pairs_after_foreign_free(a, n))
    });
    g.finish();
}

fn many_random(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("many_shuffled/{MANY_OBJECTS}"));
    g.throughput(Throughput::Elements(MANY_OBJECTS as u64));
    g.sample_size(10);
    let mut m = ManyRandom::new(MANY_OBJECTS);
    for w in Which::ALL {
        g.bench_function(w.name(), |b| {
            b.iter_custom(|n| with_allocator!(w, |a| m.run(a, n)))
        });
    }
    g.finish();
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("producer_consumer/{CROSS_BATCH}"));
    // One element = one batch; criterion reports time per batch.
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    each_allocator(&mut g, |w, n| {
        with_allocator!(w, |a| producer_consumer(a, CROSS_BATCH, n))
    });
    g.finish();
}

fn realloc(c: &mut Criterion) {
    for growth in [Growth::Double, Growth::Half] {
        let mut g = c.benchmark_group(format!("realloc_16B_1MiB/{}", growth.name()));
        g.throughput(Throughput::Elements(growth.steps(16) as u64));
        each_allocator(&mut g, |w, n| {
            with_allocator!(w, |a| realloc_growth(a, growth, 16, n))
        });
        g.finish();
    }
}

fn big(c: &mut Criterion) {
    for size in BIG_SIZES {
        let mut g = c.benchmark_group(format!("big_touch/{}MiB", size >> 20));
        g.throughput(Throughput::Bytes(size as u64));
        g.sample_size(10);
        g.sampling_mode(SamplingMode::Flat);
        each_allocator(&mut g, |w, n| with_allocator!(w, |a| big_block(a, size, n)));
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = pair, pair_after_foreign_free, many_random, cross_thread, realloc, big
}
criterion_main!(benches);
