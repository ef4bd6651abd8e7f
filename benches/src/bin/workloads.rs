//! Multi-threaded workloads (larson, xmalloc, mstress, cache-scratch,
//! cache-thrash) for lifeboat, System, mimalloc and jemalloc: wall time and
//! peak RSS, each (workload, allocator) in its own child process.
//!
//! ```text
//! workloads [--rounds N (5)] [--scale X (1.0)] [--filter SUBSTRING]
//!           [--markdown FILE] [--svg FILE] [--append FILE]
//! workloads --child WORKLOAD ALLOCATOR [--scale X] [--stats]
//!           [--larson THREADS,SLOTS,ROUNDS,PER_ROUND,MIN,MAX]
//! ```
//!
//! The parent re-executes itself (`--child`) once per (round, workload,
//! allocator), allocators interleaved with the starting one rotating each
//! round. A child runs one workload once, reads its peak RSS (`VmHWM`) and
//! CPU time from `/proc/self`, and prints one line:
//!
//! ```text
//! lifeboat-bench-workload kind=larson allocator=lifeboat wall_s=0.41 cpu_s=0.80 peak_kib=30512 base_kib=2300
//! ```
//!
//! which the parent parses (with `--stats`, a lifeboat child also prints
//! `lifeboat::stats()` on stderr: heap-lock acquisitions and contention,
//! slabs per class; with `--larson`, a larson child runs those parameters
//! instead of the standard ones, e.g. `1,8000,1,1000000,16,128`: one
//! thread replacing objects that the main thread allocated, with no
//! thread exits). The parent prints the markdown report (medians,
//! ratios to mimalloc and to System, the issue's targets as met/missed) on
//! stdout, and writes it to `--markdown FILE` with the SVG chart to
//! `--svg FILE`; `--append FILE` adds a markdown file (the `ratios` tables)
//! at the end of the report. Progress goes to stderr. Nothing fails on a
//! slow or fat result; a child that fails is reported as such.

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use lifeboat_bench::report::{self, Meta, Results, Sample};
use lifeboat_bench::workloads::{self, Kind};
use lifeboat_bench::{cli, machine};
use lifeboat_bench::{with_allocator, Which};

const USAGE: &str = "usage: workloads [--rounds N (5)] [--scale X (1.0)] [--filter SUBSTRING] \
                     [--markdown FILE] [--svg FILE] [--append FILE]\n       \
                     workloads --child WORKLOAD ALLOCATOR [--scale X] [--stats] \
                     [--larson THREADS,SLOTS,ROUNDS,PER_ROUND,MIN,MAX]";

/// Prefix of the child's result line.
const TAG: &str = "lifeboat-bench-workload";

