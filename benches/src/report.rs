//! Results of the `workloads` driver and their reports: the markdown of
//! `docs/benchmarks.md` and the SVG chart of `docs/benchmarks.svg`.
//!
//! Pure functions of the measured samples, so they can be tested without
//! running anything. The figures are for reading: nothing here fails on a
//! slow or a fat result; the issue's targets are reported as sentences.

use std::fmt::Write as _;

use crate::workloads::Kind;
use crate::Which;

/// One run of one workload on one allocator, in its own process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Wall time of the workload, in seconds.
    pub wall_s: f64,
    /// CPU time (user + system, all threads) of the whole child process.
    pub cpu_s: Option<f64>,
    /// Peak RSS of the child (`VmHWM`), in KiB.
    pub peak_kib: u64,
    /// RSS of the child just before the workload started, in KiB.
    pub base_kib: u64,
}

/// Every run of one (workload, allocator).
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// Successful runs, in round order.
    pub samples: Vec<Sample>,
    /// Why runs failed, if any did.
    pub failures: Vec<String>,
}

impl Cell {
    /// Median wall time in seconds.
    pub fn wall(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.wall_s))
    }

    /// Median peak RSS in KiB.
    pub fn peak_kib(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.peak_kib as f64))
    }

    /// Median CPU time in seconds.
    pub fn cpu(&self) -> Option<f64> {
        median(self.samples.iter().filter_map(|s| s.cpu_s))
    }

    /// Median RSS before the workload, in KiB.
    pub fn base_kib(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.base_kib as f64))
    }

    /// (max - min) / median of the wall times, in percent.
    pub fn wall_spread(&self) -> Option<f64> {
        spread(self.samples.iter().map(|s| s.wall_s))
    }

    /// (max - min) / median of the peak RSS, in percent.
    pub fn peak_spread(&self) -> Option<f64> {
        spread(self.samples.iter().map(|s| s.peak_kib as f64))
    }
}

/// Median of `values` (`None` if there are none).
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn spread(values: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let m = median(values.clone())?;
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    let min = values.fold(f64::INFINITY, f64::min);
    (m > 0.0).then(|| (max - min) / m * 100.0)
}

/// Geometric mean; `None` if any value is missing or not positive, or
/// there are none.
pub fn geomean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut n = 0usize;
    let mut sum = 0.0;
    for v in values {
        let v = v.filter(|&v| v > 0.0 && v.is_finite())?;
        sum += v.ln();
        n += 1;
    }
    (n > 0).then(|| (sum / n as f64).exp())
}

/// The two measured quantities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Wall time.
    Time,
    /// Peak RSS.
    PeakRss,
}

/// Allocators in report order: lifeboat, then the reference (mimalloc),
/// then the others.
pub const ORDER: [Which; 4] = [
    Which::Lifeboat,
    Which::Mimalloc,
    Which::Jemalloc,
    Which::System,
];

/// Display name of an allocator in reports.
pub fn label(w: Which) -> &'static str {
    match w {
        Which::Lifeboat => "lifeboat",
        Which::Mimalloc => "mimalloc",
        Which::Jemalloc => "jemalloc",
        Which::System => "System",
    }
}

/// All samples of a run of the driver: one [`Cell`] per (workload,
/// allocator).
#[derive(Clone, Debug)]
pub struct Results {
    /// The workloads, in report order.
    pub kinds: Vec<Kind>,
    cells: Vec<[Cell; 4]>,
}

fn slot(w: Which) -> usize {
    Which::ALL.iter().position(|&x| x == w).unwrap_or(0)
}

impl Results {
    /// Empty results for `kinds`.
    pub fn new(kinds: Vec<Kind>) -> Results {
        let cells = kinds.iter().map(|_| Default::default()).collect();
        Results { kinds, cells }
    }

    /// The runs of workload number `k` on `w`.
    pub fn cell(&self, k: usize, w: Which) -> &Cell {
        &self.cells[k][slot(w)]
    }

    /// The runs of workload number `k` on `w`, to add to.
    pub fn cell_mut(&mut self, k: usize, w: Which) -> &mut Cell {
        &mut self.cells[k][slot(w)]
    }

