//! The update-stock step: ledger events through the persistence primitive.
//! Read what the events touch, decide each in turn (pure, in tally-core),
//! commit state + audit + idempotency markers + follow-ups together; on a
//! version conflict, read again and decide again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
use tokio::task::JoinSet;

use crate::pipeline::{Outcome, event_message, idempotency_key};
use crate::{AppError, Tally};

/// Conflicts come from concurrent writers on a hot SKU; each retry reads
/// fresh state, so a handful always suffices unless something is wrong.
const MAX_ATTEMPTS: u32 = 50;
/// Events decided together and committed as one transaction at most
/// (`Tally::with_ledger_batch` lowers it).
pub const MAX_BATCH: usize = 32;
/// DynamoDB's limit on items in one transaction; kept on both backends so
/// a batch behaves the same everywhere.
const MAX_TRANSACTION_ITEMS: usize = 100;

impl Tally {
    /// Applies ledger events in independent units (events that share no
    /// order and no SKU) side by side, each unit in the events' order and
    /// in as few commits as it can; one result per event. A unit that fails
    /// fails all its events (retried, what landed is then a duplicate).
    pub async fn apply_in_units(
        &self,
        items: &[(SourceName, Event)],
    ) -> Vec<Result<Outcome, AppError>> {
        let events: Vec<&Event> = items.iter().map(|(_, e)| e).collect();
        let mut results: Vec<Result<Outcome, AppError>> = items
            .iter()
            .map(|_| Err(AppError::Internal("not applied".into())))
            .collect();
        let mut tasks = JoinSet::new();
        let mut unit_of = HashMap::new();
        for unit in independent_units(&events) {
            let tally = self.clone();
            let owned: Vec<(SourceName, Event)> = unit.iter().map(|&i| items[i].clone()).collect();
            let task = tasks.spawn(async move {
                let refs: Vec<(&SourceName, &Event)> = owned.iter().map(|(s, e)| (s, e)).collect();
                tally.apply_batch_to_ledger(&refs).await
            });
            unit_of.insert(task.id(), unit);
        }
        while let Some(done) = tasks.join_next_with_id().await {
            let (id, applied) = match done {
                Ok((id, applied)) => (id, applied),
                Err(e) => (
                    e.id(),
                    Err(AppError::Internal(format!("a ledger unit panicked: {e}"))),
                ),
            };
            let unit = unit_of.remove(&id).unwrap_or_default();
            match applied {
                Ok(outcomes) => {
                    for (i, outcome) in unit.into_iter().zip(outcomes) {
                        results[i] = Ok(outcome);
                    }
                }
                Err(e) => {
                    for i in unit {
                        results[i] = Err(e.clone());
                    }
                }
            }
        }
        results
    }

    pub async fn apply_to_ledger(
        &self,
        source: &SourceName,
        event: &Event,
    ) -> Result<Outcome, AppError> {
        let mut out = self.apply_batch_to_ledger(&[(source, event)]).await?;
        Ok(out.pop().unwrap_or(Outcome::Duplicate))
    }

