#!/usr/bin/env bash
# Loom model checks of lifeboat's concurrent protocols (loom-tests/).
#
# Every file in loom-tests/tests/ models one protocol with the shipped code
# (under --cfg loom lifeboat's atomics, cells and locks come from loom) and
# has a broken twin: the same model with one fault injected into the real
# protocol step (lifeboat::model::Fault), which the test requires loom to
# catch. This script builds them in release mode, runs every model with a
# bounded number of preemptions and prints, per model, loom's execution
# count and wall time for the model and its twin, and the paths covered.
#
# usage: ci/loom.sh [MODEL...]      (default: every loom-tests/tests/*.rs)
#
# Environment:
#   LOOM_MAX_PREEMPTIONS  preemption bound per execution (default here: 3).
#                         With 4, capture alone takes over 15 minutes:
#                         keep every model bounded in CI.
#   CARGO_TARGET_DIR      default: target/loom (kept apart from the normal
#                         build, which --cfg loom would otherwise rebuild)
#
# Figures with the default bound, on 2 shared cores (executions of the
# correct model / execution at which the twin was caught, wall time):
#
#   arena_accounting  178,126 / 1       35 s   twin WeakLockAcquire
#   block_cache         2,412 / 1      0.2 s   twin BlockCacheSplitTake
#   capture           169,620 / 18,566  47 s   twin CaptureTrustsPoll
#   growth_runs           113 / 36     0.1 s   twin GrowthRunSplitGrow
#   kswapd_wakeup         193 / 13     0.1 s   twin WeakKswapdWake
#   mempool_wakeup        796 / 4      0.1 s   twin MempoolNotifyEarly
#   remote_batch          847 / 1      0.2 s   twin ChainCountedAsOne
#   remote_free        52,285 / 1       18 s   twin WeakRemotePush
#   reserve_slabs     135,632 / 1       65 s   twin ReserveListedAsOrdinary
#   slab_ownership     30,672 / 226     12 s   twin SettleSkipsRecheck
#                             / 305            twin DetachSplitsWord
#   spent_reserve       1,028 / 121    0.5 s   twin SpentLeftUnlisted
#
# The whole set takes about 3 minutes, plus two for the build (about
# 5 min 15 s in all on 2026-12-07, rebuilding lifeboat and the models).
# A twin that loom no longer catches fails the run, and so does a model whose
# executions no longer reach the paths it exists for.
#
# One model, deeper, locally (with 4 preemptions the slab and arena models
# take 2 to 11 minutes each, and capture over 15 minutes (its twin is then
# caught after about 300,000 executions); kswapd_wakeup and mempool_wakeup
# finish in about a second even with LOOM_MAX_PREEMPTIONS=10; add
# LOOM_PROGRESS=1 for a line every 100,000 executions):
#
#   LOOM_MAX_PREEMPTIONS=4 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
#     cargo test -p lifeboat-loom-tests --release --test remote_free -- --nocapture
#
# or, with this script's summary: LOOM_MAX_PREEMPTIONS=4 bash ci/loom.sh remote_free
#
# To see a failing interleaving, run the failing test alone with
# LOOM_LOG=trace LOOM_LOCATION=1 (very verbose: send it to a file and read
# the last execution). Models pass rights as explicit flags (NORETRY: no
# direct reclaim), since loom runs every model thread on one OS thread and
# thread-local rights would be shared. Under loom the futex (wait_on,
# wake_all, RawLock's sleep) and Mempool's condition variable block until
# woken, with no timeout: a lost wake-up shows as a deadlock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export RUSTFLAGS="--cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/loom}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# Loom's failure reports are long enough without std's backtraces.
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

if [ "$#" -gt 0 ]; then
    MODELS=("$@")
else
    MODELS=()
    for f in loom-tests/tests/*.rs; do
        MODELS+=("$(basename "$f" .rs)")
    done
fi

LOGS="$CARGO_TARGET_DIR/loom-logs"
mkdir -p "$LOGS"

now() { date +%s.%N; }

echo "== loom: building models (release, --cfg loom)"
t0=$(now)
cargo test -p lifeboat-loom-tests --release --tests --no-run
build_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')

status=0
declare -a SUMMARY
for m in "${MODELS[@]}"; do
    echo "== loom: $m (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
    log="$LOGS/$m.log"
    t=$(now)
    if cargo test -q -p lifeboat-loom-tests --release --test "$m" -- --nocapture >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    secs=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    # (the test harness may print "test NAME ... " in front of a line)
    grep -o 'loom-summary:.*' "$log" | sed 's/^loom-summary: /   /' || true
    if [ "$result" = FAILED ]; then
        echo "   --- $m FAILED; end of $log:"
        tail -n 60 "$log" | sed 's/^/   | /'
    fi
    SUMMARY+=("$(printf '%-18s %-6s %8.1f s' "$m" "$result" "$secs")")
done

echo
echo "== loom summary (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, build $build_s s)"
for line in "${SUMMARY[@]}"; do
    echo "   $line"
done
echo "   logs: $LOGS"
exit "$status"