struct Options {
    rounds: usize,
    scale: f64,
    filter: Option<String>,
    markdown: Option<String>,
    svg: Option<String>,
    append: Option<String>,
    child: Option<(Kind, Which)>,
    stats: bool,
    larson: Option<workloads::Larson>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        rounds: 5,
        scale: 1.0,
        filter: None,
        markdown: None,
        svg: None,
        append: None,
        child: None,
        stats: false,
        larson: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rounds" => o.rounds = cli::rounds(value("--rounds")?)?,
            "--scale" => {
                o.scale = cli::number("--scale", value("--scale")?)?;
                if !(o.scale > 0.0 && o.scale.is_finite()) {
                    return Err("--scale must be a positive number".into());
                }
            }
            "--filter" => o.filter = Some(value("--filter")?),
            "--markdown" => o.markdown = Some(value("--markdown")?),
            "--svg" => o.svg = Some(value("--svg")?),
            "--append" => o.append = Some(value("--append")?),
            "--child" => {
                let k = value("--child")?;
                let a = value("--child")?;
                let k = Kind::from_name(&k).ok_or_else(|| format!("unknown workload {k:?}"))?;
                let a = Which::from_name(&a).ok_or_else(|| format!("unknown allocator {a:?}"))?;
                o.child = Some((k, a));
            }
            "--stats" => o.stats = true,
            "--larson" => o.larson = Some(parse_larson(&value("--larson")?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.larson.is_some() && !matches!(o.child, Some((k, _)) if k.is_larson()) {
        return Err("--larson applies to a larson child only".into());
    }
    Ok(o)
}

/// Parses `--larson`'s value: threads, slots, rounds, replacements per
/// round, smallest and largest size, comma-separated.
fn parse_larson(v: &str) -> Result<workloads::Larson, String> {
    let n: Vec<usize> = v
        .split(',')
        .map(|f| f.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--larson wants six whole numbers, got {v:?}"))?;
    let [threads, slots, rounds, per_round, min_size, max_size] = n[..] else {
        return Err(format!("--larson wants six whole numbers, got {v:?}"));
    };
    if threads == 0 || slots == 0 || rounds == 0 || min_size == 0 || min_size > max_size {
        return Err(format!(
            "--larson: threads, slots and rounds must be at least 1, and 1 <= MIN <= MAX (got {v:?})"
        ));
    }
    Ok(workloads::Larson {
        threads,
        slots,
        rounds,
        per_round,
        min_size,
        max_size,
        flush_before_handoff: false,
    })
}

/// The child: one run of `kind` on `which` (with `larson`'s parameters
/// when given, for a larson workload), then the result line.
fn child(
    kind: Kind,
    which: Which,
    scale: f64,
    stats: bool,
    larson: Option<workloads::Larson>,
) -> ExitCode {
    let base_kib = machine::status_kib("VmRSS").unwrap_or(0);
    let wall = match larson {
        Some(p) => with_allocator!(which, |a| kind.run_larson(a, p)),
        None => with_allocator!(which, |a| kind.run(a, scale)),
    };
    let cpu = machine::cpu_seconds();
    // VmHWM is the peak of the whole process; getrusage's ru_maxrss is the
    // same figure, but needs libc.
    let Some(peak_kib) = machine::status_kib("VmHWM") else {
        eprintln!("workloads: no VmHWM in /proc/self/status");
        return ExitCode::FAILURE;
    };
    println!(
        "{TAG} kind={kind} allocator={which} wall_s={:.6} cpu_s={} peak_kib={peak_kib} base_kib={base_kib}",
        wall.as_secs_f64(),
        cpu.map_or_else(|| "-".to_owned(), |c| format!("{c:.3}")),
    );
    if stats && which == Which::Lifeboat {
        eprintln!("{}", lifeboat::stats());
    }
    ExitCode::SUCCESS
}

/// Parses the child's result line.
fn parse_result(stdout: &str) -> Option<Sample> {
    let line = stdout.lines().find(|l| l.starts_with(TAG))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    Some(Sample {
        wall_s: field("wall_s")?.parse().ok()?,
        cpu_s: field("cpu_s").and_then(|c| c.parse().ok()),
        peak_kib: field("peak_kib")?.parse().ok()?,
        base_kib: field("base_kib")?.parse().ok()?,
    })
}

/// Runs one child and returns its sample, or why it failed.
fn run_child(
    exe: &std::path::Path,
    kind: Kind,
    which: Which,
    scale: f64,
) -> Result<Sample, String> {
    let out = Command::new(exe)
        .args(["--child", kind.name(), which.name(), "--scale"])
        .arg(scale.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start child: {e}"))?;
    if !out.status.success() {
        return Err(format!("child {}", out.status));
    }
    parse_result(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "no result line from child".to_owned())
}

fn parent(o: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("workloads: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| o.filter.as_deref().is_none_or(|f| k.name().contains(f)))
        .collect();
    if kinds.is_empty() {
        eprintln!("workloads: no workload matches the filter");
        return ExitCode::FAILURE;
    }
    let appendix = match &o.append {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("workloads: cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };

    let started = Instant::now();
    let load_start = machine::loadavg();
    let parallel_start = machine::parallel_speedup(workloads::cores());
    let mut results = Results::new(kinds.clone());
    for round in 0..o.rounds {
        for (k, &kind) in kinds.iter().enumerate() {
            eprint!("round {}/{} {kind:>13}:", round + 1, o.rounds);
            for i in 0..Which::ALL.len() {
                let which = Which::ALL[(round + k + i) % Which::ALL.len()];
                match run_child(&exe, kind, which, o.scale) {
                    Ok(s) => {
                        eprint!(
                            "  {which} {:.0} ms {:.1} MiB",
                            s.wall_s * 1000.0,
                            s.peak_kib as f64 / 1024.0
                        );
                        results.cell_mut(k, which).samples.push(s);
                    }
                    Err(e) => {
                        eprint!("  {which} FAILED ({e})");
                        results.cell_mut(k, which).failures.push(e);
                    }
                }
                let _ = std::io::stderr().flush();
            }
            eprintln!();
        }
    }

    let meta = Meta {
        date: machine::utc_now(),
        cpu: machine::cpu_model(),
        cores: workloads::cores(),
        kernel: machine::kernel(),
        rustc: machine::RUSTC.to_owned(),
        load: (load_start, machine::loadavg()),
        parallel: (
            Some(parallel_start),
            Some(machine::parallel_speedup(workloads::cores())),
        ),
        rounds: o.rounds,
        scale: o.scale,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    if let Some(n) = machine::cpuinfo_processors() {
        if n != meta.cores {
            eprintln!(
                "workloads: {n} processors in /proc/cpuinfo, {} usable",
                meta.cores
            );
        }
    }
    let md = report::markdown(&results, &meta, appendix.as_deref());
    print!("{md}");
    let mut ok = true;
    for (path, text) in [(&o.markdown, &md), (&o.svg, &report::svg(&results, &meta))] {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("workloads: cannot write {path}: {e}");
                ok = false;
            } else {
                eprintln!("(written to {path})");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("workloads: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match opts.child {
        Some((kind, which)) => child(kind, which, opts.scale, opts.stats, opts.larson),
        None => parent(&opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trip() {
        let line = format!(
            "noise\n{TAG} kind=larson allocator=lifeboat wall_s=0.250000 cpu_s=0.480 peak_kib=30512 base_kib=2300\n"
        );
        let s = parse_result(&line).expect("parses");
        assert_eq!(s.wall_s, 0.25);
        assert_eq!(s.cpu_s, Some(0.48));
        assert_eq!((s.peak_kib, s.base_kib), (30512, 2300));
        let no_cpu = line.replace("cpu_s=0.480", "cpu_s=-");
        assert_eq!(parse_result(&no_cpu).expect("parses").cpu_s, None);
        assert!(parse_result("garbage").is_none());
    }

    #[test]
    fn larson_parameters_parse_and_bad_ones_are_refused() {
        let p = parse_larson("1, 8000,1,1000000,16,128").expect("parses");
        assert_eq!(
            (
                p.threads,
                p.slots,
                p.rounds,
                p.per_round,
                p.min_size,
                p.max_size
            ),
            (1, 8000, 1, 1_000_000, 16, 128)
        );
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5,6,7",
            "1,8000,1,10,0,8",
            "1,8000,1,10,64,8",
            "0,1,1,1,1,1",
            "a,1,1,1,1,1",
        ] {
            assert!(parse_larson(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
