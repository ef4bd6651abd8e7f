#!/usr/bin/env bash
# Compares lifeboat with another allocator on one multi-threaded workload.
#
# Builds the `workloads` driver of lifeboat-bench from the working tree
# (release), then runs `workloads --child WORKLOAD lifeboat` and
# `workloads --child WORKLOAD PEER` alternately: PAIRS pairs, the peer
# first in one pair and lifeboat first in the next, so that a drift in
# the machine's load falls on both. Prints, for wall time, CPU time and
# peak RSS, the median over the pairs of lifeboat / peer, how many pairs
# lifeboat was faster, and each side's median.
#
# `ci/bench.sh` measures every allocator on every workload in rounds;
# this is the quicker, closer look at one workload against one peer (on
# a shared two-core machine, a ratio from a few dozen pairs moves by
# several percent from one set to the next: run two sets before reading
# one near 1). Each run is a fresh process, so what a process pays once
# (its first touch of fresh memory) is in every figure.
#
# usage: ci/versus.sh WORKLOAD [PEER (jemalloc)] [--pairs N (21)]
#                     [--cpus LIST] [-- CHILD-ARGS...]
#   WORKLOAD        a workload of the driver (docs/benchmarks.md), e.g.
#                   larson-one-core
#   PEER            jemalloc, mimalloc or system
#   --pairs N       pairs of runs
#   --cpus LIST     run every child under `taskset -c LIST`
#   CHILD-ARGS      passed to every child, e.g. -- --scale 2
#
# Builds to $CARGO_TARGET_DIR (or target/). Reports figures, never
# asserts on them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/pairs.sh
. "$ROOT/ci/pairs.sh"

[ "$#" -ge 1 ] || usage
WORKLOAD="$1"
shift
PEER=jemalloc
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    PEER="$1"
    shift
fi
case "$PEER" in
    jemalloc | mimalloc | system) ;;
    *) echo "versus.sh: PEER must be jemalloc, mimalloc or system, got '$PEER'" >&2; exit 2 ;;
esac
PAIRS=21
CPUS=""
CHILD_ARGS=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --pairs) PAIRS="${2:?--pairs needs a number}"; shift ;;
        --cpus) CPUS="${2:?--cpus needs a CPU list}"; shift ;;
        --) shift; CHILD_ARGS=("$@"); break ;;
        *) echo "versus.sh: unknown option '$1'" >&2; usage ;;
    esac
    shift
done
case "$PAIRS" in
    '' | *[!0-9]* | 0) echo "versus.sh: --pairs must be a positive integer, got '$PAIRS'" >&2; exit 2 ;;
esac

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
echo "building the workloads driver ..." >&2
cargo build --quiet --release -p lifeboat-bench --bin workloads
BIN="$TARGET/release/workloads"

RUNNER=()
if [ -n "$CPUS" ]; then
    RUNNER=(taskset -c "$CPUS")
fi

RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
echo "$PAIRS pairs of $WORKLOAD, lifeboat and $PEER${CPUS:+ on CPUs $CPUS} ${CHILD_ARGS[*]:-}" >&2
# One child run of each allocator; each prints "wall cpu peak_kib".
run_peer() { run_child "$BIN" "$WORKLOAD" "$PEER" "${CHILD_ARGS[@]}"; }
run_lifeboat() { run_child "$BIN" "$WORKLOAD" lifeboat "${CHILD_ARGS[@]}"; }
run_pairs "$RESULTS" "$PAIRS" run_peer run_lifeboat

pairs_table "$RESULTS" "$PAIRS" "$WORKLOAD, $PAIRS pairs" "$PEER" lifeboat