    /// Median of `metric` (seconds or KiB).
    pub fn value(&self, k: usize, w: Which, metric: Metric) -> Option<f64> {
        let c = self.cell(k, w);
        match metric {
            Metric::Time => c.wall(),
            Metric::PeakRss => c.peak_kib(),
        }
    }

    /// `w`'s median over `over`'s.
    pub fn ratio(&self, k: usize, w: Which, over: Which, metric: Metric) -> Option<f64> {
        let (a, b) = (self.value(k, w, metric)?, self.value(k, over, metric)?);
        (b > 0.0).then(|| a / b)
    }

    /// Geometric mean over the workloads ([`Kind::in_mean`]) of `w`'s
    /// ratio to `over`.
    pub fn geomean_ratio(&self, w: Which, over: Which, metric: Metric) -> Option<f64> {
        geomean(
            (0..self.kinds.len())
                .filter(|&k| self.kinds[k].in_mean())
                .map(|k| self.ratio(k, w, over, metric)),
        )
    }

    /// [`Results::geomean_ratio`] over the workloads issue 6's targets
    /// cover ([`Kind::targeted`]).
    pub fn targeted_geomean_ratio(&self, w: Which, over: Which, metric: Metric) -> Option<f64> {
        geomean(
            (0..self.kinds.len())
                .filter(|&k| self.kinds[k].targeted())
                .map(|k| self.ratio(k, w, over, metric)),
        )
    }
}

/// Where and how the results were measured.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// When (UTC).
    pub date: String,
    /// CPU model.
    pub cpu: String,
    /// Logical cores available to the driver.
    pub cores: usize,
    /// Kernel (`uname -srm`-like).
    pub kernel: String,
    /// Compiler version.
    pub rustc: String,
    /// One-minute load average at the start and the end.
    pub load: (Option<String>, Option<String>),
    /// [`crate::machine::parallel_speedup`] over the cores, at the start
    /// and the end.
    pub parallel: (Option<f64>, Option<f64>),
    /// Rounds (samples per cell).
    pub rounds: usize,
    /// Work scale passed to the children.
    pub scale: f64,
    /// Total wall time of the run, in seconds.
    pub elapsed_s: f64,
}

/// The issue's targets, evaluated on the medians.
#[derive(Clone, Debug)]
pub struct Targets {
    /// Geometric mean of lifeboat's time / mimalloc's over the workloads
    /// the targets cover ([`Kind::targeted`]).
    pub time_geomean: Option<f64>,
    /// Workloads the geometric mean is over.
    pub workloads: usize,
    /// Per workload: lifeboat's peak RSS / mimalloc's.
    pub rss: Vec<(Kind, Option<f64>)>,
    /// Per cross-thread workload: System's time / lifeboat's (speed-up).
    pub cross_speedup: Vec<(Kind, Option<f64>)>,
}

/// Target: lifeboat's geometric-mean time at most this times mimalloc's.
pub const TARGET_TIME: f64 = 1.0;
/// Target: lifeboat's peak RSS at most this times mimalloc's.
pub const TARGET_RSS: f64 = 1.1;
/// Target: on cross-thread workloads, lifeboat at least this much faster
/// than System.
pub const TARGET_CROSS: f64 = 2.0;

impl Targets {
    /// Evaluates the targets on `r`.
    pub fn of(r: &Results) -> Targets {
        let targeted = || (0..r.kinds.len()).filter(|&k| r.kinds[k].targeted());
        let rss = targeted()
            .map(|k| {
                (
                    r.kinds[k],
                    r.ratio(k, Which::Lifeboat, Which::Mimalloc, Metric::PeakRss),
                )
            })
            .collect();
        let cross_speedup = targeted()
            .filter(|&k| r.kinds[k].cross_thread())
            .map(|k| {
                (
                    r.kinds[k],
                    r.ratio(k, Which::System, Which::Lifeboat, Metric::Time),
                )
            })
            .collect();
        Targets {
            time_geomean: r.targeted_geomean_ratio(Which::Lifeboat, Which::Mimalloc, Metric::Time),
            workloads: targeted().count(),
            rss,
            cross_speedup,
        }
    }

