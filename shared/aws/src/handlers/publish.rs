//! publish: what committed state changes mean for the outside world.
//!
//! - Trigger: the state table's stream (NEW_AND_OLD_IMAGES).
//! - Input: stream records.
//! - Output: batch item failures (the first failing record; the stream
//!   resumes there).
//! - Side effects: outbox items (committed with a transaction, such as
//!   `order.short`) are sent to their queue; a stock or product change
//!   queues `stock.changed` (and `price.changed`) on `outbound` for each
//!   channel Tally pushes to (the push function reads the figures then).
//! - Retries: at least once; queue deduplication ids and the consumers'
//!   idempotency keys make a resend harmless.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tally_app::{AppError, Tally};
use tally_core::ports::queues;

use crate::stream::{StateChange, decode};

pub async fn handle(tally: &Tally, event: StreamEvent) -> DynamoDbEventResponse {
    let mut resp = DynamoDbEventResponse::default();
    for record in &event.records {
        if let Err(e) = publish_one(tally, record).await {
            tracing::warn!(error = %e, "publish failed; the stream will resume here");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            resp.batch_item_failures.push(failure);
            break;
        }
    }
    resp
}

async fn publish_one(
    tally: &Tally,
    record: &aws_lambda_events::dynamodb::EventRecord,
) -> Result<(), AppError> {
    match decode(record).map_err(|e| AppError::Internal(e.to_string()))? {
        StateChange::Outbox(o) => {
            tally.queue.send(&o.queue, vec![o.message]).await?;
        }
        StateChange::Record(change) => {
            let messages = tally.outbound_for_change(&change).await?;
            if !messages.is_empty() {
                tally.queue.send(queues::OUTBOUND, messages).await?;
            }
        }
        StateChange::Ignored => {}
    }
    Ok(())
}
