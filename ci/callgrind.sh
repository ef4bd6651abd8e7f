#!/usr/bin/env bash
# Instructions per 64-byte alloc/free pair, per allocator, under callgrind.
#
# Builds the `pair64` bin of lifeboat-bench in release, runs it under
# `valgrind --tool=callgrind` with N and 2N pairs for each allocator, and
# prints (Ir(2N) - Ir(N)) / N as a markdown table: the difference cancels
# process start-up and first-touch costs. Instruction counts are exact and
# repeatable, unlike wall-clock time, so this is the figure to watch on a
# machine without performance counters.
#
# usage: ci/callgrind.sh [N (100000)] [allocator ...]
#   allocators default to: lifeboat system mimalloc jemalloc
# SIZE=<bytes> (env, default 64) measures pairs of that size instead.
# Honours CARGO_TARGET_DIR. Writes nothing outside a temporary directory
# (and the cargo target directory). Never fails on a figure, only on a
# build or run error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N="${1:-100000}"
SIZE="${SIZE:-64}"
case "$SIZE" in
    '' | *[!0-9]* | 0) echo "callgrind.sh: SIZE must be a positive integer, got '$SIZE'" >&2; exit 2 ;;
esac
shift || true
if [ "$#" -gt 0 ]; then
    ALLOCATORS=("$@")
else
    ALLOCATORS=(lifeboat system mimalloc jemalloc)
fi
case "$N" in
    '' | *[!0-9]*) echo "callgrind.sh: N must be a positive integer, got '$N'" >&2; exit 2 ;;
esac
if [ "$N" -eq 0 ]; then
    echo "callgrind.sh: N must be positive" >&2
    exit 2
fi

if ! command -v valgrind >/dev/null 2>&1; then
    echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 2
fi

# Build, and learn where cargo put the binary (whatever the target dir).
BIN="$(cargo build --release -p lifeboat-bench --bin pair64 \
        --message-format=json-render-diagnostics \
    | sed -n 's/.*"executable":"\([^"]*pair64\)".*/\1/p' | tail -n 1)"
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "callgrind.sh: could not find the pair64 binary" >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Total instructions executed (Ir) by one run.
ir() {
    local alloc="$1" n="$2" out="$TMP/callgrind.$1.$2"
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" "$alloc" "$n" "$SIZE" >"$TMP/log.$alloc.$n" 2>&1; then
        echo "callgrind.sh: valgrind run of '$alloc $n' failed:" >&2
        cat "$TMP/log.$alloc.$n" >&2
        exit 1
    fi
    # callgrind writes "summary: <Ir>" (and, in some versions, "totals:").
    local v
    v="$(sed -n 's/^summary: *\([0-9][0-9]*\).*/\1/p' "$out" | head -n 1)"
    if [ -z "$v" ]; then
        v="$(sed -n 's/^totals: *\([0-9][0-9]*\).*/\1/p' "$out" | head -n 1)"
    fi
    if [ -z "$v" ]; then
        echo "callgrind.sh: no instruction total in $out" >&2
        exit 1
    fi
    echo "$v"
}

N2=$((2 * N))
echo "## Instructions per ${SIZE}-byte alloc/free pair (callgrind)"
echo
echo "(Ir(${N2}) - Ir(${N})) / ${N}, pair64 built in release; $(valgrind --version)."
echo
echo "| allocator | Ir(${N}) | Ir(${N2}) | instructions / pair | / mimalloc |"
echo "|---|---:|---:|---:|---:|"

declare -A PER
ROWS=()
for a in "${ALLOCATORS[@]}"; do
    i1="$(ir "$a" "$N")"
    i2="$(ir "$a" "$N2")"
    PER[$a]="$(awk -v a="$i1" -v b="$i2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')"
    ROWS+=("$a $i1 $i2")
done
for row in "${ROWS[@]}"; do
    read -r a i1 i2 <<<"$row"
    if [ -n "${PER[mimalloc]:-}" ]; then
        ratio="$(awk -v x="${PER[$a]}" -v m="${PER[mimalloc]}" \
            'BEGIN { if (m > 0) printf "%.2f", x / m; else print "-" }')"
    else
        ratio="-"
    fi
    echo "| $a | $i1 | $i2 | ${PER[$a]} | $ratio |"
done
