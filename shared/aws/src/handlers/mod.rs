//! One handler per Lambda function. Each `functions/<name>/src/main.rs`
//! builds its clients once and hands the matching handler to the runtime.
//! The handlers only decode the trigger's event, call a step of tally-app,
//! and shape the answer (a partial batch failure for SQS and streams).

pub mod monitor;
pub mod publish;
pub mod push;
pub mod recommend_order_action;
pub mod reprice;
pub mod update_stock;
pub mod validate;

use std::collections::BTreeSet;
use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tally_app::AppError;

/// Runs `step` on each message of an SQS batch and reports only the
/// failures, so SQS retries just those (ReportBatchItemFailures). On a FIFO
/// queue, a message whose group already failed in this batch is not tried:
/// it is reported too, so the group's order is kept on retry.
pub async fn each_message<F, Fut>(event: SqsEvent, step: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), AppError>>,
{
    let mut failed_groups: BTreeSet<String> = BTreeSet::new();
    let mut failures = vec![];
    for msg in event.records {
        let id = msg.message_id.clone().unwrap_or_default();
        let group = msg.attributes.get("MessageGroupId").cloned();
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            failures.push(failure(id));
            continue;
        }
        if let Err(e) = step(msg).await {
            // Either way the message stays: a transient error heals on
            // retry, a permanent one reaches the DLQ after maxReceiveCount.
            if e.is_transient() {
                tracing::warn!(message = %id, error = %e, "will retry");
            } else {
                tracing::error!(message = %id, error = %e, "failed; bound for the DLQ if it keeps failing");
            }
            if let Some(g) = group {
                failed_groups.insert(g);
            }
            failures.push(failure(id));
        }
    }
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failures;
    resp
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// The JSON body of an SQS message as `T`.
pub fn body<T: serde::de::DeserializeOwned>(msg: &SqsMessage) -> Result<T, AppError> {
    let raw = msg.body.as_deref().unwrap_or_default();
    serde_json::from_str(raw).map_err(|e| AppError::BadRequest(format!("undecodable message: {e}")))
}

/// Sets up JSON logs for CloudWatch, once per cold start. `RUST_LOG` takes
/// levels and `target=level` pairs (`info,tally_aws=debug`); an unreadable
/// one means `info`. `Targets` rather than `EnvFilter` keeps a regex engine
/// out of every binary.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_target(false)
        .finish()
        .with(filter)
        .init();
}

fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    rust_log
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing::Level;

    #[test]
    fn rust_log_sets_levels_per_target_and_falls_back_to_info() {
        let f = log_filter(Some("warn,tally_aws=debug"));
        assert!(f.would_enable("tally_aws::dynamo", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        for unreadable in [None, Some("tally_aws=loud")] {
            let f = log_filter(unreadable);
            assert!(f.would_enable("tally_aws", &Level::INFO));
            assert!(!f.would_enable("tally_aws", &Level::DEBUG));
        }
    }

    const STOCK_EVENT: &str =
        include_str!("../../../../tests/events/lambda/update-stock-count.json");

    /// Three messages: a1 and a2 in group A, b1 in group B.
    fn batch() -> SqsEvent {
        let mut e: SqsEvent = serde_json::from_str(STOCK_EVENT).unwrap();
        let template = e.records[0].clone();
        e.records = ["a1", "a2", "b1"]
            .iter()
            .map(|id| {
                let mut m = template.clone();
                m.message_id = Some((*id).to_owned());
                m.attributes
                    .insert("MessageGroupId".into(), id[..1].to_uppercase());
                m
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn only_failures_are_reported_and_a_failed_fifo_group_stops() {
        let tried = Mutex::new(vec![]);
        let resp = each_message(batch(), |m| {
            let id = m.message_id.clone().unwrap();
            tried.lock().unwrap().push(id.clone());
            async move {
                if id == "a1" {
                    Err(AppError::Unavailable("throttled".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["a1", "a2"], "a2 waits behind a1; b1 is done");
        assert_eq!(
            *tried.lock().unwrap(),
            ["a1", "b1"],
            "a2 is not tried out of order"
        );
    }

    #[tokio::test]
    async fn an_undecodable_body_is_a_failure_not_a_panic() {
        let mut e = batch();
        e.records[0].body = Some("{not json".into());
        let resp = each_message(e, |m| async move {
            body::<tally_core::inbound::SourcedEvent>(&m).map(|_| ())
        })
        .await;
        assert_eq!(
            resp.batch_item_failures.len(),
            2,
            "a1 fails, a2 waits behind it"
        );
    }

    #[test]
    fn the_fixture_is_a_sourced_event() {
        let e: SqsEvent = serde_json::from_str(STOCK_EVENT).unwrap();
        let s: tally_core::inbound::SourcedEvent = body(&e.records[0]).unwrap();
        assert_eq!(s.event.body.type_name(), "stock.counted");
    }
}
