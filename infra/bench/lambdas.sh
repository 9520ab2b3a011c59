#!/usr/bin/env bash
# Every release Lambda binary: stripped size, cold start to first response
# and peak RSS on one event, and peak RSS on a 1,000-message SQS batch for
# the SQS functions that touch DynamoDB (validate, update-stock), under
# infra/bench/coldstart.py's runtime API, with DynamoDB and SQS calls going
# to the local emulators (started and stopped here), on tables that hold
# the fixtures' source and products (infra/emulator_tables.py), so each
# function takes its ordinary path.
#
#   infra/bench/lambdas.sh            # builds with cargo lambda first
#   TALLY_SKIP_BUILD=1 infra/bench/lambdas.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
infra/emulators.sh install
trap 'infra/emulators.sh stop' EXIT
eval "$(infra/emulators.sh start)"
FUNCTIONS=(ingest api validate update-stock reprice recommend-order-action publish push monitor)
if [ -z "${TALLY_SKIP_BUILD:-}" ]; then
  packages=(); for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
  cargo lambda build --release --x86-64 "${packages[@]}"
fi

run="bench$(date +%s)"
PY="$(dirname "$(command -v moto_server)")/python"
ENV="$("$PY" infra/emulator_tables.py "$run")"

bench() { "$PY" infra/bench/coldstart.py "$@" --env "$ENV"; }
bench ingest ingest-shopify-orders-create.json
bench validate validate-shopify-delivery.json
bench update-stock update-stock-count.json
bench publish publish-outbox-order-short.json
bench push push-stock-changed.json
bench monitor monitor-audit-insert.json
bench validate validate-shopify-delivery.json --batch 1000 --rounds 1
bench update-stock update-stock-count.json --batch 1000 --rounds 1
for f in "${FUNCTIONS[@]}"; do
  awk -v f="$f" -v b="$(stat -c %s "target/lambda/$f/bootstrap")" 'BEGIN { printf "%-24s %6.1f MB stripped\n", f, b / 1048576 }'
done
