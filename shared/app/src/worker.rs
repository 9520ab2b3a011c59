//! The local stand-ins for Lambda's event-source mappings: receive a batch
//! from a queue, run the step on each message, delete what succeeded, put
//! back what failed with a growing delay (the queue dead-letters a message
//! after its maximum receives); and follow the change feed as a stream
//! mapping would, remembering how far it got.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tally_core::inbound::{Delivery, SourcedEvent};
use tally_core::ports::{ChangeFeed, Message, queues};
use tokio::sync::{Notify, watch};

use crate::{AppError, Tally};

const BATCH: usize = 32;
/// The change feed consumer that reprices.
pub const REPRICE_CONSUMER: &str = "reprice";
const VISIBILITY: Duration = Duration::from_secs(60);
/// Polling interval when nobody wakes the worker.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Drains the inbound queue until `shutdown` turns true. `wake` is notified
/// by the ingest route so a fresh delivery is picked up at once; `done`
/// wakes the workers downstream after each batch.
pub async fn run_inbound(
    tally: Tally,
    wake: Arc<Notify>,
    done: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) {
    let t = tally.clone();
    drain(
        &tally,
        queues::INBOUND,
        wake,
        Some(done),
        shutdown,
        move |bodies| {
            let t = t.clone();
            async move {
                // Undecodable ones fail alone; the rest go as one batch.
                let decoded: Vec<Result<Delivery, AppError>> = bodies
                    .iter()
                    .map(|b| {
                        serde_json::from_str(b)
                            .map_err(|e| AppError::Internal(format!("undecodable delivery: {e}")))
                    })
                    .collect();
                let deliveries: Vec<Delivery> = decoded
                    .iter()
                    .filter_map(|d| d.as_ref().ok().cloned())
                    .collect();
                let mut processed = t.process_deliveries(&deliveries).await.into_iter();
                decoded
                    .into_iter()
                    .map(|d| match d {
                        Ok(_) => processed.next().unwrap_or(Ok(vec![])).map(|_| ()),
                        Err(e) => Err(e),
                    })
                    .collect()
            }
        },
    )
    .await
}

/// Drains the signal queue into the reprice step; `wake` says there may be
/// work.
pub async fn run_signals(tally: Tally, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
    let t = tally.clone();
    drain(
        &tally,
        queues::SIGNAL,
        wake,
        None,
        shutdown,
        move |bodies| {
            let t = t.clone();
            one_by_one(bodies, move |body| {
                let t = t.clone();
                async move {
                    let e: SourcedEvent = serde_json::from_str(&body)
                        .map_err(|e| AppError::Internal(format!("undecodable signal: {e}")))?;
                    t.reprice_on_signal(&e.source, &e.event).await.map(|_| ())
                }
            })
        },
    )
    .await
}

/// Drains the order queue into the recommend step.
pub async fn run_orders(tally: Tally, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
    let t = tally.clone();
    drain(&tally, queues::ORDER, wake, None, shutdown, move |bodies| {
        let t = t.clone();
        one_by_one(bodies, move |body| {
            let t = t.clone();
            async move {
                let e: SourcedEvent = serde_json::from_str(&body)
                    .map_err(|e| AppError::Internal(format!("undecodable order event: {e}")))?;
                t.recommend_for(&e.source, &e.event).await.map(|_| ())
            }
        })
    })
    .await
}

