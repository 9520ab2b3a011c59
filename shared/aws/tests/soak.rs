//! The ledger under a randomized concurrent load on DynamoDB Local, over
//! the wire: exactly once, no lost update, no oversell
//! (tally_conformance::soak, the same run as on SQLite).
//!
//! The test command runs a short run; the documented long run sets
//! `TALLY_SOAK_OPS=1000000` (docs/reliability.md).

mod support;

use std::sync::Arc;

use tally_aws::{DynamoStore, SqsQueue};
use tally_conformance::soak::{SoakPlan, ledger_soak};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn the_ledger_on_dynamodb_applies_each_event_once_and_never_oversells() {
    let sdk = support::sdk().await;
    let (state, audit, _) = support::fresh_tables(&sdk, "soak").await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        state,
        audit,
    ));
    // The ledger step queues nothing itself (follow-ups ride the outbox in
    // the same transaction); the queue is there because a Tally has one.
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        Default::default(),
    ));
    let report = ledger_soak(store, queue, SoakPlan::from_env(2_000, 8, 1)).await;
    println!("dynamodb soak: {report}");
    assert!(report.duplicates > 0, "the run redelivered nothing");
    assert!(
        report.orders_short > 0,
        "the hot SKUs never ran out: no race for the last unit"
    );
}
