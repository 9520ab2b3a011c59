//! The validate step: a queued delivery becomes canonical events, each
//! checked against the catalog, then quarantined with its reasons, applied
//! to the ledger, or forwarded to the workflow that owns it.
//!
//! Every outcome is idempotent: a delivery processed twice (a retry after a
//! crash) quarantines into the same entries and applies nothing twice.

use std::collections::BTreeMap;

use serde_json::json;
use tally_connectors::{Context, Mappings, Translated};
use tally_core::audit::Cause;
use tally_core::catalog::{Location, Platform, Product, Source, check_event};
use tally_core::entity::{Entity, Key, Kind};
use tally_core::event::{Event, EventBody};
use tally_core::inbound::{Delivery, SourcedEvent};
use tally_core::ports::{Expect, Message, Put, Transaction, queues};
use tally_core::quarantine::QuarantineEntry;
use tally_core::{Reasons, Sku, SourceName};

use crate::{AppError, LedgerStep, Tally};

/// What became of one event of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Forwarded(&'static str),
    /// A non-authoritative channel's stock figure, kept for drift.
    ChannelView,
    Quarantined(String),
}

impl Tally {
    /// Processes one message of the inbound queue.
    pub async fn process_delivery(&self, delivery: &Delivery) -> Result<Vec<Outcome>, AppError> {
        self.process_deliveries(std::slice::from_ref(delivery))
            .await
            .pop()
            .unwrap_or_else(|| Ok(vec![]))
    }

