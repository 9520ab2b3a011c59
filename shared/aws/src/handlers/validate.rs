//! validate: translate, check and route verified deliveries.
//!
//! - Trigger: SQS `inbound` (FIFO by source), batch up to 10.
//! - Input: a `Delivery` per message (what ingest queued).
//! - Output: partial batch failures.
//! - Side effects: quarantine entries (+ audit) for invalid events; valid
//!   ledger events to `stock`, order requests to `order`, pricing signals to
//!   `signal`.
//! - Retries: a failed delivery is retried whole; quarantine ids and queue
//!   deduplication ids derive from it, so a retry adds nothing twice.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_app::Tally;
use tally_core::inbound::Delivery;

use super::{body, each_message};

pub async fn handle(tally: &Tally, event: SqsEvent) -> SqsBatchResponse {
    each_message(event, |msg| async move {
        let delivery: Delivery = body(&msg)?;
        let outcomes = tally.process_delivery(&delivery).await?;
        tracing::info!(delivery = %delivery.id, source = %delivery.source, ?outcomes, "validated");
        Ok(())
    })
    .await
}
