//! Fault injection on the AWS path, through the SDK's interceptor hook:
//!
//! - DynamoDB throttling under the randomized ledger soak (itself a
//!   conditional-write conflict storm on three hot SKUs): every tenth read
//!   is answered as a throttled DynamoDB answers; the SDK's retry strategy
//!   must carry the step through, and the ledger must still apply every
//!   event exactly once and never oversell.
//! - The update-stock handler failing midway through its batches: every
//!   fourth transaction commits but its answer is lost (a 500 after the
//!   write), with SDK retries off, beside a poison message: the handler
//!   reports just the failed messages, their redelivery changes nothing,
//!   every event is applied once, and the poison one ends in the DLQ.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use tally_app::{LedgerStep, Tally};
use tally_aws::handlers::update_stock;
use tally_aws::{DynamoStore, SqsQueue};
use tally_conformance::soak::{SoakPlan, ledger_soak};
use tally_core::SourceName;
use tally_core::ports::{Message, Queue, Store, queues};

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput (injected)."}"#;

/// Turns every `every`-th read (GetItem, BatchGetItem, Query) into
/// DynamoDB's throttling answer, as the SDK sees it. Only reads: they have
/// no effect at the table, so a replaced answer is exactly a throttle.
/// (A write whose answer is lost after it committed is a different fault,
/// covered by the idempotency marker and the push tests.)
/// Whether the attempt in flight is a read.
#[derive(Debug, Clone)]
struct Reads(bool);

impl Storable for Reads {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct Throttle {
    every: u64,
    reads: AtomicU64,
    throttled: Arc<AtomicU64>,
}

impl Intercept for Throttle {
    fn name(&self) -> &'static str {
        "Throttle"
    }

    /// The request is gone once it is sent: note here whether it reads.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        let read = ["GetItem", "BatchGetItem", "Query"]
            .iter()
            .any(|op| target.ends_with(&format!(".{op}")));
        cfg.interceptor_state().store_put(Reads(read));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let read = cfg.load::<Reads>().is_some_and(|r| r.0);
        if read && self.reads.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1 {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            let response = context.response_mut();
            *response.status_mut() = 400u16.try_into()?;
            response.headers_mut().remove("x-amzn-crc32");
            *response.body_mut() = SdkBody::from(THROTTLED);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn a_throttled_dynamodb_under_a_conflict_storm_still_applies_each_event_once() {
    let sdk = support::sdk().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (state, audit) = (
        format!("throttle-state-{suffix}"),
        format!("throttle-audit-{suffix}"),
    );
    support::create_tables(&sdk, &state, &audit).await;

    let throttled = Arc::new(AtomicU64::new(0));
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(Throttle {
            every: 10,
            reads: AtomicU64::new(0),
            throttled: throttled.clone(),
        })
        // Ten attempts: concurrent workers share the counter, so one call
        // may be throttled more than once in a row.
        // Short backoffs keep the run short; the strategy is the SDK's own.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(100)),
        )
        .build();
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        state,
        audit,
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        Default::default(),
    ));
    let report = ledger_soak(store, queue, SoakPlan::from_env(600, 8, 1)).await;
    println!(
        "throttled soak: {report}; {} requests throttled",
        throttled.load(Ordering::Relaxed)
    );
    assert!(
        throttled.load(Ordering::Relaxed) >= 100,
        "too few throttles to mean anything"
    );
    assert!(report.orders_short > 0, "no race for the last unit");
}

const LOST: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error (injected after the write)."}"#;

/// Whether the attempt in flight is a TransactWriteItems.
#[derive(Debug, Clone)]
struct Writes(bool);

impl Storable for Writes {
    type Storer = StoreReplace<Self>;
}

/// Lets every `every`-th transaction land at the table, then replaces its
/// answer with a 500: the write happened, the handler sees it fail.
#[derive(Debug)]
struct LoseAnswers {
    every: u64,
    writes: AtomicU64,
    lost: Arc<AtomicU64>,
}

