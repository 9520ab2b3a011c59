//! The reprice step: when stock, a competitor or a cost moves, decide the
//! price inside the product's guardrails (tally-core's `pricing::decide`)
//! and persist the decision, applied or not, with the persistence
//! primitive. An applied change is audited with its inputs and sent to
//! every channel; a move too large to apply alone becomes a pending action.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_core::action::{Action, ActionKind, ActionStatus};
use tally_core::audit::{AuditRecord, Cause};
use tally_core::catalog::Product;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::event::{Event, EventBody};
use tally_core::ports::{Change, Expect, Message, OutboxMessage, Put, Transaction, queues};
use tally_core::pricing::{
    CompetitorPrice, Decision, Inputs, Outcome, Policy, PriceRecord, decide,
};
use tally_core::push::Outbound;
use tally_core::{Channel, Reasons, Sku, SourceName};

use crate::pipeline::idempotency_key;
use crate::{AppError, Tally};

/// What made the price worth a fresh look.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The ledger changed; `units_sold` newly reserved.
    StockChanged {
        units_sold: u32,
    },
    Competitor {
        name: String,
        price: Decimal,
        at: DateTime<Utc>,
    },
    CostChanged {
        unit_cost: Decimal,
    },
}

impl Trigger {
    /// The trigger a pricing signal carries, with the SKU it concerns.
    pub fn of_event(event: &Event) -> Option<(Sku, Trigger)> {
        match &event.body {
            EventBody::PriceCompetitorObserved {
                sku,
                competitor,
                price,
                ..
            } => Some((
                sku.clone(),
                Trigger::Competitor {
                    name: competitor.clone(),
                    price: *price,
                    at: event.occurred_at,
                },
            )),
            EventBody::ProductCostChanged { sku, unit_cost, .. } => Some((
                sku.clone(),
                Trigger::CostChanged {
                    unit_cost: *unit_cost,
                },
            )),
            _ => None,
        }
    }
}

/// What a stock change did to a price: the SKU, the units newly reserved,
/// and the decision (if there was anything to price).
pub struct StockRepriced {
    pub sku: Sku,
    pub units_sold: u32,
    pub decision: Option<Decision>,
}

impl Tally {
    /// Reprices after one committed change, if it is a stock record's
    /// (newly reserved units count as sales). Other records: `None`.
    pub async fn reprice_on_change(
        &self,
        change: &Change,
    ) -> Result<Option<StockRepriced>, AppError> {
        let Some(Entity::Stock(new)) = &change.new else {
            return Ok(None);
        };
        let before = match &change.old {
            Some(Entity::Stock(old)) => old.reserved(),
            _ => 0,
        };
        let units_sold = new.reserved().saturating_sub(before);
        let decision = self
            .reprice(&new.sku, &Trigger::StockChanged { units_sold }, None)
            .await?;
        Ok(Some(StockRepriced {
            sku: new.sku.clone(),
            units_sold,
            decision,
        }))
    }

    /// A pricing signal from the signal queue: applied once per source and
    /// event id.
    pub async fn reprice_on_signal(
        &self,
        source: &SourceName,
        event: &Event,
    ) -> Result<Option<Decision>, AppError> {
        let Some((sku, trigger)) = Trigger::of_event(event) else {
            return Ok(None);
        };
        self.reprice(&sku, &trigger, Some(&idempotency_key(source, event)))
            .await
    }

