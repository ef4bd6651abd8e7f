# Sourced by compare.sh and versus.sh: paired runs and their summary.
#
# pairs_table FILE PAIRS TITLE BASE NEW prints, as markdown, the median
# over the pairs of NEW / BASE for wall time, CPU time and peak RSS, how
# many pairs NEW was faster, and each side's median. FILE holds one line
# a pair: base wall, cpu, peak; new wall, cpu, peak (as `run_child`
# prints them).

# usage: prints the calling script's usage block (its header from
# "# usage:" to "#   CHILD-ARGS") and exits 2.
usage() {
    sed -n '/^# usage:/,/^#   CHILD-ARGS/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# run_pairs FILE PAIRS BASE-FN NEW-FN: PAIRS pairs of one run of each
# side (functions that print "wall cpu peak_kib"), the base first in
# one pair and the new side first in the next, so that a drift in the
# machine's load falls on both; appends a line "base new" a pair to
# FILE.
run_pairs() {
    local file="$1" pairs="$2" base_fn="$3" new_fn="$4" b n i
    for ((i = 0; i < pairs; i++)); do
        if ((i % 2 == 0)); then
            b="$("$base_fn")"
            n="$("$new_fn")"
        else
            n="$("$new_fn")"
            b="$("$base_fn")"
        fi
        echo "$b $n" >>"$file"
    done
}

# run_child BIN WORKLOAD ALLOCATOR [CHILD-ARGS...]: one `workloads
# --child` run (under the RUNNER array, if set); prints "wall cpu
# peak_kib". Exits the script if the run fails.
run_child() {
    local bin="$1" workload="$2" allocator="$3" line
    shift 3
    line="$("${RUNNER[@]}" "$bin" --child "$workload" "$allocator" "$@" | grep 'wall_s=')" || {
        echo "$(basename "$0"): a run of $bin ($allocator) failed" >&2
        exit 1
    }
    sed -E 's/.*wall_s=([0-9.]+) cpu_s=([0-9.]+) peak_kib=([0-9]+).*/\1 \2 \3/' <<<"$line"
}

pairs_table() {
    local file="$1" pairs="$2" title="$3" base="$4" new="$5"
    median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    ratio_median() { awk -v b="$1" -v n="$2" '$b > 0 { print $n / $b }' "$file" | median; }
    faster() { awk -v b="$1" -v n="$2" '$n < $b { k++ } END { print k + 0 }' "$file"; }
    col_median() { awk -v c="$1" '{ print $c }' "$file" | median; }
    echo
    echo "| $title | $new / $base (median of pairs) | $new faster | $base median | $new median |"
    echo "|---|---:|---:|---:|---:|"
    printf '| wall time (s) | %.3f | %d of %d | %s | %s |\n' \
        "$(ratio_median 1 4)" "$(faster 1 4)" "$pairs" "$(col_median 1)" "$(col_median 4)"
    printf '| CPU time (s) | %.3f | %d of %d | %s | %s |\n' \
        "$(ratio_median 2 5)" "$(faster 2 5)" "$pairs" "$(col_median 2)" "$(col_median 5)"
    printf '| peak RSS (KiB) | %.3f | | %s | %s |\n' \
        "$(ratio_median 3 6)" "$(col_median 3)" "$(col_median 6)"
}