impl Intercept for LoseAnswers {
    fn name(&self) -> &'static str {
        "LoseAnswers"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        cfg.interceptor_state()
            .store_put(Writes(target.ends_with(".TransactWriteItems")));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let write = cfg.load::<Writes>().is_some_and(|w| w.0);
        let ok = context.response().status().is_success();
        if write && ok && self.writes.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1
        {
            self.lost.fetch_add(1, Ordering::Relaxed);
            let response = context.response_mut();
            *response.status_mut() = 500u16.try_into()?;
            response.headers_mut().remove("x-amzn-crc32");
            *response.body_mut() = SdkBody::from(LOST);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn update_stock_failing_midway_reports_its_failures_and_applies_each_event_once() {
    let sdk = support::sdk().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (state, audit) = (
        format!("midway-state-{suffix}"),
        format!("midway-audit-{suffix}"),
    );
    support::create_tables(&sdk, &state, &audit).await;
    let urls =
        support::create_queue(&sdk, queues::STOCK, &format!("midway-stock-{suffix}"), 3).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = Arc::new(SqsQueue::new(sqs.clone(), urls.clone()));
    // Set-up and the final reads go through a store without faults.
    let clean = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &state,
        &audit,
    ));
    let setup = Tally::new(clean.clone(), queue.clone()).with_ledger_step(LedgerStep::Queued);
    let lost = Arc::new(AtomicU64::new(0));
    let faulty = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(LoseAnswers {
            every: 4,
            writes: AtomicU64::new(0),
            lost: lost.clone(),
        })
        .retry_config(RetryConfig::disabled())
        .build();
    let tally = Tally::new(
        Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(faulty),
            &state,
            &audit,
        )),
        queue.clone(),
    )
    .with_ledger_step(LedgerStep::Queued);

    const SKUS: usize = 12;
    const EACH: usize = 15;
    for i in 0..SKUS {
        setup
            .put_product(&format!("MID-{i}"), &serde_json::json!({"currency": "EUR"}))
            .await
            .unwrap();
    }
    let erp = SourceName::parse("erp").unwrap();
    let mut messages: Vec<Message> = (0..SKUS * EACH)
        .map(|n| {
            let e = tally_core::event::parse_event(
                &serde_json::json!({"id": format!("adj-{n}"), "type": "stock.adjusted",
                    "occurred_at": chrono::Utc::now(),
                    "data": {"sku": format!("MID-{}", n % SKUS), "location": "WH-1", "delta": 1, "reason": "recount"}}),
                chrono::Utc::now(),
            )
            .unwrap();
            tally_app::pipeline::event_message(&erp, &e).unwrap()
        })
        .collect();
    messages.insert(
        40,
        Message {
            body: "{not json".into(),
            group: Some("POISON".into()),
            dedup_id: Some("poison-1".into()),
        },
    );
    queue.send(queues::STOCK, messages).await.unwrap();

    let (mut reported, mut empty_polls) = (0, 0);
    while empty_polls < 20 {
        let (received, done) = support::poll_once(&sqs, &urls[queues::STOCK], |e| {
            update_stock::handle(&tally, e)
        })
        .await;
        reported += received - done;
        empty_polls = if received == 0 { empty_polls + 1 } else { 0 };
        if received == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let lost = lost.load(Ordering::Relaxed);
    assert!(lost >= 5, "only {lost} answers lost: the faults never bit");
    assert!(
        reported as u64 >= lost,
        "{reported} partial failures reported for {lost} lost answers"
    );
    for i in 0..SKUS {
        let sku = format!("MID-{i}");
        let stock = setup.stock_view(&sku).await.unwrap();
        assert_eq!(stock["on_hand"], EACH, "{sku}: applied once each");
        let records = clean
            .audit_for(&format!("stock:{sku}@WH-1"), 1000)
            .await
            .unwrap();
        assert_eq!(records.len(), EACH, "{sku}: one audit record per event");
    }
    let dead = sqs
        .receive_message()
        .queue_url(&urls["stock-dlq"])
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        ["{not json"],
        "only the poison message is dead-lettered"
    );
    assert_eq!(
        queue.depth(queues::STOCK).await.unwrap(),
        0,
        "nothing left behind"
    );
}