    /// The three sentences, one per target, each saying met or missed.
    pub fn sentences(&self) -> [String; 3] {
        let time = match self.time_geomean {
            Some(g) if g <= TARGET_TIME => format!(
                "**Met** — workload time: the geometric mean of lifeboat's times over \
                 the {} workloads of issue 6 is {}× mimalloc's (target ≤ {TARGET_TIME:.1}×).",
                self.workloads,
                ratio2(g)
            ),
            Some(g) => format!(
                "**Missed** — workload time: the geometric mean of lifeboat's times over \
                 the {} workloads of issue 6 is {}× mimalloc's (target ≤ {TARGET_TIME:.1}×).",
                self.workloads,
                ratio2(g)
            ),
            None => "**Not measured** — workload time: a run failed, so there is no \
                     geometric mean."
                .to_owned(),
        };
        let rss = verdict(
            &self.rss,
            |r| r <= TARGET_RSS,
            |r| format!("{}×", ratio2(r)),
            &format!(
                "peak RSS: lifeboat's peak RSS ≤ {TARGET_RSS:.1}× mimalloc's on every workload"
            ),
        );
        let cross = verdict(
            &self.cross_speedup,
            |s| s >= TARGET_CROSS,
            ratio2,
            &format!(
                "cross-thread workloads: lifeboat at least {TARGET_CROSS:.0}× as fast as \
                 System on each (System's time ÷ lifeboat's ≥ {TARGET_CROSS:.0})"
            ),
        );
        [time, rss, cross]
    }
}

