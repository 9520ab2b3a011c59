#!/usr/bin/env bash
# schemathesis against a real `tally serve`: every operation of
# docs/openapi.yaml with generated input, with and without the admin token.
# Fails on any 5xx (the `not_a_server_error` check) and on a panic in the
# server's log. (The document does not list every 4xx yet, so
# `status_code_conformance` is not checked.)
#
#   infra/api-fuzz.sh [max examples per operation, default 30]
#
# Needs schemathesis on PATH (infra/emulators.sh installs it into the
# emulators' venv); infra/test.sh runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-30}"
command -v schemathesis >/dev/null || { echo "schemathesis not found: eval \"\$(infra/emulators.sh start)\" first" >&2; exit 1; }

cargo build -q -p tally
data="$(mktemp -d)"
token="api-fuzz-token-$(date +%s)-0123456789abcdef"
TALLY_ADMIN_TOKEN="$token" RUST_LOG=warn target/debug/tally serve --addr 127.0.0.1:0 --data "$data/db" \
  >"$data/stdout" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q "tally listening on" "$data/stdout" 2>/dev/null && break
  sleep 0.1
done
base="$(sed -n 's/^tally listening on \(http:[^ ]*\).*/\1/p' "$data/stdout")"
[ -n "$base" ] || { echo "tally serve did not start" >&2; cat "$data/server.log" >&2; exit 1; }
echo "tally serve at $base"

run() { # extra schemathesis args...
  schemathesis run docs/openapi.yaml --base-url "$base" \
    --checks not_a_server_error \
    --hypothesis-max-examples "$examples" --hypothesis-derandomize \
    --no-color "$@"
}
echo "==> with the admin token"
run -H "Authorization: Bearer $token"
echo "==> without it (the admin operations must answer 401, never 5xx)"
run
if grep -q "panicked" "$data/server.log"; then
  echo "tally serve panicked:" >&2
  grep -A5 panicked "$data/server.log" >&2
  exit 1
fi