    /// Decides `sku`'s price now. `None` when there is nothing to price (no
    /// product or no price yet) or the signal was applied before.
    pub async fn reprice(
        &self,
        sku: &Sku,
        trigger: &Trigger,
        idem: Option<&str>,
    ) -> Result<Option<Decision>, AppError> {
        for attempt in 0..20u64 {
            if let Some(k) = idem
                && self.store.was_applied(k).await?
            {
                return Ok(None);
            }
            let keys = [Key::product(sku), Key::stock(sku), Key::price(sku)];
            let mut got = self.store.get(&keys).await?.into_iter();
            let (product_v, stock_v, price_v) = (
                got.next().flatten(),
                got.next().flatten(),
                got.next().flatten(),
            );
            let Some(mut product) = product_v
                .as_ref()
                .and_then(|v| v.value.as_product().cloned())
            else {
                return Ok(None);
            };
            let now = self.now();
            let mut product_changed = false;
            if let Trigger::CostChanged { unit_cost } = trigger
                && product.unit_cost != Some(*unit_cost)
            {
                product.unit_cost = Some(*unit_cost);
                product_changed = true;
            }
            let existing = price_v.as_ref().and_then(|v| v.value.as_price().cloned());
            let Some(mut record) = existing.or_else(|| {
                product
                    .price
                    .map(|p| PriceRecord::new(sku.clone(), product.currency, p, now))
            }) else {
                return Ok(None);
            };
            match trigger {
                Trigger::Competitor { name, price, at } => {
                    record.competitors.insert(
                        name.clone(),
                        CompetitorPrice {
                            price: *price,
                            at: *at,
                        },
                    );
                }
                Trigger::StockChanged { units_sold } if *units_sold > 0 => {
                    record.record_sale(*units_sold, now)
                }
                _ => {}
            }
            let stock = stock_v.as_ref().and_then(|v| v.value.as_stock());
            let inputs = Inputs {
                unit_cost: product.unit_cost,
                current: record.price,
                available: stock.map_or(0, |s| s.available()),
                daily_sales: record.daily_sales(now),
                stock_event_at: stock.and_then(|s| s.last_stock_event_at),
                competitors: record.competitors.clone(),
                last_changed_at: record.last_changed_at,
                now,
            };
            let decision = match Policy::parse(&product.policy, product.unit_cost) {
                Ok(policy) => decide(&policy, &inputs),
                // A cost change can make a stored policy impossible (floor
                // above ceiling): hold, and say so.
                Err(reasons) => Decision {
                    at: now,
                    outcome: Outcome::Held,
                    from: record.price,
                    to: record.price,
                    reasons: vec![format!("invalid_policy: {reasons}")],
                    inputs: json!({}),
                },
            };
            let cause = Cause::system(
                idem.map_or_else(
                    || format!("reprice:{sku}:{}", uuid::Uuid::now_v7()),
                    str::to_owned,
                ),
                now,
            );
            let mut tx = Transaction {
                applied: idem.map(str::to_owned).into_iter().collect(),
                ..Default::default()
            };
            let already_waiting = match &record.pending_action {
                Some(id) => self
                    .store
                    .get(&[Key::action(id)])
                    .await?
                    .pop()
                    .flatten()
                    .and_then(|v| v.value.into_action())
                    .is_some_and(|a| a.status_at(now) == ActionStatus::Pending),
                None => false,
            };
            match decision.outcome {
                Outcome::Changed => {
                    let audit = price_change_audit(&cause, 0, sku, &decision, "price.changed");
                    self.set_price(&mut record, &mut product, decision.to, &audit, now, &mut tx)
                        .await?;
                    tx.audit.push(audit);
                    product_changed = true;
                }
                Outcome::PendingApproval if !already_waiting => {
                    let action = price_action(sku, &record, &decision, &cause);
                    tx.audit.push(cause.record(
                        0,
                        format!("action:{}", action.id),
                        "action.proposed",
                        Value::Null,
                        json!({"kind": "price_change", "proposal": action.proposal}),
                        json!({"reasons": decision.reasons, "inputs": decision.inputs}),
                    ));
                    record.pending_action = Some(action.id.clone());
                    tx.puts.push(Put {
                        expect: Expect::Absent,
                        entity: Entity::Action(action),
                    });
                }
                _ => {}
            }
            record.last_decision = Some(decision.clone());
            record.updated_at = now;
            tx.puts.push(Put {
                expect: Expect::from_loaded(price_v.as_ref()),
                entity: Entity::Price(record),
            });
            if product_changed {
                product.updated_at = now;
                tx.puts.push(Put {
                    expect: Expect::from_loaded(product_v.as_ref()),
                    entity: Entity::Product(product),
                });
            }
            match self.store.commit(tx).await {
                Ok(()) => {
                    let outcome = serde_json::to_value(decision.outcome).unwrap_or_default();
                    for reason in &decision.reasons {
                        let reason = reason.split(':').next().unwrap_or_default();
                        self.metrics.inc(
                            "tally_price_decisions_total",
                            &[
                                ("outcome", outcome.as_str().unwrap_or("")),
                                ("reason", reason),
                            ],
                        );
                    }
                    return Ok(Some(decision));
                }
                Err(tally_core::Error::AlreadyApplied(_)) => return Ok(None),
                Err(tally_core::Error::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(attempt)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "price of {sku} kept changing; try again"
        )))
    }

