#!/usr/bin/env bash
# Compares lifeboat at two revisions on one multi-threaded workload.
#
# Builds the `workloads` driver of lifeboat-bench at BASE and at NEW (each
# from a temporary git worktree, or "." for the working tree as it is),
# then runs `workloads --child WORKLOAD lifeboat` with the two builds
# alternately: PAIRS pairs, base first in one pair and new first in the
# next, so that a drift in the machine's load falls on both. Prints, for
# wall time and CPU time, the median over the pairs of new / base, how
# many pairs new was faster, and each build's median (and peak RSS).
#
# Wall-clock time on a shared two-core machine moves by several percent
# from run to run even between two identical builds: run the comparison
# of a build with itself (`ci/compare.sh HEAD HEAD`) to see this
# machine's spread before reading a ratio near 1. --cachegrind adds the
# figures that do not move with load: instructions and first-level data
# cache misses of one run of each build at --scale 0.2, under
# `valgrind --tool=cachegrind --cache-sim=yes` (a model of one core's
# caches: it does not see lines moving between cores).
#
# A build's code layout moves its time too: a change that adds or removes
# a few hundred bytes anywhere in lifeboat shifts the workload driver's hot
# loops (the inlined fast paths) across instruction-fetch boundaries. Two
# builds that ran the same instructions (cachegrind) read mstress 1.05
# apart over 30 pairs, and 1.00 with --aligned, which builds both sides
# with every function aligned to 64 bytes and every jump target to 32:
# use it to judge a change, and the plain build for the figures users get.
#
# usage: ci/compare.sh BASE NEW [--workload W] [--pairs N] [--cpus LIST]
#                      [--cachegrind] [--aligned] [-- CHILD-ARGS...]
#   BASE, NEW       git revisions; "." is the working tree, uncommitted
#                   changes included
#   --workload W    larson (default), xmalloc, mstress, cache-scratch,
#                   cache-thrash
#   --pairs N       pairs of runs (default 20)
#   --cpus LIST     run the children under `taskset -c LIST` (e.g. 0: one
#                   core, where time follows instructions more closely)
#   --cachegrind    also report cachegrind's counts (needs valgrind)
#   --aligned       build both sides with functions and jump targets
#                   aligned (see above), in target directories of their own
#   CHILD-ARGS      passed to every child, e.g. -- --scale 2
#
# Builds go to target/compare/ (or $CARGO_TARGET_DIR/compare/); the
# worktrees are removed again. Reports figures, never asserts on them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=ci/pairs.sh
. "$ROOT/ci/pairs.sh"

[ "$#" -ge 2 ] || usage
BASE="$1"
NEW="$2"
shift 2
WORKLOAD=larson
PAIRS=20
CPUS=""
CACHEGRIND=0
ALIGNED=0
CHILD_ARGS=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --workload) WORKLOAD="${2:?--workload needs a name}"; shift ;;
        --pairs) PAIRS="${2:?--pairs needs a number}"; shift ;;
        --cpus) CPUS="${2:?--cpus needs a CPU list}"; shift ;;
        --cachegrind) CACHEGRIND=1 ;;
        --aligned) ALIGNED=1 ;;
        --) shift; CHILD_ARGS=("$@"); break ;;
        *) echo "compare.sh: unknown option '$1'" >&2; usage ;;
    esac
    shift
done
case "$PAIRS" in
    '' | *[!0-9]* | 0) echo "compare.sh: --pairs must be a positive integer, got '$PAIRS'" >&2; exit 2 ;;
esac
if [ "$CACHEGRIND" = 1 ] && ! command -v valgrind >/dev/null; then
    echo "compare.sh: --cachegrind needs valgrind" >&2
    exit 2
fi

OUT="${CARGO_TARGET_DIR:-$ROOT/target}/compare"
mkdir -p "$OUT"
# Absolute: the builds run from the worktrees.
OUT="$(cd "$OUT" && pwd)"

