#!/usr/bin/env bash
# Real programs on lifeboat's C ABI (capi/, liblifeboat_capi.so) through
# LD_PRELOAD, each checked against its output on the system allocator.
#
#   edge-cases       capi/preload-tests/edge_cases.c: every export's edge
#                    cases with glibc semantics (errno, zero sizes, overflow,
#                    alignments, realloc contents, foreign blocks, threads,
#                    fork); once on glibc (checks the test), once preloaded
#   budget           the same under LIFEBOAT_BUDGET=64M: ENOMEM at the budget
#   tls-dlopen       48 dlopen'ed modules with TLS while threads allocate,
#                    then 400 unload/reload rounds (dtv updates re-enter the
#                    allocator); 5 runs
#   threads-fork     short-lived threads freeing each other's blocks while
#                    the main thread forks 200 allocating children
#   python           an allocation-heavy script (dicts, lists, strings,
#                    threads): same checksum as without preload
#   python-oom       LIFEBOAT_BUDGET=128M: MemoryError, then recovery
#   git              init, three commits, log, fsck with fixed dates: same
#                    log (and hashes) as without preload
#   sort             200k generated lines, plain and parallel with a small
#                    buffer (temporary-file merges): same bytes as without
#   gcc              a small C program compiled under preload (same binary
#                    as without) that then runs correctly, preloaded too
#
# Opt-in (run only when named):
#   signal-reentry   malloc/free in a signal handler interrupting malloc/free
#                    (invalid C; DESIGN.md section 6 promises no deadlock).
#                    Opt-in because the global fast path, like malloc, is not
#                    async-signal-safe (README, "Bad input"): a handler that
#                    interrupts it may corrupt that thread's cache, which no
#                    check can promise against. Limited to 60 s.
#
# usage: ci/preload.sh [NAME...]   (default: all but the opt-in ones; NAME
#        selects checks by prefix)
#
# Builds with `cargo build --release -p lifeboat-capi` (honours
# CARGO_TARGET_DIR), or uses the library named by LIFEBOAT_CAPI_SO. Needs
# cargo, gcc, python3, git and coreutils. PRELOAD_TIMEOUT (seconds, default
# 600) limits each program. Prints "PASS name" / "FAIL name" lines, then
# "preload: N passed, M failed"; exits 1 if any check failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS="$ROOT/capi/preload-tests"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
SO="$TARGET/release/liblifeboat_capi.so"
TIMEOUT="${PRELOAD_TIMEOUT:-600}"

if [[ -n "${LIFEBOAT_CAPI_SO:-}" ]]; then
    SO="$(cd "$(dirname "$LIFEBOAT_CAPI_SO")" && pwd)/$(basename "$LIFEBOAT_CAPI_SO")"
    echo "== using $SO (LIFEBOAT_CAPI_SO; no build)"
else
    echo "== building liblifeboat_capi.so (release)"
    if ! (cd "$ROOT" && cargo build --release -p lifeboat-capi); then
        echo "FAIL build"
        echo "preload: 0 passed, 1 failed"
        exit 1
    fi
fi
if [[ ! -f "$SO" ]]; then
    echo "FAIL build: $SO missing"
    echo "preload: 0 passed, 1 failed"
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-preload.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# The programs must not see a developer's git or locale settings.
export HOME="$WORK/home" LC_ALL=C GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"

PASSED=0
FAILED=0
FAILURES=()

# selected NAME: whether NAME starts with one of the names given.
selected() {
    local s
    for s in "${SELECT[@]}"; do [[ "$1" == "$s"* ]] && return 0; done
    return 1
}

