//! update-stock: apply ledger events with the persistence primitive.
//!
//! - Trigger: SQS `stock` (FIFO, grouped by order id or SKU), batch up to 10.
//! - Input: a `SourcedEvent` per message (stock counts and adjustments,
//!   order placed, cancelled, fulfilled).
//! - Output: partial batch failures; a failure stops its group.
//! - Side effects: one DynamoDB transaction per event: stock and order
//!   records (version-checked), audit records, the idempotency marker, and
//!   an outbox item for `order.short`.
//! - Retries: conflicts retry in place from a fresh read; anything else is
//!   reported and redelivered. The marker makes a redelivery a no-op.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_app::Tally;
use tally_core::inbound::SourcedEvent;

use super::{body, each_message};

pub async fn handle(tally: &Tally, event: SqsEvent) -> SqsBatchResponse {
    each_message(event, |msg| async move {
        let SourcedEvent { source, event } = body(&msg)?;
        let outcome = tally.apply_to_ledger(&source, &event).await?;
        tracing::info!(%source, event = %event.id, ?outcome, "applied");
        Ok(())
    })
    .await
}
