#!/usr/bin/env bash
# The one test command (README): formatting, lints, and every suite.
# It installs and starts what the suites need, and stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "tally-core stays free of IO crates"
if cargo tree -p tally-core -e normal --prefix none | grep -E '^(aws-|lambda_|lambda-|rusqlite|tokio |axum)'; then
  echo "tally-core must not depend on the crates above" >&2
  exit 1
fi

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, property, conformance on SQLite, end-to-end)"
cargo test --workspace
