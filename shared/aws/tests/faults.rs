//! Fault injection on the AWS path: DynamoDB throttling, injected through
//! the SDK's interceptor hook, under the randomized ledger soak (itself a
//! conditional-write conflict storm on three hot SKUs). Every tenth read
//! is answered as a throttled DynamoDB answers; the SDK's retry strategy
//! must carry the step through, and the ledger must still apply every
//! event exactly once and never oversell.

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
use tally_aws::{DynamoStore, SqsQueue};
use tally_conformance::soak::{SoakPlan, ledger_soak};

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
    let report = ledger_soak(store, queue, SoakPlan::from_env(600, 8)).await;
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
