#!/usr/bin/env bash
# Benchmarks of lifeboat against System, mimalloc and jemalloc.
#
# 1. Runs the `ratios` driver of lifeboat-bench (release build): every
#    micro-benchmark for every allocator, interleaved, in one process;
#    prints a markdown table of median ns/op with ratios to mimalloc and to
#    System, and writes the same table to target/bench-results.md.
# 2. Runs the `workloads` driver: larson, xmalloc, mstress, cache-scratch
#    and cache-thrash for every allocator, each run in its own child process
#    (so peak RSS is per allocator), interleaved over several rounds; writes
#    docs/benchmarks.md (machine, medians and ratios of wall time and peak
#    RSS, the issue's targets as met/missed, and the ratios tables of step 1)
#    and the chart docs/benchmarks.svg, both from the measured numbers.
#
# usage: ci/bench.sh [--criterion] [--no-workloads] [--workloads-rounds N]
#                    [--workloads-scale X] [--workloads-filter SUBSTRING]
#                    [ratios options...]
#   --criterion          also run the criterion suite (cargo bench --bench alloc)
#   --no-workloads       only the ratios table (what this script did before)
#   --workloads-rounds N rounds of the workload drivers (default 15)
#   --workloads-scale X  work per run x X (default 1; live sets do not change)
#   --workloads-filter S only workloads whose name contains S
#   other options go to the ratios driver: --rounds N, --sample-ms MS,
#   --filter SUBSTRING
#
# Takes about two minutes on two cores. Honours CARGO_TARGET_DIR for the
# build; the results always go to target/bench-results.md and docs/ under
# the repository root. Figures are reported, never asserted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CRITERION=0
WORKLOADS=1
WARGS=()
ARGS=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --criterion) CRITERION=1 ;;
        --no-workloads) WORKLOADS=0 ;;
        --workloads-rounds | --workloads-scale | --workloads-filter)
            if [ "$#" -lt 2 ]; then
                echo "bench.sh: $1 needs a value" >&2
                exit 2
            fi
            WARGS+=("--${1#--workloads-}" "$2")
            shift
            ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done

OUT="$ROOT/target/bench-results.md"
mkdir -p "$(dirname "$OUT")"

cargo build --release -p lifeboat-bench --bin ratios --bin workloads
{
    echo "<!-- ci/bench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -srm), $(rustc --version) -->"
    echo
    cargo run --quiet --release -p lifeboat-bench --bin ratios -- "${ARGS[@]+"${ARGS[@]}"}"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
echo
echo "(written to $OUT)" >&2

if [ "$WORKLOADS" -eq 1 ]; then
    DOCS="$ROOT/docs"
    mkdir -p "$DOCS"
    # The driver prints the same markdown on stdout; the files are what
    # counts, so keep the terminal for its progress lines.
    cargo run --quiet --release -p lifeboat-bench --bin workloads -- \
        --rounds 15 "${WARGS[@]+"${WARGS[@]}"}" \
        --markdown "$DOCS/benchmarks.md.tmp" --svg "$DOCS/benchmarks.svg.tmp" \
        --append "$OUT" >/dev/null
    mv "$DOCS/benchmarks.md.tmp" "$DOCS/benchmarks.md"
    mv "$DOCS/benchmarks.svg.tmp" "$DOCS/benchmarks.svg"
    echo
    sed -n '/^## Targets/,/^Wall-clock/p' "$DOCS/benchmarks.md"
    echo "(written to $DOCS/benchmarks.md and $DOCS/benchmarks.svg)" >&2
fi

if [ "$CRITERION" -eq 1 ]; then
    cargo bench -p lifeboat-bench --bench alloc
fi