    /// Moves the price and tells every channel, inside `tx`.
    async fn set_price(
        &self,
        record: &mut PriceRecord,
        product: &mut Product,
        to: Decimal,
        audit: &AuditRecord,
        now: DateTime<Utc>,
        tx: &mut Transaction,
    ) -> Result<(), AppError> {
        record.price = to;
        record.last_changed_at = Some(now);
        record.last_change_audit = Some(audit.id.clone());
        product.price = Some(to);
        for channel in self.push_channels().await?.into_keys() {
            let m = Outbound::PriceChanged {
                channel: channel.clone(),
                sku: record.sku.clone(),
                changed_at: now,
                cause: audit.id.clone(),
            };
            tx.outbox.push(OutboxMessage {
                queue: queues::OUTBOUND.to_owned(),
                message: Message {
                    body: serde_json::to_string(&m)
                        .map_err(|e| AppError::Internal(e.to_string()))?,
                    group: Some(channel.to_string()),
                    dedup_id: Some(format!("{}:{channel}", audit.id)),
                },
            });
        }
        Ok(())
    }

    /// Applying an approved price move, inside `tx`: the proposed price,
    /// kept within today's floor and ceiling.
    pub(crate) async fn price_action_tx(
        &self,
        action: &Action,
        cause: &Cause,
        tx: &mut Transaction,
    ) -> Result<(), AppError> {
        let sku = action
            .sku
            .clone()
            .ok_or_else(|| AppError::Internal("price action without a SKU".into()))?;
        let to: Decimal = serde_json::from_value(action.proposal["to"].clone())
            .map_err(|e| AppError::Internal(format!("price action {}: {e}", action.id)))?;
        let (product_v, price_v, mut product, mut record) = self.priced(&sku).await?;
        let policy = Policy::parse(&product.policy, product.unit_cost).unwrap_or_default();
        let mut reasons = vec!["approved".to_owned()];
        let mut target = to.max(policy.floor(product.unit_cost));
        if target != to {
            reasons.push("floor".into());
        }
        if let Some(c) = policy.ceiling()
            && target > c
        {
            target = c;
            reasons.push("ceiling".into());
        }
        let decision = Decision {
            at: cause.at,
            outcome: Outcome::Changed,
            from: record.price,
            to: target,
            reasons,
            inputs: json!({"action": action.id, "proposal": action.proposal}),
        };
        let audit = price_change_audit(cause, tx.audit.len(), &sku, &decision, "price.changed");
        self.set_price(&mut record, &mut product, target, &audit, cause.at, tx)
            .await?;
        record.last_decision = Some(decision);
        record.pending_action = None;
        record.updated_at = cause.at;
        product.updated_at = cause.at;
        tx.audit.push(audit);
        tx.puts.push(Put {
            expect: Expect::from_loaded(price_v.as_ref()),
            entity: Entity::Price(record),
        });
        tx.puts.push(Put {
            expect: Expect::from_loaded(product_v.as_ref()),
            entity: Entity::Product(product),
        });
        Ok(())
    }

