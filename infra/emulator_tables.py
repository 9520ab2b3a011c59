#!/usr/bin/env python3
"""A run's own tables and queues on the emulators, as template.yaml makes
them in AWS, with a configured Shopify source and the products the Lambda
fixtures name, so each function takes its ordinary path (not "unknown
source" or "unknown SKU").

    infra/emulator_tables.py RUN

Prints the functions' environment as one `K=V,K=V` line (what `cargo lambda
watch --env-var` and coldstart.py `--env` take). Needs the emulators'
environment (`eval "$(infra/emulators.sh start)"`); run it with the
emulators' Python (.emulators/venv/bin/python), which has boto3.
"""
import json
import os
import sys

import boto3

# The fixtures' source (tests/events/lambda/*shopify*) and the SKUs they name.
SOURCE = {"entity": "source", "name": "shop", "platform": "shopify",
          "secret": "shopify-app-secret-0123456789", "channel": "shopify",
          "authoritative_stock": False, "api": {}, "updated_at": "2026-12-03T00:00:00Z"}
SKUS = ["TSHIRT-M", "MUG-BLK"]
QUEUES = ["inbound", "stock", "order", "signal", "outbound"]


def main(run):
    region = os.environ.get("AWS_REGION", "us-east-1")
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name=region)
    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"], region_name=region)
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ddb.create_table(
        TableName=f"{run}-state", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "kind", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-kind", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"},
                                               {"AttributeName": "pk", "KeyType": "RANGE"}]}],
        StreamSpecification=stream)
    ddb.create_table(
        TableName=f"{run}-audit", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("entity", "sk", "id", "day")],
        KeySchema=[{"AttributeName": "entity", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-id", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]},
            {"IndexName": "by-day", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]}],
        StreamSpecification=stream)

    def put(key, kind, doc):
        ddb.put_item(TableName=f"{run}-state", Item={
            "pk": {"S": key}, "kind": {"S": kind}, "version": {"N": "1"}, "doc": {"S": json.dumps(doc)}})

    put("source:shop", "source", SOURCE)
    for sku in SKUS:
        put(f"product:{sku}", "product",
            {"entity": "product", "sku": sku, "currency": "USD", "updated_at": "2026-12-03T00:00:00Z"})

    env = [f"STATE_TABLE={run}-state", f"AUDIT_TABLE={run}-audit",
           "TALLY_ADMIN_TOKEN=emulator-token-0123456789abcdef0123456789"]
    for q in QUEUES:
        url = sqs.create_queue(QueueName=f"{run}-{q}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        env.append(f"{q.upper()}_QUEUE_URL={url}")
    print(",".join(env))


if __name__ == "__main__":
    main(sys.argv[1])
