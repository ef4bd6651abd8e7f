//! What the reports say about the process and the machine, read from
//! `/proc` without any dependency: peak and current RSS, CPU time, CPU
//! model, kernel, load average, the date.
//!
//! Every reader returns `None` (or a placeholder) where `/proc` does not
//! have the figure, so the drivers still run elsewhere; they are only
//! meaningful on Linux.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A `kB` field of `/proc/self/status` (`VmHWM` is the peak RSS, `VmRSS`
/// the current one), in KiB.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

/// User + system CPU time of this process so far (all its threads, live
/// and exited), in seconds, from `/proc/self/stat`; resolution one clock
/// tick (usually 10 ms).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    Some(ticks as f64 / clock_ticks_per_second() as f64)
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may contain spaces, so fields are counted from
/// the last `)`: utime and stime are fields 14 and 15.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `AT_CLKTCK` from the auxiliary vector (`/proc/self/auxv`), else 100.
fn clock_ticks_per_second() -> u64 {
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 100;
    };
    let word = |b: &[u8]| -> u64 {
        let mut w = [0u8; WORD];
        w.copy_from_slice(b);
        usize::from_ne_bytes(w) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .find(|pair| word(&pair[..WORD]) == AT_CLKTCK)
        .map(|pair| word(&pair[WORD..]))
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// The CPU model (`model name` of `/proc/cpuinfo`, or another field that
/// names it on non-x86 machines).
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    ["model name", "Model", "cpu model", "Processor", "uarch"]
        .iter()
        .find_map(|key| {
            info.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Logical processors listed in `/proc/cpuinfo` (`None` if unreadable).
pub fn cpuinfo_processors() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let n = info
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count();
    (n > 0).then_some(n)
}

/// `uname -srm`-like: kernel name, release, machine.
pub fn kernel() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned())
    };
    format!(
        "{} {} {}",
        read("/proc/sys/kernel/ostype"),
        read("/proc/sys/kernel/osrelease"),
        std::env::consts::ARCH
    )
}

/// The one-minute load average, where there is one.
pub fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_owned)
}

/// How many of `threads` CPU-bound threads really ran at the same time
/// just now: `threads × t(1) / t(threads)` for a fixed spin loop per
/// thread, best of three runs each (about 0.2 s in all). Near `threads`
/// when the cores are free; near 1 when other processes hold them, which
/// is what makes multi-threaded wall times noisy.
pub fn parallel_speedup(threads: usize) -> f64 {
    fn spin(n: u64) -> u64 {
        let mut x = 1u64;
        for i in 0..n {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
        x
    }
    let threads = threads.max(1);
    let run = |t: usize| -> Duration {
        (0..3)
            .map(|_| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..t {
                        s.spawn(|| black_box(spin(10_000_000)));
                    }
                });
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let one = run(1).as_secs_f64();
    let many = run(threads).as_secs_f64();
    if many > 0.0 {
        threads as f64 * one / many
    } else {
        threads as f64
    }
}

/// The version of the compiler that built this crate (`rustc --version`,
/// recorded by the build script).
pub const RUSTC: &str = env!("LIFEBOAT_BENCH_RUSTC");

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn format_utc(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(1234));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(1000));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
        assert_eq!(parse_status_kib(s, "Name"), None);
    }

    #[test]
    fn stat_ticks_skip_the_command_name() {
        let s = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0";
        assert_eq!(parse_stat_ticks(s), Some(333));
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn this_process_is_visible() {
        // Linux only in practice; elsewhere the readers return None.
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(status_kib("VmHWM").is_some_and(|k| k > 0));
            assert!(cpu_seconds().is_some());
        }
        assert!(!RUSTC.is_empty());
        // Any positive figure will do: the machine may be busy.
        assert!(parallel_speedup(2) > 0.0);
    }
}
