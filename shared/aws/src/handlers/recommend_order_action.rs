//! recommend-order-action: turn order-handling events into recommended
//! actions.
//!
//! - Trigger: SQS `order` (FIFO by order id), batch up to 10.
//! - Input: a `SourcedEvent` (`order.short`, `order.payment_failed`,
//!   `order.address_change_requested`, `order.refund_requested`).
//! - Output: partial batch failures; a failure stops its order's group.
//! - Side effects: a pending action with its rationale and evidence, and its
//!   audit record, once per event (an idempotency marker).
//! - Retries: a redelivered event finds its marker and does nothing.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_app::Tally;
use tally_core::inbound::SourcedEvent;

use super::{body, each_message};

pub async fn handle(tally: &Tally, event: SqsEvent) -> SqsBatchResponse {
    each_message(event, |msg| async move {
        let e: SourcedEvent = body(&msg)?;
        let action = tally.recommend_for(&e.source, &e.event).await?;
        tracing::info!(event = %e.event.id, ?action, "recommended");
        Ok(())
    })
    .await
}
