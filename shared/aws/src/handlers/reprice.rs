//! reprice: decide prices when stock, competitors or costs move.
//!
//! - Triggers: SQS `signal` (competitor prices, cost changes) and the state
//!   table's stream (stock changes).
//! - Input: either event shape; told apart by `eventSource`.
//! - Output: partial batch failures (SQS or stream).
//! - Side effects: none yet. The pricing workflow fills this step; until
//!   then signals are acknowledged and logged, so nothing piles up.
//! - Retries: as the trigger's mapping.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::DynamoDbEventResponse;
use serde_json::Value;
use tally_core::inbound::SourcedEvent;

use super::{body, each_message};

pub async fn handle(event: Value) -> Result<Value, lambda_runtime::Error> {
    let from_sqs = event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if from_sqs {
        let sqs: SqsEvent = serde_json::from_value(event)?;
        let resp: SqsBatchResponse = each_message(sqs, |msg| async move {
            let signal: SourcedEvent = body(&msg)?;
            tracing::info!(event = %signal.event.id, kind = signal.event.body.type_name(), "pricing signal received");
            Ok(())
        })
        .await;
        Ok(serde_json::to_value(resp)?)
    } else {
        let stream: StreamEvent = serde_json::from_value(event)?;
        tracing::info!(records = stream.records.len(), "stock changes received");
        Ok(serde_json::to_value(DynamoDbEventResponse::default())?)
    }
}
