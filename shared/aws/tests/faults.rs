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

/// A throttle, on reads only: they change nothing at the table, so a
/// replaced answer is exactly what a throttle looks like to the client.
const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput (injected)."}"#;
const READS: &[&str] = &["GetItem", "BatchGetItem", "Query"];
/// An answer lost after the write landed.
const LOST: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error (injected after the write)."}"#;

/// Whether the attempt in flight is one the injector targets.
#[derive(Debug, Clone)]
struct Targeted(bool);

impl Storable for Targeted {
    type Storer = StoreReplace<Self>;
}

/// Replaces the answer of every `every`-th successful call to one of `ops`
/// with `status` and `body`, as the SDK sees it: the request did reach the
/// table, only its answer changes.
#[derive(Debug)]
struct Inject {
    ops: &'static [&'static str],
    every: u64,
    status: u16,
    body: &'static str,
    seen: AtomicU64,
    injected: Arc<AtomicU64>,
}

impl Inject {
    fn new(
        ops: &'static [&'static str],
        every: u64,
        status: u16,
        body: &'static str,
    ) -> (Inject, Arc<AtomicU64>) {
        let injected = Arc::new(AtomicU64::new(0));
        let inject = Inject {
            ops,
            every,
            status,
            body,
            seen: AtomicU64::new(0),
            injected: injected.clone(),
        };
        (inject, injected)
    }
}

impl Intercept for Inject {
    fn name(&self) -> &'static str {
        "Inject"
    }

    /// The request is gone once it is sent: note here what it is.
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
        let targeted = self
            .ops
            .iter()
            .any(|op| target.ends_with(&format!(".{op}")));
        cfg.interceptor_state().store_put(Targeted(targeted));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let targeted = cfg.load::<Targeted>().is_some_and(|t| t.0);
        let ok = context.response().status().is_success();
        if targeted
            && ok
            && self.seen.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1
        {
            self.injected.fetch_add(1, Ordering::Relaxed);
            let response = context.response_mut();
            *response.status_mut() = self.status.try_into()?;
            response.headers_mut().remove("x-amzn-crc32");
            *response.body_mut() = SdkBody::from(self.body);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn a_throttled_dynamodb_under_a_conflict_storm_still_applies_each_event_once() {
    let sdk = support::sdk().await;
    let (state, audit, _) = support::fresh_tables(&sdk, "throttle").await;

    let (throttle, throttled) = Inject::new(READS, 10, 400, THROTTLED);
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(throttle)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn update_stock_failing_midway_reports_its_failures_and_applies_each_event_once() {
    let sdk = support::sdk().await;
    let (state, audit, suffix) = support::fresh_tables(&sdk, "midway").await;
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
    // Every fourth transaction lands, then its answer is a 500.
    let (lose, lost) = Inject::new(&["TransactWriteItems"], 4, 500, LOST);
    let faulty = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(lose)
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
