//! Quick, self-timed comparison of lifeboat, System, mimalloc and jemalloc.
//!
//! Every workload runs for every allocator, interleaved (A B C D, the
//! starting allocator rotating each round) for a number of rounds; each
//! sample runs a fixed iteration count calibrated per allocator during
//! warm-up to take about `--sample-ms`. The median of the rounds is
//! reported per operation, with its ratio to mimalloc and to System, as
//! markdown on stdout. Progress goes to stderr.
//!
//! ```text
//! cargo run --release -p lifeboat-bench --bin ratios -- [--rounds 7] [--sample-ms 20] [--filter pair]
//! ```
//!
//! The figures are for reading, never for asserting: nothing here fails on
//! a slow result.

use std::process::ExitCode;
use std::time::Duration;

use lifeboat_bench::{
    big_block, big_block_touch_only, cli, pairs, pairs_after_foreign_free, producer_consumer,
    realloc_growth, with_allocator, Growth, ManyRandom, Which, BIG_SIZES, CROSS_BATCH,
    MANY_OBJECTS, PAIR_SIZES,
};

/// One workload: `run(which, iters)` returns the measured time of `iters`
/// iterations, each of which is `ops` of the reported unit.
struct Workload {
    name: String,
    unit: String,
    ops: f64,
    run: Box<dyn Fn(Which, u64) -> Duration>,
}

fn workloads() -> Vec<Workload> {
    let mut v = Vec::new();
    for size in PAIR_SIZES {
        v.push(Workload {
            name: format!("pair {}", human(size)),
            unit: "ns/pair".into(),
            ops: 1.0,
            run: Box::new(move |w, n| with_allocator!(w, |a| pairs(a, size, n))),
        });
    }
    v.push(Workload {
        name: "pair 64 B after a foreign free".into(),
        unit: "ns/pair".into(),
        ops: 1.0,
        run: Box::new(|w, n| with_allocator!(w, |a| pairs_after_foreign_free(a, n))),
    });
    v.push(Workload {
        name: format!("many {MANY_OBJECTS} mixed, shuffled free"),
        unit: "ns/object".into(),
        ops: MANY_OBJECTS as f64,
        run: Box::new(|w, n| {
            let mut m = ManyRandom::new(MANY_OBJECTS);
            with_allocator!(w, |a| m.run(a, n))
        }),
    });
    v.push(Workload {
        name: "producer/consumer cross-thread free".into(),
        unit: format!("ns/batch of {CROSS_BATCH}"),
        ops: 1.0,
        run: Box::new(|w, n| with_allocator!(w, |a| producer_consumer(a, CROSS_BATCH, n))),
    });
    // From 16 B, and from 4 KiB (a `Vec::with_capacity(4096)` that grows).
    for (g, from) in [
        (Growth::Double, 16),
        (Growth::Half, 16),
        (Growth::Double, 4096),
    ] {
        v.push(Workload {
            name: format!(
                "realloc {}..1 MiB {} ({} steps)",
                human(from),
                g.name(),
                g.steps(from)
            ),
            unit: "ns/growth".into(),
            // One iteration is the whole growth from `from` to 1 MiB.
            ops: g.steps(from) as f64,
            run: Box::new(move |w, n| with_allocator!(w, |a| realloc_growth(a, g, from, n))),
        });
    }
    for size in BIG_SIZES {
        v.push(Workload {
            name: format!("big {} + touch pages", human(size)),
            unit: "ns/block".into(),
            ops: 1.0,
            run: Box::new(move |w, n| with_allocator!(w, |a| big_block(a, size, n))),
        });
        v.push(Workload {
            name: format!("big {}, touch only (floor)", human(size)),
            unit: "ns/block".into(),
            ops: 1.0,
            run: Box::new(move |w, n| with_allocator!(w, |a| big_block_touch_only(a, size, n))),
        });
    }
    v
}