# build REV LABEL: builds the workloads driver at REV, copies it to
# $OUT/workloads-LABEL and prints that path.
build() {
    local rev="$1" label="$2" src wt="" dir flags="${RUSTFLAGS:-}"
    dir="$OUT/build-$label"
    if [ "$ALIGNED" = 1 ]; then
        dir="$OUT/build-$label-aligned"
        flags="$flags -C llvm-args=-align-all-functions=6 -C llvm-args=-align-all-nofallthru-blocks=5"
    fi
    if [ "$rev" = "." ]; then
        src="$ROOT"
    else
        local sha
        sha="$(git rev-parse --verify "$rev^{commit}")"
        wt="$OUT/worktree-$label"
        git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
        git worktree add --detach "$wt" "$sha" >/dev/null 2>&1
        src="$wt"
    fi
    # A target directory a label, kept between runs, so that jemalloc's C
    # sources build once. lifeboat and the driver are always rebuilt: a
    # file's modification time alone (a worktree made again, a clock set
    # back) can leave cargo taking an old build for a fresh one.
    # (`build` runs in a command substitution, where `set -e` does not
    # hold: a failed build must stop the script here, not leave it to
    # copy and time the binary of an earlier build.)
    (cd "$src" &&
        CARGO_TARGET_DIR="$dir" cargo clean --quiet --release \
            -p lifeboat -p lifeboat-bench &&
        rm -f "$dir/release/workloads" &&
        CARGO_TARGET_DIR="$dir" RUSTFLAGS="$flags" cargo build --quiet --release \
            -p lifeboat-bench --bin workloads) >&2 || {
        echo "compare.sh: the build of $rev failed" >&2
        return 1
    }
    cp "$dir/release/workloads" "$OUT/workloads-$label" || return 1
    if [ -n "$wt" ]; then
        git worktree remove --force "$wt"
    fi
    echo "$OUT/workloads-$label"
}

echo "building $BASE and $NEW ..." >&2
BASE_BIN="$(build "$BASE" base)"
NEW_BIN="$(build "$NEW" new)"

RUNNER=()
if [ -n "$CPUS" ]; then
    RUNNER=(taskset -c "$CPUS")
fi

# One child run of lifeboat, each build; each prints "wall cpu peak_kib".
run_base() { run_child "$BASE_BIN" "$WORKLOAD" lifeboat "${CHILD_ARGS[@]}"; }
run_new() { run_child "$NEW_BIN" "$WORKLOAD" lifeboat "${CHILD_ARGS[@]}"; }

RESULTS="$OUT/pairs.txt"
: >"$RESULTS"
echo "$PAIRS pairs of $WORKLOAD${CPUS:+ on CPUs $CPUS}$([ "$ALIGNED" = 1 ] && echo ", aligned builds") ${CHILD_ARGS[*]:-}" >&2
run_pairs "$RESULTS" "$PAIRS" run_base run_new

pairs_table "$RESULTS" "$PAIRS" "$WORKLOAD, $PAIRS pairs" base new

if [ "$CACHEGRIND" = 1 ]; then
    echo
    echo "| cachegrind, --scale 0.2 | base | new | new / base |"
    echo "|---|---:|---:|---:|"
    declare -A CG
    for label in base new; do
        bin="$OUT/workloads-$label"
        log="$OUT/cachegrind-$label.txt"
        valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
            "$bin" --child "$WORKLOAD" lifeboat --scale 0.2 >/dev/null 2>"$log"
        CG[$label-ir]="$(awk '/I *refs:/ { gsub(",", "", $4); print $4 }' "$log")"
        CG[$label-d1]="$(awk '/D1 *misses:/ { gsub(",", "", $4); print $4 }' "$log")"
    done
    for k in ir d1; do
        name="instructions"
        [ "$k" = d1 ] && name="L1 data misses"
        printf '| %s | %s | %s | %.3f |\n' "$name" "${CG[base-$k]}" "${CG[new-$k]}" \
            "$(awk -v b="${CG[base-$k]}" -v n="${CG[new-$k]}" 'BEGIN { print n / b }')"
    done
fi