    /// Applies ledger events in their order with as few commits as it can:
    /// up to `ledger_batch` events decided one after another on the same
    /// loaded records and committed together (one version check per
    /// record, every event's audit and marker). Many reservations on a hot
    /// SKU become one conditional write instead of a conflict storm. A batch
    /// whose commit would exceed the store's item limit is split.
    pub async fn apply_batch_to_ledger(
        &self,
        items: &[(&SourceName, &Event)],
    ) -> Result<Vec<Outcome>, AppError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let size = self.ledger_batch.max(1);
        let mut todo: VecDeque<(usize, usize)> = (0..items.len())
            .step_by(size)
            .map(|lo| (lo, (lo + size).min(items.len())))
            .collect();
        while let Some((lo, hi)) = todo.pop_front() {
            if !self
                .commit_batch(&items[lo..hi], &mut outcomes[lo..hi])
                .await?
            {
                let mid = lo + (hi - lo) / 2;
                todo.push_front((mid, hi));
                todo.push_front((lo, mid));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Duplicate))
            .collect())
    }

    /// Decides and commits `items` as one transaction, retrying from a
    /// fresh read on conflict; `false` if it is too large for one commit
    /// (more than one event, over the item limit) and must be split.
    async fn commit_batch(
        &self,
        items: &[(&SourceName, &Event)],
        outcomes: &mut [Option<Outcome>],
    ) -> Result<bool, AppError> {
        let keys: Vec<String> = items
            .iter()
            .map(|(source, event)| idempotency_key(source, event))
            .collect();
        // The same event twice in one batch: the first one counts.
        let mut seen = BTreeSet::new();
        for (i, key) in keys.iter().enumerate() {
            if !seen.insert(key) && outcomes[i].is_none() {
                outcomes[i] = Some(Outcome::Duplicate);
                self.metrics.inc("tally_events_duplicate_total", &[]);
            }
        }
        for attempt in 0..MAX_ATTEMPTS {
            // The markers catch a duplicate at commit; a look first only
            // pays off once a commit has failed.
            for (i, key) in keys.iter().enumerate() {
                if attempt > 0 && outcomes[i].is_none() && self.store.was_applied(key).await? {
                    outcomes[i] = Some(Outcome::Duplicate);
                    self.metrics.inc("tally_events_duplicate_total", &[]);
                }
            }
            let live: Vec<usize> = (0..items.len())
                .filter(|i| outcomes[*i].is_none())
                .collect();
            if live.is_empty() {
                return Ok(true);
            }
            let batch: Vec<(&SourceName, &Event, &str)> = live
                .iter()
                .map(|&i| (items[i].0, items[i].1, keys[i].as_str()))
                .collect();
            let (tx, short) = self.decide(&batch).await?;
            if live.len() > 1 && tx.items() > MAX_TRANSACTION_ITEMS {
                return Ok(false);
            }
            match self.store.commit(tx).await {
                Ok(()) => {
                    for (n, &i) in live.iter().enumerate() {
                        let event = items[i].1;
                        self.metrics.inc(
                            "tally_events_applied_total",
                            &[("type", event.body.type_name())],
                        );
                        if short[n] {
                            self.metrics.inc("tally_oversells_prevented_total", &[]);
                        }
                        outcomes[i] = Some(Outcome::Applied);
                    }
                    return Ok(true);
                }
                Err(tally_core::Error::AlreadyApplied(key)) => {
                    // One of them raced in elsewhere; the rest go again.
                    match keys.iter().position(|k| *k == key) {
                        Some(i) => outcomes[i] = Some(Outcome::Duplicate),
                        None => return Err(AppError::Internal(format!("unexpected marker {key}"))),
                    }
                    self.metrics.inc("tally_events_duplicate_total", &[]);
                }
                Err(tally_core::Error::Conflict(key)) => {
                    tracing::debug!(%key, attempt, "conflict, retrying from a fresh read");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "{}: still conflicting after {MAX_ATTEMPTS} attempts",
            keys.join(", ")
        )))
    }

    /// Loads what the events touch, lets the ledger decide each in turn on
    /// the state the one before left, and turns it all into one
    /// transaction; also says, per event, whether its order came out short
    /// (an oversell prevented).
    async fn decide(
        &self,
        batch: &[(&SourceName, &Event, &str)],
    ) -> Result<(Transaction, Vec<bool>), AppError> {
        let mut records = Loaded::default();
        let order_keys: Vec<Key> = batch
            .iter()
            .filter_map(|(_, e, _)| e.body.order_id().map(Key::order))
            .collect();
        records.load(self, &order_keys).await?;
        let mut puts_at: BTreeSet<Key> = BTreeSet::new();
        let mut tx = Transaction::default();
        let mut shorts = Vec::with_capacity(batch.len());
        for (source, event, idem) in batch {
            let order_key = event.body.order_id().map(Key::order);
            let order = order_key
                .as_ref()
                .and_then(|k| records.current(k))
                .and_then(|e| e.as_order().cloned());
            let skus = ledger::skus_needed(&event.body, order.as_ref());
            let stock_keys: Vec<Key> = skus.iter().map(Key::stock).collect();
            records.load(self, &stock_keys).await?;
            let snapshot = Snapshot {
                stocks: stock_keys
                    .iter()
                    .filter_map(|k| records.current(k))
                    .filter_map(|e| e.as_stock().cloned())
                    .map(|s| (s.sku.clone(), s))
                    .collect(),
                order,
            };
            let cause = Cause::system(*idem, self.now());
            let out = ledger::apply(&snapshot, event, &cause);
            for s in out.stocks {
                let key = Key::stock(&s.sku);
                records.set(key.clone(), Entity::Stock(s));
                puts_at.insert(key);
            }
            let status = out.order.as_ref().map(|o| o.status);
            let reserved_now = status == Some(OrderStatus::Reserved);
            shorts.push(
                matches!(event.body, EventBody::OrderPlaced(_))
                    && status == Some(OrderStatus::Short),
            );
            if let (Some(o), Some(key)) = (out.order, order_key) {
                records.set(key.clone(), Entity::Order(o));
                puts_at.insert(key);
            }
            let mut follow_ups = out.follow_ups;
            if let EventBody::OrderPlaced(placed) = &event.body
                && reserved_now
            {
                let price_keys: Vec<Key> =
                    placed.lines.iter().map(|l| Key::price(&l.sku)).collect();
                records.load(self, &price_keys).await?;
                let now = self.now();
                let sales: BTreeMap<Sku, Decimal> = price_keys
                    .iter()
                    .filter_map(|k| records.current(k))
                    .filter_map(|e| e.as_price())
                    .map(|p| (p.sku.clone(), p.daily_sales(now)))
                    .collect();
                let signals = risk_signals(placed, &sales, &self.orders);
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
            for f in &follow_ups {
                tx.outbox.push(OutboxMessage {
                    queue: queues::ORDER.to_owned(),
                    message: event_message(source, f)?,
                });
            }
            tx.audit.extend(out.audit);
            tx.applied.push((*idem).to_owned());
        }
        // One put per record, of its final state, checked against the
        // version it was loaded at.
        tx.puts = puts_at
            .into_iter()
            .filter_map(|key| records.put(&key))
            .collect();
        Ok((tx, shorts))
    }
}

