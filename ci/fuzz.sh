#!/usr/bin/env bash
# Fuzzes operation sequences (tests/fuzz, target `ops`) for SECONDS
# (default 120) on the stable toolchain: libfuzzer-sys with SanitizerCoverage
# passes enabled through RUSTFLAGS (no nightly, no ASan; the model and
# Heap::verify are the oracle, plus debug assertions). Not part of ci/test.sh.
# Crashes land in tests/fuzz/artifacts/; the corpus in tests/fuzz/corpus/ops.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
SECONDS_TO_RUN="${1:-120}"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks --cfg fuzzing"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# An explicit --target keeps RUSTFLAGS (and so the coverage passes) off the
# build scripts, which cannot link without libFuzzer.
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --target "$TRIPLE" --bin ops
mkdir -p corpus/ops artifacts
"$CARGO_TARGET_DIR/$TRIPLE/release/ops" corpus/ops \
  -artifact_prefix=artifacts/ \
  -max_total_time="$SECONDS_TO_RUN" \
  -max_len=4096 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1
