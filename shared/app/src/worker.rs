//! The local stand-in for an SQS event-source mapping: receive a batch,
//! run the step on each message, delete what succeeded, put back what
//! failed with a growing delay. A message that keeps failing is redriven to
//! the DLQ by the queue itself after its maximum receives.

use std::sync::Arc;
use std::time::Duration;

use tally_core::inbound::Delivery;
use tally_core::ports::queues;
use tokio::sync::{Notify, watch};

use crate::{AppError, Tally};

const BATCH: usize = 32;
const VISIBILITY: Duration = Duration::from_secs(60);
/// Polling interval when nobody wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Drains the inbound queue until `shutdown` turns true. `wake` is notified
/// by the ingest route so a fresh delivery is picked up at once.
pub async fn run_inbound(tally: Tally, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    tracing::info!("inbound worker started");
    while !*shutdown.borrow() {
        let batch = match tally
            .queue
            .receive(queues::INBOUND, BATCH, VISIBILITY)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for msg in batch {
            let result = match serde_json::from_str::<Delivery>(&msg.body) {
                Ok(d) => tally.process_delivery(&d).await.map(|_| ()),
                Err(e) => Err(AppError::Internal(format!("undecodable delivery: {e}"))),
            };
            let done = match result {
                Ok(()) => tally.queue.delete(queues::INBOUND, &msg.receipt).await,
                Err(e) => {
                    // Transient or not, the message stays: a transient error
                    // heals on retry, a permanent one ends in the DLQ.
                    tracing::warn!(error = %e, receives = msg.receive_count, "delivery failed; will retry");
                    let delay = Duration::from_millis(100 * 2u64.pow(msg.receive_count.min(8)));
                    tally
                        .queue
                        .retry_after(queues::INBOUND, &msg.receipt, delay)
                        .await
                }
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "could not settle a message; it will be redelivered");
            }
        }
    }
    tracing::info!("inbound worker stopped");
}