/// Groups ledger events into units that share no order id and no SKU, each
/// unit's indexes in their original order: units can be applied side by
/// side without racing for the same records (but for stock an order
/// record names, which the version checks settle).
pub fn independent_units(events: &[&Event]) -> Vec<Vec<usize>> {
    let mut unit_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut units: Vec<Vec<usize>> = vec![];
    for (i, event) in events.iter().enumerate() {
        let keys: Vec<String> = event
            .body
            .order_id()
            .map(|o| format!("order:{o}"))
            .into_iter()
            .chain(event.body.skus().into_iter().map(|s| format!("sku:{s}")))
            .collect();
        let mut joined: Vec<usize> = keys
            .iter()
            .filter_map(|k| unit_of.get(k).copied())
            .collect();
        joined.sort_unstable();
        joined.dedup();
        let into = match joined.first() {
            Some(&u) => u,
            None => {
                units.push(vec![]);
                units.len() - 1
            }
        };
        // Merge every other unit this event links into the first one.
        for &other in joined.iter().skip(1) {
            let moved = std::mem::take(&mut units[other]);
            units[into].extend(moved);
            for u in unit_of.values_mut() {
                if *u == other {
                    *u = into;
                }
            }
        }
        units[into].push(i);
        for k in keys {
            unit_of.insert(k, into);
        }
    }
    units
        .into_iter()
        .filter(|u| !u.is_empty())
        .map(|mut u| {
            u.sort_unstable();
            u
        })
        .collect()
}

/// The records a batch works on: as loaded (for the version checks) and as
/// the batch has left them so far.
#[derive(Default)]
struct Loaded {
    loaded: BTreeMap<Key, Option<Versioned<Entity>>>,
    now: BTreeMap<Key, Entity>,
}

impl Loaded {
    /// Reads whichever of `keys` it has not read yet.
    async fn load(&mut self, tally: &Tally, keys: &[Key]) -> Result<(), AppError> {
        let mut missing: Vec<Key> = keys
            .iter()
            .filter(|k| !self.loaded.contains_key(k))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let got = tally.store.get(&missing).await?;
        for (key, v) in missing.into_iter().zip(got) {
            if let Some(v) = &v {
                self.now.insert(key.clone(), v.value.clone());
            }
            self.loaded.insert(key, v);
        }
        Ok(())
    }

    fn current(&self, key: &Key) -> Option<&Entity> {
        self.now.get(key)
    }

    fn set(&mut self, key: Key, value: Entity) {
        self.now.insert(key, value);
    }

    fn put(&self, key: &Key) -> Option<Put> {
        Some(Put {
            entity: self.now.get(key)?.clone(),
            expect: Expect::from_loaded(self.loaded.get(key).and_then(Option::as_ref)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pending(v: Value) -> Event {
        tally_core::event::parse_event(&v, chrono::Utc::now()).unwrap()
    }

    fn order(id: &str, order: &str, skus: &[&str]) -> Event {
        let lines: Vec<Value> = skus
            .iter()
            .map(|s| json!({"sku": s, "qty": 1, "unit_price": "1.00"}))
            .collect();
        pending(
            json!({"id": id, "type": "order.placed", "occurred_at": "2026-12-03T10:00:00Z",
                       "data": {"order_id": order, "channel": "web", "currency": "EUR", "lines": lines}}),
        )
    }

    fn cancel(id: &str, order: &str) -> Event {
        pending(
            json!({"id": id, "type": "order.cancelled", "occurred_at": "2026-12-03T10:00:00Z",
                       "data": {"order_id": order}}),
        )
    }

    #[test]
    fn events_sharing_an_order_or_a_sku_form_one_unit_in_their_order() {
        let events = [
            order("e0", "1", &["A"]),
            order("e1", "2", &["B"]),
            order("e2", "3", &["C"]),
            order("e3", "4", &["A"]),
            // Links B's unit and C's into one.
            order("e4", "5", &["C", "B"]),
            cancel("e5", "1"),
            order("e6", "6", &["C"]),
            cancel("e7", "9"),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let mut units = independent_units(&refs);
        units.sort();
        assert_eq!(units, vec![vec![0, 3, 5], vec![1, 2, 4, 6], vec![7]]);
    }
}
