//! The kernel's cost of first touching anonymous memory, in 2 MiB huge
//! pages (`MADV_HUGEPAGE`) and in 4 KiB pages, on this machine.
//!
//! ```text
//! cargo run --release -p lifeboat-bench --bin thp_touch [MIB (64)] [RUNS (3)]
//! ```
//!
//! Each run maps `MIB` MiB (2 MiB-aligned), writes one byte a page, and
//! prints the time per 2 MiB for 4 KiB pages and for huge pages. In a
//! virtual machine whose host backs guest memory lazily, the first huge
//! pages a guest hands out after boot (or after the host took them back)
//! are much slower to clear than the ones it reuses: lifeboat's arena is
//! on huge pages (`Config::huge_pages`), so its first use of each 2 MiB
//! pays that (see `docs/performance-notes.md`).

use std::process::ExitCode;
use std::time::Instant;

const HUGE: usize = 2 << 20;

/// Milliseconds to touch every 4 KiB page of `bytes` of fresh anonymous
/// memory, advised `MADV_HUGEPAGE` or not.
fn touch(bytes: usize, huge: bool) -> Option<f64> {
    let len = bytes + HUGE;
    // SAFETY: a private anonymous mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let p = (raw as usize).next_multiple_of(HUGE) as *mut u8;
    if huge {
        // SAFETY: `p..p + bytes` lies inside the mapping.
        unsafe { libc::madvise(p.cast(), bytes, libc::MADV_HUGEPAGE) };
    }
    let start = Instant::now();
    for off in (0..bytes).step_by(4096) {
        // SAFETY: inside the mapping, which is writable.
        unsafe { p.add(off).write_volatile(1) };
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    // SAFETY: the mapping made above, unused from here on.
    unsafe { libc::munmap(raw, len) };
    Some(ms)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let bytes = mib.max(2).next_multiple_of(2) << 20;
    let per_huge = |ms: f64| ms / (bytes / HUGE) as f64;
    for run in 1..=runs {
        let (Some(small), Some(huge)) = (touch(bytes, false), touch(bytes, true)) else {
            eprintln!("thp_touch: mmap failed");
            return ExitCode::FAILURE;
        };
        println!(
            "run {run}: 4 KiB pages {:.2} ms per 2 MiB, huge pages {:.2} ms per 2 MiB",
            per_huge(small),
            per_huge(huge)
        );
    }
    ExitCode::SUCCESS
}