    /// A priced product: its stored versions and records.
    async fn priced(
        &self,
        sku: &Sku,
    ) -> Result<
        (
            Option<Versioned<Entity>>,
            Option<Versioned<Entity>>,
            Product,
            PriceRecord,
        ),
        AppError,
    > {
        let mut got = self
            .store
            .get(&[Key::product(sku), Key::price(sku)])
            .await?
            .into_iter();
        let (product_v, price_v) = (got.next().flatten(), got.next().flatten());
        let product = product_v
            .as_ref()
            .and_then(|v| v.value.as_product().cloned());
        let record = price_v.as_ref().and_then(|v| v.value.as_price().cloned());
        match (product, record) {
            (Some(p), Some(r)) => Ok((product_v, price_v, p, r)),
            _ => Err(AppError::NotFound(format!("price of {sku}"))),
        }
    }

    /// Every channel of a configured source.
    pub async fn channels(&self) -> Result<BTreeSet<Channel>, AppError> {
        Ok(self
            .store
            .list(Kind::Source)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_source())
            .map(|s| s.channel)
            .collect())
    }

    /// `GET /v1/prices/{sku}`.
    pub async fn price_view(&self, sku: &str) -> Result<Value, AppError> {
        let sku =
            Sku::parse(sku).map_err(|e| AppError::BadRequest(format!("sku in the path: {e}")))?;
        let mut got = self
            .store
            .get(&[Key::product(&sku), Key::price(&sku)])
            .await?
            .into_iter();
        let (product, record) = (got.next().flatten(), got.next().flatten());
        let Some(product) = product.and_then(|v| v.value.into_product()) else {
            return Err(AppError::NotFound(format!("product {sku:?}")));
        };
        let record = record.and_then(|v| v.value.into_price());
        Ok(price_json(&product, record.as_ref()))
    }

    /// `GET /v1/prices`: the price view of every product.
    pub async fn price_list(&self) -> Result<Value, AppError> {
        let records: std::collections::BTreeMap<Sku, PriceRecord> = self
            .store
            .list(Kind::Price)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_price())
            .map(|r| (r.sku.clone(), r))
            .collect();
        let items: Vec<Value> = self
            .store
            .list(Kind::Product)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_product())
            .map(|p| price_json(&p, records.get(&p.sku)))
            .collect();
        Ok(json!({"items": items}))
    }

    /// `POST /v1/audit/{id}/revert`: puts back the price a change replaced,
    /// as a person's action. Only the latest change of a price can be
    /// reverted; an older one was superseded (409).
    pub async fn revert(&self, audit_id: &str, body: &Value) -> Result<Value, AppError> {
        let (actor, note) = crate::quarantine::actor_and_note(body);
        let Some(change) = self.store.audit_record(audit_id).await? else {
            return Err(AppError::NotFound(format!("audit record {audit_id:?}")));
        };
        if !matches!(change.kind.as_str(), "price.changed" | "price.reverted") {
            return Err(AppError::Conflict(format!(
                "a {} cannot be reverted",
                change.kind
            )));
        }
        let sku = change
            .entity
            .strip_prefix("price:")
            .and_then(|s| Sku::parse(s).ok())
            .ok_or_else(|| AppError::Internal(format!("price audit on {}", change.entity)))?;
        let previous: Decimal =
            serde_json::from_value(change.before["price"].clone()).map_err(|e| {
                AppError::Internal(format!("audit {audit_id} has no previous price: {e}"))
            })?;
        for _ in 0..20 {
            let (product_v, price_v, mut product, mut record) = self.priced(&sku).await?;
            if record.last_change_audit.as_deref() != Some(audit_id) {
                return Err(AppError::Conflict(format!(
                    "{audit_id} was superseded by a later change of {sku}; revert that one first"
                )));
            }
            let now = self.now();
            let cause = Cause {
                key: format!("revert:{audit_id}:{}", uuid::Uuid::now_v7()),
                actor: actor.clone(),
                at: now,
            };
            let decision = Decision {
                at: now,
                outcome: Outcome::Changed,
                from: record.price,
                to: previous,
                reasons: vec!["revert".into()],
                inputs: json!({"reverts": audit_id, "note": note}),
            };
            let audit = price_change_audit(&cause, 0, &sku, &decision, "price.reverted");
            let mut tx = Transaction::default();
            self.set_price(&mut record, &mut product, previous, &audit, now, &mut tx)
                .await?;
            record.last_decision = Some(decision);
            record.updated_at = now;
            product.updated_at = now;
            tx.puts.push(Put {
                expect: Expect::from_loaded(price_v.as_ref()),
                entity: Entity::Price(record),
            });
            tx.puts.push(Put {
                expect: Expect::from_loaded(product_v.as_ref()),
                entity: Entity::Product(product),
            });
            let id = audit.id.clone();
            tx.audit.push(audit);
            match self.store.commit(tx).await {
                Ok(()) => return Ok(json!({"reverted": audit_id, "price": previous, "audit": id})),
                Err(tally_core::Error::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "price of {sku} kept changing; try again"
        )))
    }

    /// `GET /v1/actions?status=...`, newest first.
    pub async fn actions(&self, status: Option<&str>) -> Result<Value, AppError> {
        let wanted = match status {
            None => None,
            Some(s) => Some(ActionStatus::parse(s).ok_or_else(|| {
                let mut r = Reasons::new();
                r.push(
                    "status",
                    "one of pending, approved, rejected, executed, expired",
                );
                AppError::Invalid(r)
            })?),
        };
        let mut actions: Vec<Action> = self
            .store
            .list(Kind::Action)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_action())
            .filter(|a| wanted.is_none_or(|w| a.status_at(self.now()) == w))
            .collect();
        actions.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        let now = self.now();
        Ok(
            json!({"actions": actions.iter().map(|a| crate::orders::view(a, now)).collect::<Vec<_>>()}),
        )
    }
}

