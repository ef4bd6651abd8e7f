#!/usr/bin/env bash
# Benchmarks of lifeboat against System, mimalloc and jemalloc.
#
# Runs the `ratios` driver of lifeboat-bench (release build): every workload
# for every allocator, interleaved, in one process; prints a markdown table
# of median ns/op with ratios to mimalloc and to System, and writes the same
# table to target/bench-results.md.
#
# usage: ci/bench.sh [--criterion] [ratios options...]
#   --criterion   also run the criterion suite (cargo bench --bench alloc)
#   other options go to the ratios driver: --rounds N, --sample-ms MS,
#   --filter SUBSTRING
#
# Honours CARGO_TARGET_DIR for the build; the results file always goes to
# target/bench-results.md under the repository root. Figures are reported,
# never asserted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CRITERION=0
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --criterion) CRITERION=1 ;;
        *) ARGS+=("$arg") ;;
    esac
done

OUT="$ROOT/target/bench-results.md"
mkdir -p "$(dirname "$OUT")"

cargo build --release -p lifeboat-bench --bin ratios
{
    echo "<!-- ci/bench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -srm), $(rustc --version) -->"
    echo
    cargo run --quiet --release -p lifeboat-bench --bin ratios -- "${ARGS[@]+"${ARGS[@]}"}"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
echo
echo "(written to $OUT)" >&2

if [ "$CRITERION" -eq 1 ]; then
    cargo bench -p lifeboat-bench --bench alloc
fi