fn human(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

struct Options {
    rounds: usize,
    sample: Duration,
    filter: Option<String>,
}

const USAGE: &str = "usage: ratios [--rounds N (7)] [--sample-ms MS (20)] [--filter SUBSTRING]";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        rounds: 7,
        sample: Duration::from_millis(20),
        filter: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rounds" => o.rounds = cli::rounds(value("--rounds")?)?,
            "--sample-ms" => {
                let ms: u64 = cli::number("--sample-ms", value("--sample-ms")?)?;
                o.sample = Duration::from_millis(ms.max(1));
            }
            "--filter" => o.filter = Some(value("--filter")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// Finds an iteration count for which one sample takes about `target`;
/// the runs it makes double as warm-up. A first untimed run keeps one-time
/// initialisation (an allocator's first use) out of the estimate, and the
/// final estimate is the fastest of three runs, so one preemption by
/// another process cannot shrink the count to a handful of iterations.
fn calibrate(run: &dyn Fn(Which, u64) -> Duration, w: Which, target: Duration) -> u64 {
    run(w, 1);
    let mut iters: u64 = 1;
    loop {
        let d = run(w, iters);
        if d >= target / 4 || iters >= 1 << 40 {
            let d = (0..2).map(|_| run(w, iters)).fold(d, Duration::min);
            let scaled = iters as f64 * target.as_secs_f64() / d.as_secs_f64().max(1e-9);
            let iters = (scaled as u64).max(1);
            // One more warm-up at the final count.
            run(w, iters);
            return iters;
        }
        iters *= 2;
    }
}

/// The one-minute load average from `/proc/loadavg`, where there is one.
fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_owned)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

struct Row {
    name: String,
    unit: String,
    /// Per allocator, in [`Which::ALL`] order: (median, spread in %).
    results: [(f64, f64); 4],
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ratios: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };

    let load_start = loadavg();
    let mut rows = Vec::new();
    for wl in workloads() {
        if let Some(f) = &opts.filter {
            if !wl.name.contains(f.as_str()) {
                continue;
            }
        }
        eprint!("{} ...", wl.name);
        let iters: Vec<u64> = Which::ALL
            .iter()
            .map(|&w| calibrate(&*wl.run, w, opts.sample))
            .collect();
        let mut samples: [Vec<f64>; 4] = Default::default();
        for round in 0..opts.rounds {
            for k in 0..Which::ALL.len() {
                let i = (round + k) % Which::ALL.len();
                let d = (wl.run)(Which::ALL[i], iters[i]);
                samples[i].push(d.as_nanos() as f64 / (iters[i] as f64 * wl.ops));
            }
        }
        let results = samples.map(|mut s| {
            let m = median(&mut s);
            let spread = (s[s.len() - 1] - s[0]) / m * 100.0;
            (m, spread)
        });
        eprintln!(" done");
        rows.push(Row {
            name: wl.name,
            unit: wl.unit,
            results,
        });
    }
    if rows.is_empty() {
        eprintln!("ratios: no workload matches the filter");
        return ExitCode::FAILURE;
    }

    let idx = |w: Which| Which::ALL.iter().position(|&x| x == w).unwrap_or(0);
    let (lb, sys, mi) = (
        idx(Which::Lifeboat),
        idx(Which::System),
        idx(Which::Mimalloc),
    );

    println!("## lifeboat vs System, mimalloc, jemalloc");
    println!();
    println!(
        "Medians of {} interleaved rounds, about {} ms per sample, one process; \
         ratio = this allocator's median / the other's (below 1 is faster). \
         spread = (max - min) / median over the rounds.",
        opts.rounds,
        opts.sample.as_millis()
    );
    if let (Some(a), Some(b)) = (load_start, loadavg()) {
        println!();
        println!(
            "Load average (1 min) {a} at start, {b} at end: figures from a busy \
             machine are noisy; compare only within one run."
        );
    }
    println!();
    println!("### Summary: lifeboat");
    println!();
    println!("| workload | unit | lifeboat | mimalloc | System | lifeboat / mimalloc | lifeboat / System |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (l, m, s) = (r.results[lb].0, r.results[mi].0, r.results[sys].0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            fmt_ns(l),
            fmt_ns(m),
            fmt_ns(s),
            fmt_ratio(l / m),
            fmt_ratio(l / s)
        );
    }
    println!();
    println!("### All allocators");
    println!();
    println!("| workload | unit | allocator | median | / mimalloc | / System | spread |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for r in &rows {
        for (i, w) in Which::ALL.iter().enumerate() {
            let (m, spread) = r.results[i];
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.0} % |",
                r.name,
                r.unit,
                w,
                fmt_ns(m),
                fmt_ratio(m / r.results[mi].0),
                fmt_ratio(m / r.results[sys].0),
                spread
            );
        }
    }
    ExitCode::SUCCESS
}
