//! push: tell the channels.
//!
//! - Trigger: the `outbound` FIFO queue (group = channel).
//! - Input: `tally_core::push::Outbound` messages (stock/price changed,
//!   approved commands, resync).
//! - Output: batch item failures for what must be tried again; each such
//!   message's visibility is set to the channel's `Retry-After` or the
//!   backoff, so SQS redelivers it then.
//! - Side effects: platform admin API calls; `pushed:`/`channel_sync:`
//!   records and audit; an alert when a message is given up on (its
//!   `maxReceiveCount`-th receive fails, so SQS moves it to the DLQ).
//! - Retries: coalesced against what each channel last confirmed, and
//!   commands read the order first: a redelivery pushes nothing twice.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tally_app::Tally;
use tally_app::push::Settle;
use tally_core::ports::{Received, queues};

use super::failure;

pub async fn handle(tally: &Tally, event: SqsEvent) -> SqsBatchResponse {
    let batch: Vec<Received> = event
        .records
        .iter()
        .map(|m| Received {
            receipt: m.receipt_handle.clone().unwrap_or_default(),
            body: m.body.clone().unwrap_or_default(),
            group: m.attributes.get("MessageGroupId").cloned(),
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        })
        .collect();
    let settled = tally.push_batch(&batch).await;
    let mut resp = SqsBatchResponse::default();
    for ((msg, received), settle) in event.records.iter().zip(&batch).zip(settled) {
        match settle {
            Settle::Done => continue,
            Settle::RetryAfter(delay) => {
                if let Err(e) = tally
                    .queue
                    .retry_after(queues::OUTBOUND, &received.receipt, delay)
                    .await
                {
                    tracing::warn!(error = %e, "could not delay the retry; SQS retries after the visibility timeout");
                }
            }
            // Failing its last receive: SQS moves it to the DLQ.
            Settle::DeadLetter => {}
        }
        resp.batch_item_failures
            .push(failure(msg.message_id.clone().unwrap_or_default()));
    }
    resp
}
