//! reprice: decide prices when stock, competitors or costs move.
//!
//! - Triggers: SQS `signal` (competitor prices, cost changes) and the state
//!   table's stream (stock changes).
//! - Input: either event shape; told apart by `eventSource`.
//! - Output: partial batch failures (SQS message ids, or the first failed
//!   stream record's sequence number).
//! - Side effects: the price record (with `last_decision`), an audited price
//!   change and one outbox item per channel, or a pending action for a move
//!   too large to apply alone.
//! - Retries: a signal is applied once per source and event id; a stock
//!   change re-decided twice is held by `min_interval_s`.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;
use tally_app::Tally;
use tally_core::inbound::SourcedEvent;

use super::{body, each_message};
use crate::stream::{StateChange, decode};

pub async fn handle(tally: &Tally, event: Value) -> Result<Value, lambda_runtime::Error> {
    let from_sqs = event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if from_sqs {
        let sqs: SqsEvent = serde_json::from_value(event)?;
        let resp: SqsBatchResponse = each_message(sqs, |msg| async move {
            let signal: SourcedEvent = body(&msg)?;
            tally
                .reprice_on_signal(&signal.source, &signal.event)
                .await
                .map(|_| ())
        })
        .await;
        Ok(serde_json::to_value(resp)?)
    } else {
        let stream: StreamEvent = serde_json::from_value(event)?;
        Ok(serde_json::to_value(on_stock_changes(tally, stream).await)?)
    }
}

async fn on_stock_changes(tally: &Tally, stream: StreamEvent) -> DynamoDbEventResponse {
    let mut resp = DynamoDbEventResponse::default();
    for record in &stream.records {
        let Ok(StateChange::Record(change)) = decode(record) else {
            continue;
        };
        if let Err(e) = tally.reprice_on_change(&change).await {
            tracing::warn!(key = %change.key, error = %e, "reprice failed; the stream resumes here");
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = record.change.sequence_number.clone();
            resp.batch_item_failures.push(f);
            break;
        }
    }
    resp
}
