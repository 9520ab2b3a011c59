//! The update-stock step: one ledger event through the persistence
//! primitive. Read what the event touches, decide (pure, in tally-core),
//! commit state + audit + idempotency marker + follow-ups together; on a
//! version conflict, read again and decide again.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use tally_core::audit::Cause;
use tally_core::entity::{Entity, Key, Versioned};
use tally_core::event::{Event, EventBody};
use tally_core::ledger::OrderStatus;
use tally_core::ledger::{self, Snapshot};
use tally_core::orders::risk_signals;
use tally_core::ports::{Expect, OutboxMessage, Put, Transaction, queues};
use tally_core::{Sku, SourceName};

use crate::pipeline::{Outcome, event_message, idempotency_key};
use crate::{AppError, Tally};

/// Conflicts come from concurrent writers on a hot SKU; each retry reads
/// fresh state, so a handful always suffices unless something is wrong.
const MAX_ATTEMPTS: u32 = 50;

impl Tally {
    /// Recent units per day of each SKU an event names, where priced.
    async fn daily_sales(&self, body: &EventBody) -> Result<BTreeMap<Sku, Decimal>, AppError> {
        let skus: Vec<Sku> = body.skus().into_iter().cloned().collect();
        let keys: Vec<Key> = skus.iter().map(Key::price).collect();
        let now = self.now();
        Ok(self
            .store
            .get(&keys)
            .await?
            .into_iter()
            .flatten()
            .filter_map(|v| v.value.into_price())
            .map(|p| (p.sku.clone(), p.daily_sales(now)))
            .collect())
    }

    pub async fn apply_to_ledger(
        &self,
        source: &SourceName,
        event: &Event,
    ) -> Result<Outcome, AppError> {
        let idem = idempotency_key(source, event);
        for attempt in 0..MAX_ATTEMPTS {
            if self.store.was_applied(&idem).await? {
                self.metrics.inc("tally_events_duplicate_total", &[]);
                return Ok(Outcome::Duplicate);
            }
            let (tx, short) = self.decide(source, event, &idem).await?;
            match self.store.commit(tx).await {
                Ok(()) => {
                    self.metrics.inc(
                        "tally_events_applied_total",
                        &[("type", event.body.type_name())],
                    );
                    if short {
                        self.metrics.inc("tally_oversells_prevented_total", &[]);
                    }
                    return Ok(Outcome::Applied);
                }
                Err(tally_core::Error::AlreadyApplied(_)) => {
                    self.metrics.inc("tally_events_duplicate_total", &[]);
                    return Ok(Outcome::Duplicate);
                }
                Err(tally_core::Error::Conflict(key)) => {
                    tracing::debug!(%key, attempt, "conflict, retrying from a fresh read");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "{idem}: still conflicting after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Loads what `event` touches and turns the ledger's decision into one
    /// transaction; also says whether the order came out short (an oversell
    /// prevented).
    async fn decide(
        &self,
        source: &SourceName,
        event: &Event,
        idem: &str,
    ) -> Result<(Transaction, bool), AppError> {
        let order = match event.body.order_id() {
            Some(id) => self.store.get(&[Key::order(id)]).await?.pop().flatten(),
            None => None,
        };
        let order_record = order.as_ref().and_then(|v| v.value.as_order().cloned());
        let skus: Vec<Sku> = ledger::skus_needed(&event.body, order_record.as_ref())
            .into_iter()
            .collect();
        let keys: Vec<Key> = skus.iter().map(Key::stock).collect();
        let loaded: BTreeMap<Sku, Versioned<Entity>> = skus
            .into_iter()
            .zip(self.store.get(&keys).await?)
            .filter_map(|(sku, v)| v.map(|v| (sku, v)))
            .collect();
        let snapshot = Snapshot {
            stocks: loaded
                .iter()
                .filter_map(|(sku, v)| v.value.as_stock().map(|s| (sku.clone(), s.clone())))
                .collect(),
            order: order_record,
        };
        let cause = Cause::system(idem, self.now());
        let out = ledger::apply(&snapshot, event, &cause);

        let mut puts: Vec<Put> = out
            .stocks
            .into_iter()
            .map(|s| Put {
                expect: Expect::from_loaded(loaded.get(&s.sku)),
                entity: Entity::Stock(s),
            })
            .collect();
        let status = out.order.as_ref().map(|o| o.status);
        let (reserved_now, short) = (
            status == Some(OrderStatus::Reserved),
            matches!(event.body, EventBody::OrderPlaced(_)) && status == Some(OrderStatus::Short),
        );
        if let Some(o) = out.order {
            puts.push(Put {
                expect: Expect::from_loaded(order.as_ref()),
                entity: Entity::Order(o),
            });
        }
        let mut follow_ups = out.follow_ups;
        if let EventBody::OrderPlaced(placed) = &event.body
            && reserved_now
        {
            let signals = risk_signals(placed, &self.daily_sales(&event.body).await?, &self.orders);
            if !signals.is_empty() {
                follow_ups.push(Event {
                    id: format!("{}:flagged", event.id),
                    occurred_at: event.occurred_at,
                    body: EventBody::OrderFlagged {
                        order_id: placed.order_id.clone(),
                        reasons: signals,
                    },
                });
            }
        }
        let outbox = follow_ups
            .iter()
            .map(|f| {
                Ok(OutboxMessage {
                    queue: queues::ORDER.to_owned(),
                    message: event_message(source, f)?,
                })
            })
            .collect::<Result<_, AppError>>()?;
        let tx = Transaction {
            puts,
            deletes: vec![],
            audit: out.audit,
            applied: Some(idem.to_owned()),
            outbox,
        };
        Ok((tx, short))
    }
}
