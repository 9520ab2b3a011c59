//! update-stock: apply ledger events with the persistence primitive.
//!
//! - Trigger: SQS `stock` (FIFO, grouped by order id or SKU), batch up to 10.
//! - Input: a `SourcedEvent` per message (stock counts and adjustments,
//!   order placed, cancelled, fulfilled).
//! - Output: partial batch failures; a failure stops its group.
//! - Side effects: the batch's events in independent units (no shared
//!   order or SKU) side by side; each unit is one DynamoDB transaction where
//!   it fits (stock and order records version-checked once, every event's
//!   audit records and idempotency marker, an outbox item per
//!   `order.short`), so orders on a hot SKU share one conditional write.
//! - Retries: conflicts retry in place from a fresh read; anything else is
//!   reported and redelivered. The markers make a redelivery a no-op.

use std::collections::BTreeSet;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_app::{AppError, Tally};
use tally_core::inbound::SourcedEvent;

use super::{body, failure};

pub async fn handle(tally: &Tally, event: SqsEvent) -> SqsBatchResponse {
    // Decode in order; a message behind an undecodable one of its group
    // waits with it, so the group's order is kept.
    let mut failed_groups: BTreeSet<String> = BTreeSet::new();
    let mut failed: Vec<String> = vec![];
    let mut items = vec![];
    let mut item_ids = vec![];
    for msg in &event.records {
        let id = msg.message_id.clone().unwrap_or_default();
        let group = msg.attributes.get("MessageGroupId").cloned();
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            failed.push(id);
            continue;
        }
        match body::<SourcedEvent>(msg) {
            Ok(SourcedEvent { source, event }) => {
                items.push((source, event));
                item_ids.push(id);
            }
            Err(e) => {
                tracing::error!(message = %id, error = %e, "undecodable; bound for the DLQ");
                failed_groups.extend(group);
                failed.push(id);
            }
        }
    }
    // One group's messages always share a unit (the group is their order
    // or SKU), so they succeed or fail together.
    let applied = tally.apply_in_units(&items).await;
    for ((id, (source, event)), result) in item_ids.into_iter().zip(&items).zip(applied) {
        match result {
            Ok(outcome) => tracing::info!(%source, event = %event.id, ?outcome, "applied"),
            Err(e) => {
                log_failure(&id, &e);
                failed.push(id);
            }
        }
    }
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failed.into_iter().map(failure).collect();
    resp
}

fn log_failure(id: &str, e: &AppError) {
    if e.is_transient() {
        tracing::warn!(message = %id, error = %e, "will retry");
    } else {
        tracing::error!(message = %id, error = %e, "failed; bound for the DLQ if it keeps failing");
    }
}
