#!/usr/bin/env bash
# The test job, and the README's test command: format, lints, the whole
# test suite (unit, integration, doc tests), the loom models, and the
# LD_PRELOAD run of real programs. Needs only the Rust toolchain with
# cargo-nextest (falls back to `cargo test` without it), gcc, python3, git.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (default members, all targets, -D warnings)"
cargo clippy --all-targets -- -D warnings

step "cargo clippy --features debug (lifeboat, all targets, -D warnings)"
cargo clippy -p lifeboat --all-targets --features debug -- -D warnings

# Under --cfg loom the crate compiles without the global front, so code
# only that front uses must be cfg'd out there too: lint that build as well.
step "cargo clippy --cfg loom (lifeboat and the loom models, -D warnings)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
  cargo clippy -p lifeboat-loom-tests --tests -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi

# (The C front too: it relies on lifeboat's alignment promise, which the
# debug feature's red zones must keep.)
step "tests with the debug feature (lifeboat and its C front)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p lifeboat -p lifeboat-capi --features lifeboat/debug --no-fail-fast
else
  cargo test -p lifeboat -p lifeboat-capi --features lifeboat/debug --no-fail-fast
fi

step "doc tests"
cargo test --doc -p lifeboat

if [ -x ci/loom.sh ] || [ -f ci/loom.sh ]; then
  step "loom models"
  bash ci/loom.sh
fi

if [ -f ci/preload.sh ]; then
  step "LD_PRELOAD: real programs on lifeboat"
  bash ci/preload.sh
fi

step "done"