/// Drains the outbound queue into the push step. It waits until no new
/// message has arrived for `quiet` (at most `10 × quiet` in all), so a
/// burst of changes to one SKU becomes one push of the final figure.
pub async fn run_outbound(
    tally: Tally,
    wake: Arc<Notify>,
    quiet: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let queue = queues::OUTBOUND;
    tracing::info!(queue, "worker started");
    while !*shutdown.borrow() {
        let mut depth = tally.queue.depth(queue).await.unwrap_or(0);
        let started = tokio::time::Instant::now();
        while depth > 0 && started.elapsed() < quiet * 10 && !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(quiet) => {}
                _ = shutdown.changed() => {}
            }
            let now = tally.queue.depth(queue).await.unwrap_or(0);
            if now == depth {
                break;
            }
            depth = now;
        }
        let batch = match tally.queue.receive(queue, 100, VISIBILITY).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(queue, error = %e, "receive failed");
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
        let settled = tally.push_batch(&batch).await;
        for (msg, s) in batch.iter().zip(settled) {
            let done = match s {
                crate::push::Settle::Done => tally.queue.delete(queue, &msg.receipt).await,
                crate::push::Settle::RetryAfter(d) => {
                    tally.queue.retry_after(queue, &msg.receipt, d).await
                }
                crate::push::Settle::DeadLetter => {
                    let dlq = queues::dead_letter(queue);
                    let m = Message {
                        body: msg.body.clone(),
                        group: msg.group.clone(),
                        dedup_id: None,
                    };
                    match tally.queue.send(&dlq, vec![m]).await {
                        Ok(()) => tally.queue.delete(queue, &msg.receipt).await,
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = done {
                tracing::warn!(queue, error = %e, "could not settle a message; it will be redelivered");
            }
        }
    }
    tracing::info!(queue, "worker stopped");
}

/// Sweeps the actions every `every`: expiry, and unpaid holds escalated.
pub async fn sweep_actions(tally: Tally, every: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(e) = tally.sweep_actions().await {
            tracing::warn!(error = %e, "expiring actions failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs `step` on each body in turn.
async fn one_by_one<F, Fut>(bodies: Vec<String>, step: F) -> Vec<Result<(), AppError>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), AppError>>,
{
    let mut out = Vec::with_capacity(bodies.len());
    for body in bodies {
        out.push(step(body).await);
    }
    out
}

/// Receives batches from `queue` and hands each to `step`, which answers
/// one result per message; the successes are deleted in one go.
async fn drain<F, Fut>(
    tally: &Tally,
    queue: &'static str,
    wake: Arc<Notify>,
    done: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
    step: F,
) where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Vec<Result<(), AppError>>>,
{
    tracing::info!(queue, "worker started");
    while !*shutdown.borrow() {
        let batch = match tally.queue.receive(queue, BATCH, VISIBILITY).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(queue, error = %e, "receive failed");
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
        let results = step(batch.iter().map(|m| m.body.clone()).collect()).await;
        let mut done_with = vec![];
        for (msg, result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => done_with.push(msg.receipt),
                Err(e) => {
                    // Transient or not, the message stays: a transient error
                    // heals on retry, a permanent one ends in the DLQ.
                    tracing::warn!(queue, error = %e, receives = msg.receive_count, "step failed; will retry");
                    let delay = Duration::from_millis(100 * 2u64.pow(msg.receive_count.min(8)));
                    if let Err(e) = tally.queue.retry_after(queue, &msg.receipt, delay).await {
                        tracing::warn!(queue, error = %e, "could not put a message back; it will be redelivered");
                    }
                }
            }
        }
        if let Err(e) = tally.queue.delete_many(queue, &done_with).await {
            tracing::warn!(queue, error = %e, "could not settle messages; they will be redelivered");
        }
        if let Some(d) = &done {
            d.notify_waiters();
        }
    }
    tracing::info!(queue, "worker stopped");
}

/// Follows the change feed and reprices a SKU whenever its stock changes,
/// counting newly reserved units as sales. What it has seen is saved, so a
/// restart resumes where it stopped.
pub async fn follow_stock_changes(
    tally: Tally,
    feed: Arc<dyn ChangeFeed>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!("change feed follower started");
    let mut at = feed.cursor(REPRICE_CONSUMER).await.unwrap_or(0);
    while !*shutdown.borrow() {
        let changes = match feed.changes_after(at, 100).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the change feed failed");
                vec![]
            }
        };
        if changes.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for c in changes {
            // Tell the channels first: a resend after a failed reprice is
            // dropped by the queue's deduplication.
            let published = match tally.outbound_for_change(&c).await {
                Ok(m) if m.is_empty() => Ok(()),
                Ok(m) => tally
                    .queue
                    .send(queues::OUTBOUND, m)
                    .await
                    .map_err(AppError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = published {
                tracing::warn!(key = %c.key, error = %e, "queueing the push failed");
                break;
            }
            if let Err(e) = tally.reprice_on_change(&c).await {
                // Try this change again on the next round.
                tracing::warn!(key = %c.key, error = %e, "reprice failed");
                break;
            }
            at = c.seq;
        }
        if let Err(e) = feed.save_cursor(REPRICE_CONSUMER, at).await {
            tracing::warn!(error = %e, "could not save the change feed position");
        }
    }
    tracing::info!("change feed follower stopped");
}

/// The change feed consumer that watches for anomalies.
pub const MONITOR_CONSUMER: &str = "monitor";

/// Follows the audit log into the anomaly monitor, and sweeps for what has
/// not happened (silent sources, lasting drift) every `sweep_every`.
pub async fn follow_audit(
    tally: Tally,
    feed: Arc<dyn ChangeFeed>,
    wake: Arc<Notify>,
    sweep_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!("monitor started");
    let mut at = feed.cursor(MONITOR_CONSUMER).await.unwrap_or(0);
    let mut swept = tokio::time::Instant::now();
    while !*shutdown.borrow() {
        if swept.elapsed() >= sweep_every {
            if let Err(e) = tally.monitor_sweep().await {
                tracing::warn!(error = %e, "monitor sweep failed");
            }
            swept = tokio::time::Instant::now();
        }
        let records = match feed.audit_after(at, 500).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit log failed");
                vec![]
            }
        };
        let Some((last, _)) = records.last() else {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL.max(sweep_every.min(Duration::from_secs(1)))) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let last = *last;
        match tally.monitor_records(&records, None).await {
            Ok(_) => {
                at = last;
                if let Err(e) = feed.save_cursor(MONITOR_CONSUMER, at).await {
                    tracing::warn!(error = %e, "could not save the monitor's position");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "monitor failed; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
    tracing::info!("monitor stopped");
}