# check [--opt-in] NAME FUNCTION: runs FUNCTION with output to $WORK/NAME.log;
# a non-zero status fails the check and shows the log's tail.
check() {
    local optin=0
    if [[ "$1" == --opt-in ]]; then optin=1; shift; fi
    local name="$1" fn="$2"
    if [[ ${#SELECT[@]} -eq 0 ]]; then
        [[ $optin -eq 0 ]] || return 0
    else
        selected "$name" || return 0
    fi
    local log="$WORK/$name.log" start=$SECONDS
    # Not inside `if`/`||`: there bash would ignore the subshell's set -e.
    (set -e; "$fn") >"$log" 2>&1
    local rc=$?
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        echo "PASS $name ($((SECONDS - start))s)$(summary_of "$log")"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$name")
        echo "FAIL $name ($((SECONDS - start))s); last lines of its log:"
        tail -n 30 "$log" | sed 's/^/    /'
    fi
}

# The last "info:" line of a log, shown after PASS.
summary_of() {
    local line
    line="$(grep '^info:' "$1" | tail -n 1)" || true
    [[ -n "$line" ]] && echo " - ${line#info: }"
}

# t CMD...: CMD on the system allocator; tp CMD...: CMD preloaded. Both
# with a time limit.
t() { timeout "$TIMEOUT" "$@"; }
tp() { timeout "$TIMEOUT" env LD_PRELOAD="$SO" "$@"; }

same() { # same FILE_A FILE_B WHAT
    if ! cmp -s "$1" "$2"; then
        echo "$3 differs:"
        diff "$1" "$2" | head -n 20
        return 1
    fi
}

# ---------------------------------------------------------------- checks

build_edge() {
    [[ -x "$WORK/edge_cases" ]] ||
        gcc -O2 -Wall -Wextra -pthread -o "$WORK/edge_cases" "$TESTS/edge_cases.c" -ldl
}

check_edge_cases() {
    build_edge
    echo "-- on the system allocator (checks the test itself)"
    t "$WORK/edge_cases"
    echo "-- preloaded"
    tp "$WORK/edge_cases" --expect-lifeboat | tee "$WORK/edge.out"
    echo "info: $(grep -E '^edge_cases: [0-9]+ passed' "$WORK/edge.out")"
}

check_budget() {
    build_edge
    LIFEBOAT_BUDGET=64M tp "$WORK/edge_cases" --expect-lifeboat | tee "$WORK/budget.out"
    echo "info: $(grep -E '^edge_cases: [0-9]+ passed' "$WORK/budget.out")"
}

check_tls_dlopen() {
    local d="$WORK/tls"
    mkdir -p "$d"
    gcc -shared -fPIC -O1 -o "$d/libtlsmod0.so" "$TESTS/tls_mod.c"
    for i in $(seq 1 47); do cp "$d/libtlsmod0.so" "$d/libtlsmod$i.so"; done
    gcc -O1 -Wall -pthread -o "$d/tls_dlopen" "$TESTS/tls_dlopen.c" -ldl
    t "$d/tls_dlopen" "$d" >"$d/expected"
    for i in 1 2 3 4 5; do
        tp "$d/tls_dlopen" "$d" >"$d/got"
        same "$d/expected" "$d/got" "tls_dlopen output (run $i)"
    done
    echo "info: $(cat "$d/got")"
}

check_threads_fork() {
    gcc -O2 -Wall -pthread -o "$WORK/threads_fork" "$TESTS/threads_fork.c"
    t "$WORK/threads_fork"
    for i in 1 2 3; do
        tp "$WORK/threads_fork" | tee "$WORK/tf.out"
    done
    echo "info: 3 runs, $(cat "$WORK/tf.out")"
}

check_signal_reentry() {
    gcc -O2 -Wall -o "$WORK/signal_reentry" "$TESTS/signal_reentry.c"
    local rc=0 st
    for mode in "" --after-init; do
        echo "-- signal_reentry ${mode:-(heap created under the timer)}"
        st=0
        TIMEOUT=60 tp "$WORK/signal_reentry" $mode || st=$?
        if [[ $st -eq 124 ]]; then
            echo "timed out after 60 s (deadlock)"
        fi
        [[ $st -eq 0 ]] || rc=1
    done
    return $rc
}

check_python() {
    t python3 "$TESTS/alloc_heavy.py" >"$WORK/py.expected"
    tp python3 "$TESTS/alloc_heavy.py" >"$WORK/py.got"
    cat "$WORK/py.got"
    same "$WORK/py.expected" "$WORK/py.got" "python checksum"
    echo "info: checksums match ($(head -c 24 "$WORK/py.got")...)"
}

check_python_oom() {
    LIFEBOAT_BUDGET=128M tp python3 "$TESTS/alloc_heavy.py" --oom | tee "$WORK/oom.out"
    grep -q '^oom: MemoryError' "$WORK/oom.out"
    echo "info: $(cat "$WORK/oom.out")"
}

git_session() { # git_session DIR RUNNER...: the same repository history
    local dir="$1"
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    cd "$dir"
    export GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@example.invalid
    export GIT_COMMITTER_NAME=ci GIT_COMMITTER_EMAIL=ci@example.invalid
    export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
    "$@" git init -q -b main .
    for i in $(seq 1 200); do echo "file $i $(seq 1 "$i" | tr '\n' ' ')" >"f$i.txt"; done
    mkdir -p sub/deeper
    seq 1 50000 >sub/deeper/numbers.txt
    "$@" git add -A
    "$@" git commit -q -m "first: 202 files"
    for i in $(seq 1 100); do echo "changed $i" >>"f$i.txt"; done
    rm f150.txt
    "$@" git add -A
    "$@" git commit -q -m "second: edits and a removal"
    "$@" git mv sub moved
    "$@" git commit -q -m "third: rename"
    "$@" git log --stat --format='%H %s'
    "$@" git ls-files | wc -l
    "$@" git diff HEAD~2 --stat | tail -n 1
    "$@" git fsck --strict 2>&1
    "$@" git gc -q 2>&1
    "$@" git rev-parse HEAD
}

check_git() {
    (git_session "$WORK/git-sys" t) >"$WORK/git.expected"
    (git_session "$WORK/git-pre" tp) >"$WORK/git.got"
    same "$WORK/git.expected" "$WORK/git.got" "git session output"
    grep -q 'third: rename' "$WORK/git.got"
    echo "info: 3 commits, HEAD $(tail -n 1 "$WORK/git.got" | head -c 12), same as on glibc"
}

check_sort() {
    local in="$WORK/sort.in"
    python3 -c '
import random
r = random.Random(7)
for i in range(200000):
    print("%08d %s %d" % (r.randrange(10**8), "".join(r.choice("abcdefghij") for _ in range(r.randrange(1, 40))), i))
' >"$in"
    t sort "$in" >"$WORK/sort.expected"
    tp sort "$in" >"$WORK/sort.got"
    same "$WORK/sort.expected" "$WORK/sort.got" "sort output"
    t sort -k2,2 -k1,1n --parallel=2 -S 1M -T "$WORK" "$in" >"$WORK/sort2.expected"
    tp sort -k2,2 -k1,1n --parallel=2 -S 1M -T "$WORK" "$in" >"$WORK/sort2.got"
    same "$WORK/sort2.expected" "$WORK/sort2.got" "sort -k (parallel, 1M buffer) output"
    tp sort -u -k1,1 "$in" | tp wc -l >"$WORK/sort3.got"
    t sort -u -k1,1 "$in" | wc -l >"$WORK/sort3.expected"
    same "$WORK/sort3.expected" "$WORK/sort3.got" "sort -u count"
    echo "info: 200000 lines, 3 sorts identical"
}

check_gcc() {
    local d="$WORK/gcc"
    mkdir -p "$d"
    cat >"$d/prog.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; char *text; };

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    struct node *head = NULL;
    for (int i = 0; i < 100000; i++) {
        struct node *n = malloc(sizeof *n);
        n->text = malloc(32);
        snprintf(n->text, 32, "item-%07d", (i * 7919) % 100000);
        n->next = head;
        head = n;
    }
    char **arr = NULL;
    size_t len = 0;
    for (struct node *n = head; n; n = n->next) {
        arr = realloc(arr, (len + 1) * sizeof *arr);
        arr[len++] = n->text;
    }
    qsort(arr, len, sizeof *arr, cmp);
    unsigned long h = 5381;
    for (size_t i = 0; i < len; i++)
        for (const char *c = arr[i]; *c; c++) h = h * 33 + (unsigned char)*c;
    printf("%zu %s %s %lu\n", len, arr[0], arr[len - 1], h);
    while (head) {
        struct node *n = head->next;
        free(head->text);
        free(head);
        head = n;
    }
    free(arr);
    return 0;
}
EOF
    t gcc -O2 -g -o "$d/prog.sys" "$d/prog.c"
    tp gcc -O2 -g -o "$d/prog.pre" "$d/prog.c"
    same "$d/prog.sys" "$d/prog.pre" "binary compiled under preload"
    "$d/prog.sys" >"$d/expected"
    t "$d/prog.pre" >"$d/got"
    same "$d/expected" "$d/got" "program output"
    tp "$d/prog.pre" >"$d/got2"
    same "$d/expected" "$d/got2" "program output (preloaded)"
    grep -q '^100000 item-0000000 item-0099999 ' "$d/got"
    echo "info: identical binary; output $(cut -d' ' -f1-3 "$d/got")"
}

SELECT=("$@")
check edge-cases check_edge_cases
check budget check_budget
check tls-dlopen check_tls_dlopen
check threads-fork check_threads_fork
check python check_python
check python-oom check_python_oom
check git check_git
check sort check_sort
check gcc check_gcc
check --opt-in signal-reentry check_signal_reentry

if [[ $FAILED -ne 0 ]]; then
    echo "failed: ${FAILURES[*]}"
fi
echo "preload: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
