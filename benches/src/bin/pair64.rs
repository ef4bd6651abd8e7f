//! N alloc/free pairs of 64 bytes through `GlobalAlloc`, for callgrind.
//!
//! ```text
//! pair64 lifeboat|system|mimalloc|jemalloc [N (1000000)] [SIZE (64)]
//! ```
//!
//! `ci/callgrind.sh` runs it with two values of N and divides the
//! difference of the instruction counts by the difference of N, which
//! cancels start-up and first-touch costs and leaves instructions per pair.

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout};
use std::hint::black_box;
use std::process::ExitCode;

use lifeboat_bench::{with_allocator, Which};

const USAGE: &str = "usage: pair64 lifeboat|system|mimalloc|jemalloc [N (1000000)] [SIZE (64)]";

#[inline(never)]
fn run<A: GlobalAlloc>(a: &A, n: u64, size: usize) {
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    for _ in 0..n {
        // The size is opaque to the compiler, as it is to a C allocator.
        let l = black_box(layout);
        // SAFETY: `l` has a non-zero size (checked in `main`).
        let p = unsafe { a.alloc(l) };
        if p.is_null() {
            handle_alloc_error(l);
        }
        let p = black_box(p);
        // SAFETY: `p` came from `a.alloc(l)` just above and is freed once.
        unsafe { a.dealloc(p, l) };
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(which) = args.next().as_deref().and_then(Which::from_name) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 1_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("pair64: bad N: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let size: usize = match args.next().map(|s| s.parse()) {
        None => 64,
        Some(Ok(s)) if s > 0 => s,
        _ => {
            eprintln!("pair64: SIZE must be a positive integer\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    with_allocator!(which, |a| run(a, n, size));
    ExitCode::SUCCESS
}
