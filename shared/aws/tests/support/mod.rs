//! What the AWS suites share: tables and queues created on the emulators
//! (DynamoDB Local, moto) that infra/test.sh starts, and a stream pump that
//! reads DynamoDB Streams and hands the records to handlers in Lambda's own
//! JSON shape, as an event-source mapping would.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

pub const NEEDS_EMULATORS: &str =
    "needs DynamoDB Local and moto; infra/test.sh starts them and runs this";

pub async fn sdk() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok()
            && std::env::var("AWS_ENDPOINT_URL_SQS").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_SQS must point at the emulators (run infra/test.sh)"
    );
    tally_aws::sdk_config().await
}

fn key(name: &str, t: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .unwrap()
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .unwrap()
}

fn gsi(name: &str, hash: &str, range: Option<&str>) -> GlobalSecondaryIndex {
    let mut keys = vec![key(hash, KeyType::Hash)];
    if let Some(r) = range {
        keys.push(key(r, KeyType::Range));
    }
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(keys))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .unwrap()
}

/// Creates the state and audit tables as template.yaml declares them; a
/// table that exists already is left as it is.
pub async fn create_tables(sdk: &aws_config::SdkConfig, state: &str, audit: &str) {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let streams = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .unwrap();
    let r = ddb
        .create_table()
        .table_name(state)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("kind"))
        .key_schema(key("pk", KeyType::Hash))
        .global_secondary_indexes(gsi("by-kind", "kind", Some("pk")))
        .stream_specification(streams.clone())
        .send()
        .await;
    tolerate_existing(r.map(|_| ()).map_err(|e| format!("{e:?}")));
    let r = ddb
        .create_table()
        .table_name(audit)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("entity"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("id"))
        .attribute_definitions(attr("day"))
        .key_schema(key("entity", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(gsi("by-id", "id", None))
        .global_secondary_indexes(gsi("by-day", "day", Some("sk")))
        .stream_specification(streams)
        .send()
        .await;
    tolerate_existing(r.map(|_| ()).map_err(|e| format!("{e:?}")));
}

/// A run's own state and audit tables, `<prefix>-state-<id>` and
/// `<prefix>-audit-<id>`, created; also the id, to name the run's queues.
pub async fn fresh_tables(sdk: &aws_config::SdkConfig, prefix: &str) -> (String, String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (state, audit) = (
        format!("{prefix}-state-{id}"),
        format!("{prefix}-audit-{id}"),
    );
    create_tables(sdk, &state, &audit).await;
    (state, audit, id)
}

fn tolerate_existing(r: Result<(), String>) {
    if let Err(e) = r {
        assert!(e.contains("ResourceInUse"), "create_table: {e}");
    }
}

/// Creates a FIFO queue `<name>.fifo` with its DLQ after `max_receives`;
/// returns the logical names mapped to URLs (`name`, `name-dlq`).
pub async fn create_queue(
    sdk: &aws_config::SdkConfig,
    logical: &str,
    physical: &str,
    max_receives: u32,
) -> BTreeMap<String, String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{physical}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let main = sqs
        .create_queue()
        .queue_name(format!("{physical}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}).to_string(),
        )
        .send()
        .await
        .unwrap();
    BTreeMap::from([
        (logical.to_owned(), main.queue_url().unwrap().to_owned()),
        (format!("{logical}-dlq"), dlq_url),
    ])
}

fn stream_value(v: &StreamValue) -> Value {
    match v {
        StreamValue::S(s) => json!({"S": s}),
        StreamValue::N(n) => json!({"N": n}),
        StreamValue::Bool(b) => json!({"BOOL": b}),
        StreamValue::Null(_) => json!({"NULL": true}),
        StreamValue::M(m) => json!({"M": item(m)}),
        StreamValue::L(l) => json!({"L": l.iter().map(stream_value).collect::<Vec<_>>()}),
        StreamValue::Ss(ss) => json!({"SS": ss}),
        StreamValue::Ns(ns) => json!({"NS": ns}),
        other => panic!("attribute type not used by Tally: {other:?}"),
    }
}

fn item(m: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), stream_value(v)))
            .collect(),
    )
}

/// Reads a table's stream from its start and returns the new records as
/// the `Records` of a Lambda DynamoDB event.
pub struct StreamPump {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    iterators: BTreeMap<String, Option<String>>,
}

impl StreamPump {
    pub async fn new(sdk: &aws_config::SdkConfig, table: &str) -> StreamPump {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let desc = ddb.describe_table().table_name(table).send().await.unwrap();
        let stream_arn = desc
            .table()
            .unwrap()
            .latest_stream_arn()
            .unwrap()
            .to_owned();
        StreamPump {
            client: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn,
            iterators: BTreeMap::new(),
        }
    }

    /// Everything written since the last call, as Lambda would deliver it.
    pub async fn next_event(&mut self) -> Value {
        let desc = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .unwrap();
        for shard in desc.stream_description().unwrap().shards() {
            let id = shard.shard_id().unwrap().to_owned();
            if !self.iterators.contains_key(&id) {
                let it = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .unwrap();
                self.iterators
                    .insert(id, it.shard_iterator().map(str::to_owned));
            }
        }
        let mut records = vec![];
        for it in self.iterators.values_mut() {
            let Some(current) = it.clone() else { continue };
            let resp = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            for r in resp.records() {
                let d = r.dynamodb().unwrap();
                records.push(json!({
                    "eventID": r.event_id(),
                    "eventName": r.event_name().map(|n| n.as_str()),
                    "eventSource": "aws:dynamodb",
                    "eventVersion": "1.1",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": self.stream_arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": d.approximate_creation_date_time().map(|t| t.secs()),
                        "Keys": d.keys().map(item),
                        "NewImage": d.new_image().map(item),
                        "OldImage": d.old_image().map(item),
                        "SequenceNumber": d.sequence_number(),
                        "SizeBytes": d.size_bytes().unwrap_or(0),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    }
                }));
            }
            *it = resp.next_shard_iterator().map(str::to_owned);
        }
        json!({"Records": records})
    }
}

/// One poll of an SQS event-source mapping, as Lambda runs it: receive up
/// to 10, hand them to `handler` as an `SqsEvent`, delete what succeeded
/// and make the reported failures visible again at once. Returns how many
/// were received and how many of those were done.
pub async fn poll_once<F, Fut>(sqs: &aws_sdk_sqs::Client, url: &str, handler: F) -> (usize, usize)
where
    F: FnOnce(aws_lambda_events::sqs::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::sqs::SqsBatchResponse>,
{
    let resp = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = resp.messages();
    if messages.is_empty() {
        return (0, 0);
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attrs: BTreeMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                   "body": m.body(), "attributes": attrs, "messageAttributes": {},
                   "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:queue",
                   "awsRegion": "us-east-1"})
        })
        .collect();
    let event = serde_json::from_value(json!({"Records": records})).unwrap();
    let failed: Vec<String> = handler(event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    // Lambda deletes what succeeded in one call, as here.
    let mut succeeded = vec![];
    for (i, m) in messages.iter().enumerate() {
        let receipt = m.receipt_handle().unwrap_or_default();
        if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
            sqs.change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            succeeded.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .unwrap(),
            );
        }
    }
    let done = succeeded.len();
    if done > 0 {
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(succeeded))
            .send()
            .await
            .unwrap();
    }
    (messages.len(), done)
}
