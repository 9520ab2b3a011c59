//! recommend-order-action: turn order-handling events into recommended
//! actions.
//!
//! - Trigger: SQS `order` (FIFO by order id), batch up to 10.
//! - Input: a `SourcedEvent` (`order.short`, `order.payment_failed`,
//!   `order.address_change_requested`, `order.refund_requested`).
//! - Output: partial batch failures.
//! - Side effects: none yet. The order-handling workflow fills this step;
//!   until then events are acknowledged and logged.
//! - Retries: as the SQS mapping; poison messages reach the DLQ.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_core::inbound::SourcedEvent;

use super::{body, each_message};

pub async fn handle(event: SqsEvent) -> SqsBatchResponse {
    each_message(event, |msg| async move {
        let e: SourcedEvent = body(&msg)?;
        tracing::info!(event = %e.event.id, kind = e.event.body.type_name(), "order event received");
        Ok(())
    })
    .await
}