fn price_change_audit(
    cause: &Cause,
    index: usize,
    sku: &Sku,
    d: &Decision,
    kind: &str,
) -> AuditRecord {
    cause.record(
        index,
        format!("price:{sku}"),
        kind,
        json!({"price": d.from}),
        json!({"price": d.to}),
        json!({"reasons": d.reasons, "inputs": d.inputs}),
    )
}

fn price_action(sku: &Sku, record: &PriceRecord, d: &Decision, cause: &Cause) -> Action {
    Action {
        id: Action::id_for(&format!("{}:{sku}", cause.key)),
        kind: ActionKind::PriceChange,
        status: ActionStatus::Pending,
        sku: Some(sku.clone()),
        order_id: None,
        reversible: true,
        requires_approval: true,
        rationale: format!(
            "Move {sku} from {} to {} {} ({}): larger than the step this product may take without approval.",
            d.from,
            d.to,
            record.currency,
            d.reasons.join(", ")
        ),
        evidence: d.inputs.clone(),
        proposal: json!({"from": d.from, "to": d.to, "currency": record.currency}),
        created_at: d.at,
        expires_at: None,
        decided_at: None,
        decided_by: None,
        note: None,
    }
}

/// The price view of one product: its price, guardrails and last decision.
fn price_json(product: &Product, record: Option<&PriceRecord>) -> Value {
    let policy = Policy::parse(&product.policy, product.unit_cost).unwrap_or_default();
    json!({
        "sku": product.sku,
        "currency": product.currency,
        "price": record.map(|r| r.price).or(product.price),
        "floor": policy.floor(product.unit_cost),
        "ceiling": policy.ceiling(),
        "updated_at": record.map_or(product.updated_at, |r| r.updated_at),
        "last_decision": record.and_then(|r| r.last_decision.clone()),
        "pending_action": record.and_then(|r| r.pending_action.clone()),
    })
}
