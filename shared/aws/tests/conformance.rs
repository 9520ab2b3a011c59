//! The store and queue conformance suite against DynamoDB Local and moto's
//! SQS, over the wire, exactly as it runs on SQLite.

mod support;

use std::sync::{Arc, OnceLock};

use tally_aws::stream::{StateChange, decode};
use tally_aws::{DynamoStore, SqsQueue};
use tally_core::ports::Queue;

fn suffix() -> &'static str {
    static SUFFIX: OnceLock<String> = OnceLock::new();
    SUFFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned())
}

fn tables() -> (String, String) {
    (
        format!("conf-state-{}", suffix()),
        format!("conf-audit-{}", suffix()),
    )
}

/// A fresh client per test (each test has its own runtime), on tables
/// created once per run.
async fn store() -> DynamoStore {
    let sdk = support::sdk().await;
    let (state, audit) = tables();
    support::create_tables(&sdk, &state, &audit).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), state, audit)
}

async fn queue(name: &str) -> SqsQueue {
    let sdk = support::sdk().await;
    let urls = support::create_queue(
        &sdk,
        name,
        &format!("{}-{}", name.replace('_', "-"), suffix()),
        3,
    )
    .await;
    SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), urls)
}

/// What the publish function does for outbox items: stream → queue.
async fn relay(queue: Arc<dyn Queue>) {
    let sdk = support::sdk().await;
    let mut pump = support::StreamPump::new(&sdk, &tables().0).await;
    let event: aws_lambda_events::dynamodb::Event =
        serde_json::from_value(pump.next_event().await).unwrap();
    for r in &event.records {
        if let StateChange::Outbox(o) = decode(r).unwrap() {
            queue.send(&o.queue, vec![o.message]).await.unwrap();
        }
    }
}

tally_conformance::conformance_tests! {
    #[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
    store: async { Arc::new(store().await) },
    queue: |name: &'static str| async move { Arc::new(queue(name).await) },
    max_receives: 3,
    relay: relay,
}
