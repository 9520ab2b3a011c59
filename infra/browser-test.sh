#!/usr/bin/env bash
# The ops console in headless Chromium against the real `tally serve`
# (tests/browser/console.test.mjs). Installs what it needs if missing:
# Debian's chromium and playwright-core (pinned in tests/browser/package.json,
# into tests/browser/node_modules). Needs Node 20 and a built target/debug/tally;
# it does not build it (infra/test.sh's cargo test has, by the time it runs this).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${TALLY_BIN:-target/debug/tally}"
if [[ ! -x "$bin" ]]; then
  echo "browser-test: $bin is missing; build it first: cargo build -p tally" >&2
  exit 1
fi

if ! command -v node >/dev/null 2>&1; then
  echo "browser-test: node (20 or later) is required" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "browser-test: node $(node --version) is too old; node 20 or later is required" >&2
  exit 1
fi

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  if [[ "$chromium" != /usr/bin/chromium ]]; then
    echo "browser-test: CHROMIUM=$chromium is not executable" >&2
    exit 1
  fi
  echo "browser-test: installing Debian's chromium"
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "browser-test: /usr/bin/chromium is missing and installing it needs root (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "browser-test: $("$chromium" --version 2>/dev/null | head -n1)"

if [[ ! -f tests/browser/node_modules/playwright-core/package.json ]]; then
  echo "browser-test: installing playwright-core"
  # No lock file: the one dependency is pinned exactly and has none of its own.
  (cd tests/browser && npm install --no-audit --no-fund --silent --no-package-lock)
fi

export TALLY_BIN="$bin" CHROMIUM="$chromium"
node --test tests/browser/
