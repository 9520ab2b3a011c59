#!/usr/bin/env bash
# The one test command (README): formatting, lints, and every suite, the AWS
# ones included. It installs and starts what the suites need (DynamoDB Local,
# moto, cfn-lint, cargo-lambda, schemathesis, cargo-fuzz, under .emulators/;
# Chromium from Debian and playwright-core from npm for the console test) and
# stops it again.
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

step "emulators: DynamoDB Local and moto (installed under .emulators/ if missing)"
infra/emulators.sh install
trap 'infra/emulators.sh stop' EXIT
eval "$(infra/emulators.sh start)"
echo "DynamoDB Local at $AWS_ENDPOINT_URL_DYNAMODB, moto SQS at $AWS_ENDPOINT_URL_SQS"

step "cfn-lint template.yaml"
cfn-lint template.yaml

step "cargo test: unit, property, conformance (SQLite and DynamoDB/SQS), end-to-end"
# The AWS suites are #[ignore = "needs DynamoDB Local and moto"] so a plain
# `cargo test` says so; here the emulators are up, so they run.
cargo test --workspace -- --include-ignored

step "ops console in headless Chromium (Debian chromium + playwright-core)"
CONSOLE_SCREENSHOT="${TMPDIR:-/tmp}/tally-console.png" infra/browser-test.sh

step "schemathesis: docs/openapi.yaml against tally serve, no 5xx"
infra/api-fuzz.sh

step "fuzz: 10 s of each cargo-fuzz target (the long run: infra/fuzz.sh 60)"
infra/fuzz.sh 10

step "cargo lambda: release build and invoke under cargo lambda watch"
infra/lambda-smoke.sh
