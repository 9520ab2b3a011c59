#!/usr/bin/env bash
# Every release Lambda binary: stripped size, cold start to first response
# and peak RSS on one event, and peak RSS on a 1,000-message SQS batch for
# the SQS functions that touch DynamoDB (validate, update-stock), under
# infra/bench/coldstart.py's runtime API, with DynamoDB and SQS calls going
# to the local emulators (started and stopped here).
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
ENV="$("$PY" - "$run" <<'PY'
import os, sys, boto3
run = sys.argv[1]
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"], region_name="us-east-1")
s = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
ddb.create_table(TableName=f"{run}-state", BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "kind", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    GlobalSecondaryIndexes=[{"IndexName": "by-kind", "Projection": {"ProjectionType": "ALL"},
        "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"}, {"AttributeName": "pk", "KeyType": "RANGE"}]}],
    StreamSpecification=s)
ddb.create_table(TableName=f"{run}-audit", BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("entity", "sk", "id", "day")],
    KeySchema=[{"AttributeName": "entity", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    GlobalSecondaryIndexes=[
        {"IndexName": "by-id", "Projection": {"ProjectionType": "ALL"}, "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
        {"IndexName": "by-day", "Projection": {"ProjectionType": "ALL"},
         "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}],
    StreamSpecification=s)
env = [f"STATE_TABLE={run}-state", f"AUDIT_TABLE={run}-audit",
       "TALLY_ADMIN_TOKEN=bench-token-0123456789abcdef0123456789"]
for q in ("inbound", "stock", "order", "signal", "outbound"):
    url = sqs.create_queue(QueueName=f"{run}-{q}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    env.append(f"{q.upper()}_QUEUE_URL={url}")
print(",".join(env))
PY
)"
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