/// "**Met** — what: a (x), b (y)." or "**Missed** — what: missed on a (x);
/// met on b (y)."
fn verdict(
    items: &[(Kind, Option<f64>)],
    ok: impl Fn(f64) -> bool,
    show: impl Fn(f64) -> String,
    what: &str,
) -> String {
    if items.is_empty() {
        return format!("**Not measured** — {what}: no such workload was run.");
    }
    let list = |pred: &dyn Fn(Option<f64>) -> bool| {
        items
            .iter()
            .filter(|(_, v)| pred(*v))
            .map(|(k, v)| match v {
                Some(v) => format!("{k} {}", show(*v)),
                None => format!("{k} not measured"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let good = list(&|v| v.is_some_and(&ok));
    let bad = list(&|v| !v.is_some_and(&ok));
    if bad.is_empty() {
        format!("**Met** — {what}: {good}.")
    } else if good.is_empty() {
        format!("**Missed** — {what}: missed on {bad}.")
    } else {
        format!("**Missed** — {what}: missed on {bad}; met on {good}.")
    }
}

/// A ratio with two decimals (one above 10, three below 0.1).
pub fn ratio2(r: f64) -> String {
    if !r.is_finite() {
        "–".to_owned()
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

/// Milliseconds, three significant figures or more.
fn ms(s: f64) -> String {
    let ms = s * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// MiB with one decimal, from KiB.
fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// The markdown report: header with the machine, the targets, the chart,
/// the tables of medians and ratios for time and peak RSS, every sample;
/// then `appendix` (the micro-benchmark tables of `ratios`), if any.
pub fn markdown(r: &Results, meta: &Meta, appendix: Option<&str>) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# lifeboat benchmarks");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "<!-- Generated by ci/bench.sh (the `workloads` and `ratios` drivers of \
         lifeboat-bench). Do not edit by hand: run ci/bench.sh again. -->"
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "lifeboat against mimalloc (the reference), jemalloc and System (glibc \
         malloc), all used through `GlobalAlloc` from the same binary. Each \
         (workload, allocator) runs in its own child process, so the peak RSS \
         (`VmHWM`) is that allocator's alone; allocators are interleaved within \
         each round and the tables show medians over the rounds. Ratios are \
         this allocator's median ÷ the other's: below 1 is faster (or leaner)."
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "| | |");
    let _ = writeln!(w, "|---|---|");
    let _ = writeln!(w, "| date | {} |", meta.date);
    let _ = writeln!(w, "| CPU | {} |", meta.cpu);
    let _ = writeln!(w, "| cores | {} |", meta.cores);
    let _ = writeln!(w, "| kernel | {} |", meta.kernel);
    let _ = writeln!(w, "| rustc | {} |", meta.rustc);
    let load = |l: &Option<String>| l.clone().unwrap_or_else(|| "?".to_owned());
    let _ = writeln!(
        w,
        "| load average (1 min) | {} at start, {} at end |",
        load(&meta.load.0),
        load(&meta.load.1)
    );
    let speedup = |p: Option<f64>| p.map_or_else(|| "?".to_owned(), |p| format!("{p:.2}×"));
    let _ = writeln!(
        w,
        "| parallel speed-up of {n} spinning threads | {} at start, {} at end ({n}× = every core free) |",
        speedup(meta.parallel.0),
        speedup(meta.parallel.1),
        n = meta.cores,
    );
    let _ = writeln!(
        w,
        "| rounds | {} (scale {}), {:.0} s in all |",
        meta.rounds, meta.scale, meta.elapsed_s
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## Targets (issue 6)");
    let _ = writeln!(w);
    for sentence in Targets::of(r).sentences() {
        let _ = writeln!(w, "* {sentence}");
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Wall-clock figures from a shared machine are noisy (see the load average, \
         the parallel speed-up and the spreads below); compare within one run, not \
         across runs. False sharing (cache-scratch, cache-thrash) can only show \
         while the threads really run at the same time."
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "![Time and peak RSS of each allocator relative to mimalloc, per workload \
         (log scale)](benchmarks.svg)"
    );
    let _ = writeln!(w);

    let _ = writeln!(w, "## Workloads");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| workload | threads | cross-thread frees | what one run does |"
    );
    let _ = writeln!(w, "|---|---:|---|---|");
    for &k in &r.kinds {
        let _ = writeln!(
            w,
            "| {k} | {} | {} | {} |",
            k.threads(),
            if k.cross_thread() { "yes" } else { "no" },
            k.describe()
        );
    }
    let _ = writeln!(w);
    let variants: Vec<String> = r
        .kinds
        .iter()
        .filter_map(|k| k.variant_of().map(|of| format!("{k} (of {of})")))
        .collect();
    if !variants.is_empty() {
        let _ = writeln!(
            w,
            "The geometric means and the targets leave out the variants of workloads \
             already in them, so that no program counts twice: {}.",
            variants.join(", ")
        );
        let _ = writeln!(w);
    }

    for metric in [Metric::Time, Metric::PeakRss] {
        metric_tables(w, r, metric);
    }
    samples_table(w, r);

    if let Some(extra) = appendix {
        let _ = writeln!(w);
        let _ = writeln!(w, "---");
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# Micro-benchmarks (`ratios` driver, one process, same machine and run)"
        );
        let _ = writeln!(w);
        // The appendix has its own `##` headings; keep them below ours.
        for line in extra.lines() {
            if line.starts_with('#') {
                let _ = writeln!(w, "#{line}");
            } else {
                let _ = writeln!(w, "{line}");
            }
        }
    }
    s
}

fn metric_tables(w: &mut String, r: &Results, metric: Metric) {
    let (title, unit, fmt): (&str, &str, fn(f64) -> String) = match metric {
        Metric::Time => ("Wall time", "ms", ms),
        Metric::PeakRss => ("Peak RSS", "MiB", mib),
    };
    let _ = writeln!(w, "## {title}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Median {} ({unit}); spread = (max − min) ÷ median over the rounds.",
        title.to_lowercase()
    );
    let _ = writeln!(w);
    let _ = write!(w, "| workload |");
    for a in ORDER {
        let _ = write!(w, " {} | spread |", label(a));
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "|---|{}", "---:|---:|".repeat(ORDER.len()));
    for k in 0..r.kinds.len() {
        let _ = write!(w, "| {} |", r.kinds[k]);
        for a in ORDER {
            let c = r.cell(k, a);
            let sp = match metric {
                Metric::Time => c.wall_spread(),
                Metric::PeakRss => c.peak_spread(),
            };
            let _ = write!(
                w,
                " {} | {} |",
                opt(r.value(k, a, metric), fmt),
                opt(sp, |p| format!("{p:.0} %"))
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w);

    let others = |reference: Which| ORDER.into_iter().filter(move |&a| a != reference);
    let _ = writeln!(w, "Ratios of the medians ({}):", title.to_lowercase());
    let _ = writeln!(w);
    let _ = write!(w, "| workload |");
    for reference in [Which::Mimalloc, Which::System] {
        for a in others(reference) {
            let _ = write!(w, " {} ÷ {} |", label(a), label(reference));
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "|---|{}", "---:|".repeat(2 * (ORDER.len() - 1)));
    let row = |w: &mut String, name: &str, f: &dyn Fn(Which, Which) -> Option<f64>| {
        let _ = write!(w, "| {name} |");
        for reference in [Which::Mimalloc, Which::System] {
            for a in others(reference) {
                let _ = write!(w, " {} |", opt(f(a, reference), ratio2));
            }
        }
        let _ = writeln!(w);
    };
    for k in 0..r.kinds.len() {
        row(w, r.kinds[k].name(), &|a, b| r.ratio(k, a, b, metric));
    }
    row(w, "**geometric mean**", &|a, b| {
        r.geomean_ratio(a, b, metric)
    });
    let _ = writeln!(w);
}

fn samples_table(w: &mut String, r: &Results) {
    let _ = writeln!(w, "## Every sample");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Per round, in the order run. CPU = user + system time of the child \
         (all threads), median; base = RSS of the child before the workload \
         (binary, libraries, harness), median."
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| workload | allocator | wall time (ms) | peak RSS (MiB) | CPU (s) | base RSS (MiB) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---:|---:|");
    for k in 0..r.kinds.len() {
        for a in ORDER {
            let c = r.cell(k, a);
            let walls: Vec<String> = c.samples.iter().map(|s| ms(s.wall_s)).collect();
            let peaks: Vec<String> = c.samples.iter().map(|s| mib(s.peak_kib as f64)).collect();
            let mut walls = walls.join(", ");
            if !c.failures.is_empty() {
                let _ = write!(walls, " ({} failed: {})", c.failures.len(), c.failures[0]);
            }
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                r.kinds[k],
                label(a),
                walls,
                peaks.join(", "),
                opt(c.cpu(), |s| format!("{s:.2}")),
                opt(c.base_kib(), mib)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// SVG chart

/// Allocators drawn as bars (mimalloc is the 1× line), with their colours.
const BARS: [(Which, &str); 3] = [
    (Which::Lifeboat, "#1f6fb4"),
    (Which::Jemalloc, "#3a9a3a"),
    (Which::System, "#8c8c8c"),
];
const REF_COLOUR: &str = "#c62828";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick label of `2^e`: "1/4×"-style would be exact but less familiar, so
/// decimals: 0.25×, 0.5×, 1×, 2×, …
fn tick_label(e: i32) -> String {
    let v = 2f64.powi(e);
    if e >= 0 {
        format!("{v:.0}×")
    } else {
        let s = format!("{v:.4}");
        format!("{}×", s.trim_end_matches('0'))
    }
}

/// Log2 axis bounds (whole powers of two) covering `values` and 1, at
/// least ½ to 2.
fn log_domain(values: &[f64]) -> (i32, i32) {
    let (mut lo, mut hi) = (0i32, 0i32);
    for &v in values {
        if v > 0.0 && v.is_finite() {
            let l = v.log2();
            lo = lo.min((l - 0.05).floor() as i32);
            hi = hi.max((l + 0.05).ceil() as i32);
        }
    }
    (lo.min(-1), hi.max(1))
}

/// One panel: ratios to mimalloc of `metric`, bars per workload (and the
/// geometric mean) per allocator, log scale, 1× line.
struct Panel {
    x0: f64,
    width: f64,
    lo: i32,
    hi: i32,
}

impl Panel {
    fn x(&self, r: f64) -> f64 {
        let l = r.log2().clamp(self.lo as f64, self.hi as f64);
        self.x0 + (l - self.lo as f64) / (self.hi - self.lo) as f64 * self.width
    }
}

/// The chart: two panels side by side, wall time and peak RSS, each as
/// horizontal bars of the ratio to mimalloc (log scale; the red dashed line
/// is mimalloc), one group of bars per workload and one for the geometric
/// mean, numbers at the bar ends.
pub fn svg(r: &Results, meta: &Meta) -> String {
    const LABEL_X: f64 = 150.0;
    const PANEL_W: f64 = 300.0;
    const BAR_H: f64 = 13.0;
    const BAR_GAP: f64 = 2.0;
    const GROUP_GAP: f64 = 18.0;
    const TOP: f64 = 112.0;

    let groups = r.kinds.len() + 1;
    let group_h = BARS.len() as f64 * (BAR_H + BAR_GAP) - BAR_GAP + GROUP_GAP;
    let plot_bottom = TOP + groups as f64 * group_h;
    let height = plot_bottom + 78.0;
    let panel_x = [LABEL_X + 60.0, LABEL_X + 60.0 + PANEL_W + 130.0];
    let width = panel_x[1] + PANEL_W + 70.0;

    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(w, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="{:.0}" y="24" font-size="16" font-weight="bold" text-anchor="middle">lifeboat vs mimalloc, jemalloc, System: ratio to mimalloc (log scale)</text>"#,
        width / 2.0
    );
    let _ = writeln!(
        w,
        r##"<text x="{:.0}" y="43" fill="#444" text-anchor="middle">{}</text>"##,
        width / 2.0,
        esc(&format!(
            "medians of {} rounds, one process per run · {} · {} cores · {}",
            meta.rounds, meta.cpu, meta.cores, meta.date
        ))
    );

    // Legend.
    let mut lx = width / 2.0 - 230.0;
    for (a, colour) in BARS {
        let _ = writeln!(
            w,
            r#"<rect x="{lx:.0}" y="55" width="14" height="12" fill="{colour}"/><text x="{:.0}" y="65.5">{}</text>"#,
            lx + 19.0,
            label(a)
        );
        lx += 95.0;
    }
    let _ = writeln!(
        w,
        r#"<line x1="{lx:.0}" y1="61" x2="{:.0}" y2="61" stroke="{REF_COLOUR}" stroke-width="2" stroke-dasharray="5,3"/><text x="{:.0}" y="65.5">mimalloc = 1×</text>"#,
        lx + 18.0,
        lx + 23.0
    );

    // Workload labels, shared by both panels.
    let group_y = |g: usize| TOP + g as f64 * group_h;
    for g in 0..groups {
        let y = group_y(g) + (group_h - GROUP_GAP) / 2.0 + 4.0;
        let (name, weight) = match r.kinds.get(g) {
            Some(k) if k.cross_thread() => (format!("{k} *"), "normal"),
            Some(k) => (k.name().to_owned(), "normal"),
            None => ("geometric mean".to_owned(), "bold"),
        };
        let _ = writeln!(
            w,
            r#"<text x="{LABEL_X:.0}" y="{y:.1}" text-anchor="end" font-weight="{weight}">{}</text>"#,
            esc(&name)
        );
    }
    let sep_y = group_y(groups - 1) - GROUP_GAP / 2.0;
    let _ = writeln!(
        w,
        r##"<line x1="10" y1="{sep_y:.1}" x2="{:.0}" y2="{sep_y:.1}" stroke="#bbb"/>"##,
        width - 10.0
    );

    for (pi, metric) in [Metric::Time, Metric::PeakRss].into_iter().enumerate() {
        let value = |g: usize, a: Which| -> Option<f64> {
            if g < r.kinds.len() {
                r.ratio(g, a, Which::Mimalloc, metric)
            } else {
                r.geomean_ratio(a, Which::Mimalloc, metric)
            }
        };
        let all: Vec<f64> = (0..groups)
            .flat_map(|g| BARS.iter().filter_map(move |&(a, _)| value(g, a)))
            .collect();
        let (lo, hi) = log_domain(&all);
        let p = Panel {
            x0: panel_x[pi],
            width: PANEL_W,
            lo,
            hi,
        };
        let title = match metric {
            Metric::Time => "Wall time ÷ mimalloc (left of the red line: faster)",
            Metric::PeakRss => "Peak RSS ÷ mimalloc (left of the red line: leaner)",
        };
        let _ = writeln!(
            w,
            r#"<text x="{:.0}" y="{:.0}" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"#,
            p.x0 + PANEL_W / 2.0,
            TOP - 14.0,
            esc(title)
        );

        // Grid, ticks and axis.
        let step = if hi - lo > 8 { 2 } else { 1 };
        let mut e = lo;
        while e <= hi {
            let x = p.x(2f64.powi(e));
            let _ = writeln!(
                w,
                r##"<line x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{plot_bottom:.0}" stroke="#e2e2e2"/><text x="{x:.1}" y="{:.0}" text-anchor="middle" fill="#333">{}</text>"##,
                TOP - 6.0,
                plot_bottom + 18.0,
                tick_label(e)
            );
            e += step;
        }
        let _ = writeln!(
            w,
            r##"<line x1="{:.0}" y1="{plot_bottom:.0}" x2="{:.0}" y2="{plot_bottom:.0}" stroke="#333"/>"##,
            p.x0,
            p.x0 + PANEL_W
        );
        let axis_title = match metric {
            Metric::Time => "time ratio to mimalloc",
            Metric::PeakRss => "peak RSS ratio to mimalloc",
        };
        let _ = writeln!(
            w,
            r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="#333">{axis_title}</text>"##,
            p.x0 + PANEL_W / 2.0,
            plot_bottom + 36.0
        );

        // Bars.
        let one = p.x(1.0);
        for g in 0..groups {
            for (b, (a, colour)) in BARS.into_iter().enumerate() {
                let y = group_y(g) + b as f64 * (BAR_H + BAR_GAP);
                let ty = y + BAR_H - 2.5;
                match value(g, a) {
                    Some(v) if v > 0.0 && v.is_finite() => {
                        let x = p.x(v);
                        let (left, right) = (one.min(x), one.max(x));
                        let _ = writeln!(
                            w,
                            r#"<rect x="{left:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{colour}"><title>{}: {} {}× mimalloc</title></rect>"#,
                            (right - left).max(1.0),
                            esc(&r
                                .kinds
                                .get(g)
                                .map_or("geometric mean".to_owned(), |k| k.to_string())),
                            label(a),
                            ratio2(v)
                        );
                        let (tx, anchor) = if v >= 1.0 {
                            (right + 4.0, "start")
                        } else {
                            (left - 4.0, "end")
                        };
                        let _ = writeln!(
                            w,
                            r#"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="11">{}</text>"#,
                            ratio2(v)
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            w,
                            r##"<text x="{:.1}" y="{ty:.1}" font-size="11" fill="#a00">n/a</text>"##,
                            one + 4.0
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            w,
            r#"<line x1="{one:.1}" y1="{:.0}" x2="{one:.1}" y2="{plot_bottom:.0}" stroke="{REF_COLOUR}" stroke-width="2" stroke-dasharray="5,3"/>"#,
            TOP - 6.0
        );
    }

    let _ = writeln!(
        w,
        r##"<text x="10" y="{:.0}" fill="#444">* cross-thread workload (objects freed by a thread other than the allocating one). Geometric mean over the workloads above but the variants (pinned, flushing) of others.</text>"##,
        height - 10.0
    );
    let _ = writeln!(w, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall_s: f64, peak_kib: u64) -> Sample {
        Sample {
            wall_s,
            cpu_s: Some(wall_s),
            peak_kib,
            base_kib: 1000,
        }
    }

    /// Results where lifeboat's time is `t` and RSS `m` times mimalloc's,
    /// and System is 3× slower than mimalloc.
    fn results(t: f64, m: f64) -> Results {
        let mut r = Results::new(Kind::ALL.to_vec());
        for k in 0..Kind::ALL.len() {
            for a in Which::ALL {
                let (tf, mf) = match a {
                    Which::Lifeboat => (t, m),
                    Which::System => (3.0, 1.5),
                    Which::Jemalloc => (1.2, 0.9),
                    Which::Mimalloc => (1.0, 1.0),
                };
                for round in 0..3 {
                    let jitter = 1.0 + round as f64 * 0.01;
                    r.cell_mut(k, a)
                        .samples
                        .push(sample(0.5 * tf * jitter, (10_000.0 * mf) as u64));
                }
            }
        }
        r
    }

    #[test]
    fn medians_and_means() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
        let g = geomean([Some(2.0), Some(8.0)].into_iter()).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
        assert_eq!(geomean([Some(2.0), None].into_iter()), None);
    }

    #[test]
    fn targets_met_and_missed() {
        // The targets cover issue 6's five workloads, not handoff.
        let t = Targets::of(&results(0.9, 1.05));
        assert_eq!(t.workloads, 5);
        assert!(t.rss.iter().all(|(k, _)| k.targeted()) && t.rss.len() == 5);
        assert!(t.cross_speedup.iter().all(|(k, _)| *k != Kind::Handoff));
        let [time, rss, cross] = t.sentences();
        assert!(time.starts_with("**Met**"), "{time}");
        assert!(rss.starts_with("**Met**"), "{rss}");
        assert!(cross.starts_with("**Met**"), "{cross}");
        let [time, rss, cross] = Targets::of(&results(1.6, 1.3)).sentences();
        assert!(
            time.starts_with("**Missed**") && time.contains("1.60×"),
            "{time}"
        );
        assert!(
            rss.starts_with("**Missed**") && rss.contains("larson 1.30×"),
            "{rss}"
        );
        assert!(cross.starts_with("**Missed**"), "{cross}");
    }

    #[test]
    fn geometric_means_leave_out_the_variants() {
        let mut r = results(0.5, 1.0);
        let before = r.geomean_ratio(Which::Lifeboat, Which::Mimalloc, Metric::Time);
        // The variants run 100× slower: the means must not move.
        for (k, kind) in Kind::ALL.into_iter().enumerate() {
            if !kind.in_mean() {
                for s in &mut r.cell_mut(k, Which::Lifeboat).samples {
                    s.wall_s *= 100.0;
                }
            }
        }
        assert!(Kind::ALL.iter().any(|k| !k.in_mean()));
        let after = r.geomean_ratio(Which::Lifeboat, Which::Mimalloc, Metric::Time);
        assert_eq!(before, after);
        assert!((after.unwrap() - 0.5).abs() < 1e-9);
        let md = markdown(&r, &Meta::default(), None);
        assert!(md.contains("xmalloc-one-core (of xmalloc), xmalloc-across-cores (of xmalloc)"));
        assert!(md.contains("larson-flush (of larson)"));
    }

    #[test]
    fn missing_cells_are_reported_not_guessed() {
        let mut r = results(0.9, 1.0);
        r.cell_mut(0, Which::Lifeboat).samples.clear();
        r.cell_mut(0, Which::Lifeboat)
            .failures
            .push("exit status 134".into());
        let [time, rss, _] = Targets::of(&r).sentences();
        assert!(time.starts_with("**Not measured**"), "{time}");
        assert!(rss.contains("larson not measured"), "{rss}");
        let md = markdown(&r, &Meta::default(), None);
        assert!(md.contains("1 failed: exit status 134"));
    }

    #[test]
    fn markdown_has_every_table() {
        let md = markdown(&results(0.9, 1.05), &Meta::default(), Some("## x\n| a |"));
        for needle in [
            "## Targets",
            "## Wall time",
            "## Peak RSS",
            "lifeboat ÷ mimalloc",
            "lifeboat ÷ System",
            "**geometric mean**",
            "benchmarks.svg",
            "### x",
        ] {
            assert!(md.contains(needle), "missing {needle:?}");
        }
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let svg = svg(&results(0.5, 4.0), &Meta::default());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("mimalloc = 1×"));
        assert!(svg.contains(">1×</text>") && svg.contains(">4×</text>"));
        assert!(svg.contains("geometric mean"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn axis_domain() {
        assert_eq!(log_domain(&[1.0]), (-1, 1));
        assert_eq!(log_domain(&[0.3, 5.0]), (-2, 3));
        assert_eq!(log_domain(&[f64::NAN, 0.0]), (-1, 1));
        assert_eq!(tick_label(-2), "0.25×");
        assert_eq!(tick_label(-1), "0.5×");
        assert_eq!(tick_label(3), "8×");
    }
}
