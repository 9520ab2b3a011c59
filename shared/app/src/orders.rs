//! Order handling: recommend (from the order queue), then let a person
//! approve or reject. Approving executes: the effect on Tally's own state
//! (a cancel releases the order's reservation, a reroute reserves it) and
//! one outbound command for the channel land in the same commit as the
//! status change, so however often approval is clicked, it happens once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tally_core::action::{Action, ActionKind, ActionStatus};
use tally_core::audit::Cause;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::event::{Event, EventBody};
use tally_core::ledger::{self, Snapshot, StockRecord};
use tally_core::orders::{action_for, escalate_unpaid, recommend};
use tally_core::ports::{Expect, Message, OutboxMessage, Put, Transaction, queues};
use tally_core::push::{ChannelCommand, CommandKind, Outbound};
use tally_core::{OrderId, Sku, SourceName};

use crate::pipeline::idempotency_key;
use crate::quarantine::actor_and_note;
use crate::{AppError, Tally};

impl Tally {
    /// The recommend-order-action step: one event from the order queue
    /// becomes (at most) one pending action, once.
    pub async fn recommend_for(
        &self,
        source: &SourceName,
        event: &Event,
    ) -> Result<Option<String>, AppError> {
        let idem = format!("recommend:{}", idempotency_key(source, event));
        if self.store.was_applied(&idem).await? {
            return Ok(None);
        }
        let (order, _) = self.load_order(event.body.order_id()).await?;
        let skus: Vec<Sku> = event.body.skus().into_iter().cloned().collect();
        let stocks = self.load_stocks(&skus).await?;
        let plain = records(&stocks);
        let Some(rec) = recommend(event, order.as_ref(), &plain) else {
            // Nothing to do, but remember that it was looked at.
            let tx = Transaction {
                applied: vec![idem],
                ..Default::default()
            };
            return match self.store.commit(tx).await {
                Ok(()) | Err(tally_core::Error::AlreadyApplied(_)) => Ok(None),
                Err(e) => Err(e.into()),
            };
        };
        let now = self.now();
        let action = action_for(rec, event, &idem, &self.orders, now);
        let id = action.id.clone();
        let cause = Cause::system(idem.clone(), now);
        let tx = Transaction {
            audit: vec![cause.record(
                0,
                format!("action:{id}"),
                "action.proposed",
                Value::Null,
                json!({"kind": action.kind, "order_id": action.order_id, "rationale": action.rationale}),
                json!({"event": event.id, "evidence": action.evidence}),
            )],
            puts: vec![Put { expect: Expect::Absent, entity: Entity::Action(action.clone()) }],
            applied: vec![idem],
            ..Default::default()
        };
        match self.store.commit(tx).await {
            Ok(()) => self.metrics.inc(
                "tally_actions_total",
                &[("kind", &action.kind.as_str()), ("status", "pending")],
            ),
            Err(tally_core::Error::AlreadyApplied(_) | tally_core::Error::Conflict(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        if !action.requires_approval {
            self.decide_action(&id, true, &json!({"actor": "policy"}))
                .await?;
        }
        Ok(Some(id))
    }

    async fn load_order(
        &self,
        id: Option<&OrderId>,
    ) -> Result<
        (
            Option<tally_core::ledger::OrderRecord>,
            Option<Versioned<Entity>>,
        ),
        AppError,
    > {
        let Some(id) = id else {
            return Ok((None, None));
        };
        let v = self.store.get(&[Key::order(id)]).await?.pop().flatten();
        Ok((v.as_ref().and_then(|v| v.value.as_order().cloned()), v))
    }

    async fn load_stocks(
        &self,
        skus: &[Sku],
    ) -> Result<BTreeMap<Sku, Versioned<Entity>>, AppError> {
        let keys: Vec<Key> = skus.iter().map(Key::stock).collect();
        Ok(skus
            .iter()
            .cloned()
            .zip(self.store.get(&keys).await?)
            .filter_map(|(s, v)| v.map(|v| (s, v)))
            .collect())
    }

    /// `GET /v1/actions/{id}`.
    pub async fn action_view(&self, id: &str) -> Result<Value, AppError> {
        let (_, a) = self.action(id).await?;
        Ok(view(&a, self.now()))
    }

    async fn action(&self, id: &str) -> Result<(u64, Action), AppError> {
        self.store
            .get(&[Key::action(id)])
            .await?
            .pop()
            .flatten()
            .and_then(|v| v.value.into_action().map(|a| (v.version, a)))
            .ok_or_else(|| AppError::NotFound(format!("action {id:?}")))
    }

    /// `POST /v1/actions/{id}/approve|reject` with `{"actor", "note"}`.
    /// Deciding twice is 409, as is deciding an expired action.
    pub async fn decide_action(
        &self,
        id: &str,
        approve: bool,
        body: &Value,
    ) -> Result<Value, AppError> {
        let (actor, note) = actor_and_note(body);
        for attempt in 0..20u64 {
            let (version, mut action) = self.action(id).await?;
            let now = self.now();
            let status = action.status_at(now);
            if status == ActionStatus::Expired && action.status == ActionStatus::Pending {
                self.expire(version, action).await?;
                return Err(AppError::Conflict(format!(
                    "action {id} expired before it was decided"
                )));
            }
            if status != ActionStatus::Pending {
                return Err(AppError::Conflict(format!(
                    "action {id} is already {}",
                    serde_json::to_value(status).unwrap_or_default()
                )));
            }
            let cause = Cause {
                key: format!("decide:{id}:{}", uuid::Uuid::now_v7()),
                actor: actor.clone(),
                at: now,
            };
            let mut tx = if approve {
                self.execution(&action, &cause).await?
            } else {
                Transaction::default()
            };
            let before = json!({"status": action.status});
            action.status = if approve {
                ActionStatus::Executed
            } else {
                ActionStatus::Rejected
            };
            action.decided_at = Some(now);
            action.decided_by = Some(actor.clone());
            action.note = note.clone();
            let kind = if approve {
                "action.approved"
            } else {
                "action.rejected"
            };
            tx.audit.push(cause.record(
                tx.audit.len(),
                format!("action:{id}"),
                kind,
                before,
                json!({"status": action.status}),
                json!({"note": note, "kind": action.kind, "proposal": action.proposal}),
            ));
            tx.puts.push(Put {
                expect: Expect::Version(version),
                entity: Entity::Action(action.clone()),
            });
            match self.store.commit(tx).await {
                Ok(()) => {
                    let status = serde_json::to_value(action.status).unwrap_or_default();
                    self.metrics.inc(
                        "tally_actions_total",
                        &[
                            ("kind", &action.kind.as_str()),
                            ("status", status.as_str().unwrap_or("")),
                        ],
                    );
                    return Ok(view(&action, now));
                }
                Err(tally_core::Error::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(attempt)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "action {id} kept changing; try again"
        )))
    }

    /// What approving `action` does, as one transaction (without the
    /// action's own status change).
    async fn execution(&self, action: &Action, cause: &Cause) -> Result<Transaction, AppError> {
        let mut tx = Transaction::default();
        let (order, order_v) = self.load_order(action.order_id.as_ref()).await?;
        let channel = order.as_ref().and_then(|o| o.channel.clone());
        match action.kind {
            ActionKind::Cancel => {
                let skus: Vec<Sku> = order
                    .iter()
                    .flat_map(|o| o.reservations.iter().map(|a| a.sku.clone()))
                    .collect();
                let stocks = self.load_stocks(&skus).await?;
                let event = Event {
                    id: format!("action:{}", action.id),
                    occurred_at: cause.at,
                    body: EventBody::OrderCancelled {
                        order_id: action
                            .order_id
                            .clone()
                            .ok_or_else(|| AppError::Internal("cancel without order".into()))?,
                        reason: Some(format!("approved by {}", cause.actor)),
                    },
                };
                let snapshot = Snapshot {
                    stocks: records(&stocks),
                    order: order.clone(),
                };
                let out = ledger::apply(&snapshot, &event, cause);
                ledger_puts(&mut tx, out, &stocks, order_v.as_ref());
            }
            ActionKind::Reroute => {
                let skus: Vec<Sku> = order
                    .iter()
                    .flat_map(|o| o.lines.iter().map(|l| l.sku.clone()))
                    .collect();
                let stocks = self.load_stocks(&skus).await?;
                let snapshot = Snapshot {
                    stocks: records(&stocks),
                    order: order.clone(),
                };
                let out = ledger::reserve_short(&snapshot, cause).map_err(|_| {
                    AppError::Conflict(format!(
                        "order {:?} no longer fits anywhere",
                        action.order_id
                    ))
                })?;
                ledger_puts(&mut tx, out, &stocks, order_v.as_ref());
            }
            ActionKind::PriceChange => {
                self.price_action_tx(action, cause, &mut tx).await?;
                return Ok(tx);
            }
            _ => {}
        }
        // One command for the channel, deduplicated by the action. Reroutes
        // and backorders are Tally's own bookkeeping: nothing to send.
        if let (Some(command), Some(order_id), Some(channel)) = (
            CommandKind::for_action(action.kind),
            action.order_id.clone(),
            channel,
        ) {
            let m = Outbound::Command(ChannelCommand {
                command,
                action_id: action.id.clone(),
                idempotency_key: action.id.clone(),
                order_id,
                channel: channel.clone(),
                proposal: action.proposal.clone(),
                approved_by: cause.actor.clone(),
            });
            tx.outbox.push(OutboxMessage {
                queue: queues::OUTBOUND.to_owned(),
                message: Message {
                    body: serde_json::to_string(&m)
                        .map_err(|e| AppError::Internal(e.to_string()))?,
                    group: Some(channel.to_string()),
                    dedup_id: Some(action.id.clone()),
                },
            });
        }
        Ok(tx)
    }

    /// Marks an action expired (audited); nothing else changes.
    async fn expire(&self, version: u64, mut action: Action) -> Result<(), AppError> {
        let now = self.now();
        let cause = Cause::system(format!("expire:{}", action.id), now);
        action.status = ActionStatus::Expired;
        action.decided_at = Some(now);
        let tx = Transaction {
            audit: vec![cause.record(
                0,
                format!("action:{}", action.id),
                "action.expired",
                json!({"status": "pending"}),
                json!({"status": "expired"}),
                json!({"expires_at": action.expires_at}),
            )],
            puts: vec![Put {
                expect: Expect::Version(version),
                entity: Entity::Action(action),
            }],
            ..Default::default()
        };
        match self.store.commit(tx).await {
            Ok(()) | Err(tally_core::Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The periodic sweep: writes down every pending action past its time
    /// (reads already show them as expired), and turns holds for unpaid
    /// orders that outlived the grace period into cancel recommendations.
    pub async fn sweep_actions(&self) -> Result<usize, AppError> {
        let now = self.now();
        let mut n = 0;
        for v in self.store.list(Kind::Action).await? {
            let Some(a) = v.value.into_action() else {
                continue;
            };
            if let Some(cancel) = escalate_unpaid(&a, &self.orders, now) {
                let cause = Cause::system(format!("escalate:{}", a.id), now);
                let tx = Transaction {
                    audit: vec![cause.record(
                        0,
                        format!("action:{}", cancel.id),
                        "action.proposed",
                        Value::Null,
                        json!({"kind": cancel.kind, "order_id": cancel.order_id, "rationale": cancel.rationale}),
                        json!({"escalates": a.id}),
                    )],
                    puts: vec![Put { expect: Expect::Absent, entity: Entity::Action(cancel) }],
                    ..Default::default()
                };
                match self.store.commit(tx).await {
                    // Already escalated: the cancel's id derives from the hold.
                    Ok(()) => n += 1,
                    Err(tally_core::Error::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if a.status == ActionStatus::Pending && a.status_at(now) == ActionStatus::Expired {
                self.expire(v.version, a).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The stock records out of their stored versions.
fn records(stocks: &BTreeMap<Sku, Versioned<Entity>>) -> BTreeMap<Sku, StockRecord> {
    stocks
        .iter()
        .filter_map(|(k, v)| v.value.as_stock().map(|s| (k.clone(), s.clone())))
        .collect()
}

fn ledger_puts(
    tx: &mut Transaction,
    out: ledger::Outcome,
    stocks: &BTreeMap<Sku, Versioned<Entity>>,
    order_v: Option<&Versioned<Entity>>,
) {
    for s in out.stocks {
        tx.puts.push(Put {
            expect: Expect::from_loaded(stocks.get(&s.sku)),
            entity: Entity::Stock(s),
        });
    }
    if let Some(o) = out.order {
        tx.puts.push(Put {
            expect: Expect::from_loaded(order_v),
            entity: Entity::Order(o),
        });
    }
    tx.audit.extend(out.audit);
}

/// An action as the API shows it, with its status as of now.
pub fn view(a: &Action, now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["status"] = json!(a.status_at(now));
    v
}