    /// Processes a batch of the inbound queue, one result per delivery.
    /// Each is translated and checked in order; what the ledger applies in
    /// this process is then applied with [`Tally::apply_in_units`]: the same
    /// per-order and per-SKU order the stock queue keeps in AWS.
    pub async fn process_deliveries(
        &self,
        deliveries: &[Delivery],
    ) -> Vec<Result<Vec<Outcome>, AppError>> {
        let mut results = Vec::with_capacity(deliveries.len());
        let mut ledger: Vec<Pending> = vec![];
        let mut looked_up = LookedUp::default();
        for (d, delivery) in deliveries.iter().enumerate() {
            results.push(self.prepare(d, delivery, &mut looked_up, &mut ledger).await);
        }
        // Where each outcome goes (delivery, slot), and the events, moved.
        let (places, items): (Vec<_>, Vec<(SourceName, Event)>) = ledger
            .into_iter()
            .map(|p| ((p.delivery, p.slot), (p.source, p.event)))
            .unzip();
        let applied = self.apply_in_units(&items).await;
        for (((delivery, slot), (_, event)), result) in places.into_iter().zip(&items).zip(applied)
        {
            match result {
                Ok(outcome) => {
                    if outcome == Outcome::Applied {
                        self.observe_lag(&deliveries[delivery], event);
                    }
                    if let Ok(slots) = &mut results[delivery] {
                        slots[slot] = Some(outcome);
                    }
                }
                // The delivery is retried whole; what did land is then a
                // duplicate.
                Err(e) => {
                    if results[delivery].is_ok() {
                        results[delivery] = Err(e);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.map(|slots| slots.into_iter().flatten().collect()))
            .collect()
    }

    /// Translates and checks one delivery; quarantines, records and
    /// forwards what it can at once, and leaves the events this process
    /// applies to the ledger in `ledger` (their slots stay empty).
    async fn prepare(
        &self,
        d: usize,
        delivery: &Delivery,
        looked_up: &mut LookedUp,
        ledger: &mut Vec<Pending>,
    ) -> Result<Vec<Option<Outcome>>, AppError> {
        let need_source = !looked_up.sources.contains_key(&delivery.source);
        let need_mappings = delivery.platform != Platform::Tally && looked_up.mappings.is_none();
        // Side by side: on DynamoDB each lookup is a round trip, and the
        // first delivery of a cold start waits for both.
        let (source, mappings) = tokio::try_join!(
            async {
                if need_source {
                    self.source(&delivery.source).await.map(Some)
                } else {
                    Ok(None)
                }
            },
            async {
                if need_mappings {
                    self.mappings().await.map(Some)
                } else {
                    Ok(None)
                }
            },
        )?;
        if let Some(source) = source {
            looked_up.sources.insert(delivery.source.clone(), source);
        }
        if mappings.is_some() {
            looked_up.mappings = mappings;
        }
        let Some(source) = looked_up.sources[&delivery.source].clone() else {
            let mut r = Reasons::new();
            r.push(
                "source",
                format!("{} is no longer configured", delivery.source),
            );
            return Ok(vec![Some(
                self.quarantine(delivery, 0, delivery.body.clone(), r)
                    .await?,
            )]);
        };
        let ctx = Context {
            source: &source,
            mappings: looked_up.mappings.as_ref().unwrap_or(&NO_MAPPINGS),
            now: self.now(),
        };
        let mut slots = vec![];
        for (index, t) in tally_connectors::translate(delivery, &ctx)
            .into_iter()
            .enumerate()
        {
            let outcome = match t.result {
                Ok(event) => match self.check(&event).await? {
                    reasons if reasons.is_empty() => {
                        if self.ledger == LedgerStep::Inline && applies_inline(&source, &event) {
                            ledger.push(Pending {
                                delivery: d,
                                slot: slots.len(),
                                source: source.name.clone(),
                                event,
                            });
                            None
                        } else {
                            Some(self.route(&source, &event).await?)
                        }
                    }
                    reasons => Some(self.quarantine(delivery, index, t.payload, reasons).await?),
                },
                Err(reasons) => Some(self.quarantine(delivery, index, t.payload, reasons).await?),
            };
            slots.push(outcome);
        }
        Ok(slots)
    }

    fn observe_lag(&self, delivery: &Delivery, event: &Event) {
        let now = self.now();
        let secs = |t: chrono::DateTime<chrono::Utc>| {
            (now - t).num_microseconds().unwrap_or(0) as f64 / 1e6
        };
        self.metrics
            .observe_lag("receipt", secs(delivery.received_at));
        self.metrics.observe_lag("event", secs(event.occurred_at));
    }

    /// Translates with the current aliases (platform deliveries only need
    /// them; canonical events name SKUs and locations directly).
    pub async fn translate(
        &self,
        delivery: &Delivery,
        source: &Source,
    ) -> Result<Vec<Translated>, AppError> {
        let mappings = if delivery.platform == Platform::Tally {
            Mappings::default()
        } else {
            self.mappings().await?
        };
        let ctx = Context {
            source,
            mappings: &mappings,
            now: self.now(),
        };
        Ok(tally_connectors::translate(delivery, &ctx))
    }

    async fn mappings(&self) -> Result<Mappings, AppError> {
        let (products, locations) = tokio::try_join!(
            self.store.list(Kind::Product),
            self.store.list(Kind::Location)
        )?;
        let products: Vec<Product> = products
            .into_iter()
            .filter_map(|v| v.value.into_product())
            .collect();
        let locations: Vec<Location> = locations
            .into_iter()
            .filter_map(|v| v.value.into_location())
            .collect();
        Ok(Mappings::new(&products, &locations))
    }

    /// Every reason the catalog refuses `event`.
    pub async fn check(&self, event: &Event) -> Result<Reasons, AppError> {
        let products = self.products(event.body.skus().into_iter()).await?;
        Ok(check_event(event, &products))
    }

    pub async fn products<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<BTreeMap<Sku, Product>, AppError> {
        let keys: Vec<Key> = skus.map(Key::product).collect();
        Ok(self
            .store
            .get(&keys)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|v| v.value.into_product())
            .map(|p| (p.sku.clone(), p))
            .collect())
    }

    /// Sends a valid event where it belongs: the ledger applies stock and
    /// order-lifecycle events; pricing signals and order requests wait on
    /// their workflow's queue.
    pub async fn route(&self, source: &Source, event: &Event) -> Result<Outcome, AppError> {
        if is_channel_view(source, event) {
            // A channel's own figure: kept as its view, never in the ledger.
            return self.record_channel_view(source, event).await;
        }
        if event.body.touches_ledger() {
            return match self.ledger {
                LedgerStep::Inline => self.apply_to_ledger(&source.name, event).await,
                LedgerStep::Queued => self.forward(&source.name, event, queues::STOCK).await,
            };
        }
        let queue = match event.body {
            EventBody::PriceCompetitorObserved { .. } | EventBody::ProductCostChanged { .. } => {
                queues::SIGNAL
            }
            _ => queues::ORDER,
        };
        self.forward(&source.name, event, queue).await
    }

    /// Queues `event` for the step that owns it. At least once: a retry of
    /// this delivery sends again, the queue's deduplication id drops the
    /// copy, and the consumer's idempotency key would catch any that slips.
    async fn forward(
        &self,
        source: &SourceName,
        event: &Event,
        queue: &'static str,
    ) -> Result<Outcome, AppError> {
        let message = event_message(source, event)?;
        self.queue.send(queue, vec![message]).await?;
        Ok(Outcome::Forwarded(queue))
    }

    async fn quarantine(
        &self,
        delivery: &Delivery,
        index: usize,
        payload: String,
        reasons: Reasons,
    ) -> Result<Outcome, AppError> {
        let id = QuarantineEntry::id_for(&delivery.id, index);
        tracing::info!(quarantine = %id, source = %delivery.source, %reasons, "quarantined");
        self.metrics.inc(
            "tally_events_quarantined_total",
            &[("source", delivery.source.as_str())],
        );
        let entry = QuarantineEntry {
            id: id.clone(),
            source: delivery.source.clone(),
            platform: delivery.platform,
            received_at: delivery.received_at,
            reasons: reasons.clone(),
            payload,
            headers: delivery.headers.clone(),
        };
        let cause = Cause::system(format!("delivery:{}:{index}", delivery.id), self.now());
        let record = cause.record(
            0,
            format!("quarantine:{id}"),
            "quarantine.created",
            serde_json::Value::Null,
            json!({"source": delivery.source, "reasons": reasons}),
            json!({"delivery": delivery.id, "index": index}),
        );
        let tx = Transaction {
            puts: vec![Put {
                entity: Entity::Quarantine(entry),
                expect: Expect::Absent,
            }],
            audit: vec![record],
            ..Default::default()
        };
        match self.store.commit(tx).await {
            // Already there: this delivery was processed before a crash.
            Ok(()) | Err(tally_core::Error::Conflict(_)) => Ok(Outcome::Quarantined(id)),
            Err(e) => Err(e.into()),
        }
    }
}

/// What one batch looked up once for all its deliveries.
#[derive(Default)]
struct LookedUp {
    sources: BTreeMap<SourceName, Option<Source>>,
    mappings: Option<Mappings>,
}

/// Canonical events name SKUs and locations directly.
static NO_MAPPINGS: std::sync::LazyLock<Mappings> = std::sync::LazyLock::new(Mappings::default);

/// A valid event waiting for the ledger step of this process.
struct Pending {
    delivery: usize,
    /// Its place among its delivery's outcomes.
    slot: usize,
    source: SourceName,
    event: Event,
}

/// A channel's own stock figure from a source that is not authoritative:
/// kept as its view, never in the ledger.
fn is_channel_view(source: &Source, event: &Event) -> bool {
    matches!(
        event.body,
        EventBody::StockCounted { .. } | EventBody::StockAdjusted { .. }
    ) && !source.authoritative_stock
}

fn applies_inline(source: &Source, event: &Event) -> bool {
    event.body.touches_ledger() && !is_channel_view(source, event)
}

/// Source + event id: the same event from the same source applies once.
pub fn idempotency_key(source: &SourceName, event: &Event) -> String {
    format!("{source}:{}", event.id)
}

/// A canonical event as a queue message: grouped by its order (or SKU) so
/// one order's events stay in order, deduplicated by its idempotency key.
pub fn event_message(source: &SourceName, event: &Event) -> Result<Message, AppError> {
    let group = event
        .body
        .order_id()
        .map(|o| o.to_string())
        .or_else(|| event.body.skus().first().map(|s| s.to_string()));
    let body = SourcedEvent {
        source: source.clone(),
        event: event.clone(),
    };
    Ok(Message {
        body: serde_json::to_string(&body).map_err(|e| AppError::Internal(e.to_string()))?,
        group,
        dedup_id: Some(idempotency_key(source, event)),
    })
}
