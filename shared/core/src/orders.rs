//! Order handling: what to recommend when an order cannot be served, its
//! payment fails, its address or a refund is asked for. Each rule gives a
//! rationale a person can read and the evidence it used. Irreversible
//! actions (cancel, refund, partial shipment) always wait for a person.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::action::{Action, ActionKind, ActionStatus};
use crate::event::{Event, EventBody};
use crate::ledger::{OrderRecord, OrderStatus, StockRecord, allocate};
use crate::types::Sku;

/// How order handling behaves; defaults suit a careful merchant.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPolicy {
    /// How long a pending action waits for a person before it expires.
    pub action_ttl: Duration,
    /// Execute reversible actions (hold, reroute, backorder, address
    /// change) without waiting for a person...
    pub auto_execute_reversible: bool,
    /// ...but only for orders worth at most this much (unknown totals
    /// count as above it).
    pub auto_execute_max_total: Option<Decimal>,
    /// A line of at least this many units is unusual for any SKU...
    pub large_order_qty: u32,
    /// ...and so is one of this many days of the SKU's recent sales.
    pub large_order_days_of_sales: Decimal,
    /// How long a hold for a failed payment waits before a cancel is
    /// recommended.
    pub payment_grace: Duration,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy {
            action_ttl: Duration::hours(72),
            auto_execute_reversible: false,
            auto_execute_max_total: None,
            large_order_qty: 50,
            large_order_days_of_sales: Decimal::from(10),
            payment_grace: Duration::hours(24),
        }
    }
}

/// What a rule proposes, before it becomes an `Action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub kind: ActionKind,
    pub rationale: String,
    pub evidence: Value,
    pub proposal: Value,
}

/// The rules. `order` is the ledger's record of the order (if any) and
/// `stocks` the current stock of the SKUs the event names.
pub fn recommend(
    event: &Event,
    order: Option<&OrderRecord>,
    stocks: &BTreeMap<Sku, StockRecord>,
) -> Option<Recommendation> {
    match &event.body {
        EventBody::OrderShort(short) => {
            // Still short when we look? Then rank what can be done.
            if order.is_some_and(|o| o.status != OrderStatus::Short) {
                return None;
            }
            let wanted: BTreeMap<&Sku, u32> =
                short.lines.iter().map(|l| (&l.sku, l.requested)).collect();
            let evidence = json!({"lines": short.lines, "available_now": stocks.iter()
                .map(|(s, r)| (s.to_string(), json!(r.available()))).collect::<serde_json::Map<_, _>>()});
            match allocate(&wanted, stocks) {
                Ok(allocations) => Some(Recommendation {
                    kind: ActionKind::Reroute,
                    rationale: format!(
                        "Order {} could not be reserved when placed; {} can serve it now.",
                        short.order_id,
                        allocations
                            .iter()
                            .map(|a| format!("{} × {} from {}", a.qty, a.sku, a.location))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    evidence,
                    proposal: json!({"allocations": allocations}),
                }),
                Err(still_short) => {
                    let some_available = still_short.iter().any(|l| l.available > 0);
                    let mut ranked = vec![];
                    if some_available {
                        ranked.push("partial_shipment");
                    }
                    ranked.push("backorder");
                    ranked.push("cancel");
                    let kind = if some_available {
                        ActionKind::PartialShipment
                    } else {
                        ActionKind::Backorder
                    };
                    Some(Recommendation {
                        kind,
                        rationale: format!(
                            "Order {} asks for more than any location holds ({}). Ranked: {}.",
                            short.order_id,
                            still_short
                                .iter()
                                .map(|l| format!(
                                    "{} wanted {}, {} available",
                                    l.sku, l.requested, l.available
                                ))
                                .collect::<Vec<_>>()
                                .join("; "),
                            ranked.join(", then ")
                        ),
                        evidence: json!({"short": still_short, "alternatives": ranked, "lines": short.lines}),
                        proposal: json!({"short_lines": still_short}),
                    })
                }
            }
        }
        EventBody::OrderFlagged { order_id, reasons } => Some(Recommendation {
            kind: ActionKind::Hold,
            rationale: format!("Hold order {order_id} for review: {}.", reasons.join("; ")),
            evidence: json!({"order": order.map(order_evidence), "signals": reasons}),
            proposal: json!({"order_id": order_id}),
        }),
        EventBody::OrderPaymentFailed { order_id } => Some(Recommendation {
            kind: ActionKind::Hold,
            rationale: format!(
                "Payment for order {order_id} failed: hold fulfilment until it is paid; cancel if it is not."
            ),
            evidence: json!({"order": order.map(order_evidence)}),
            proposal: json!({"order_id": order_id, "reason": "payment_failed"}),
        }),
        EventBody::OrderAddressChangeRequested { order_id, address } => {
            let shipped = order.is_some_and(|o| !o.fulfilled.is_empty());
            Some(if shipped {
                Recommendation {
                    kind: ActionKind::ContactCustomer,
                    rationale: format!(
                        "Order {order_id} has already shipped: contact the customer about the new address."
                    ),
                    evidence: json!({"order": order.map(order_evidence), "requested": address}),
                    proposal: json!({"order_id": order_id, "address": address}),
                }
            } else {
                Recommendation {
                    kind: ActionKind::ChangeAddress,
                    rationale: format!("Order {order_id} has not shipped: change its address."),
                    evidence: json!({"order": order.map(order_evidence), "requested": address}),
                    proposal: json!({"order_id": order_id, "address": address}),
                }
            })
        }
        EventBody::OrderRefundRequested {
            order_id,
            amount,
            reason,
        } => {
            let paid = order.and_then(|o| {
                o.total.or_else(|| {
                    Some(
                        o.lines
                            .iter()
                            .map(|l| l.unit_price * Decimal::from(l.qty.get()))
                            .sum(),
                    )
                })
            });
            let check = match paid {
                Some(p) if *amount > p => format!("{amount} is MORE than the {p} paid"),
                Some(p) => format!("{amount} of {p} paid"),
                None => format!("{amount}; what was paid is unknown"),
            };
            // Not shipped yet: cancel it (which releases its stock) rather
            // than refund goods that never left.
            let unshipped =
                order.is_some_and(|o| o.status == OrderStatus::Reserved && o.fulfilled.is_empty());
            if unshipped {
                return Some(Recommendation {
                    kind: ActionKind::Cancel,
                    rationale: format!(
                        "Order {order_id} has not shipped: cancel it and refund {check}. Reason given: {reason}."
                    ),
                    evidence: json!({"order": order.map(order_evidence), "paid": paid, "requested": amount,
                                     "exceeds_paid": paid.is_some_and(|p| *amount > p)}),
                    proposal: json!({"order_id": order_id, "refund": amount}),
                });
            }
            Some(Recommendation {
                kind: ActionKind::Refund,
                rationale: format!("Refund order {order_id}: {check}. Reason given: {reason}."),
                evidence: json!({"order": order.map(order_evidence), "paid": paid, "requested": amount,
                                 "exceeds_paid": paid.is_some_and(|p| *amount > p)}),
                proposal: json!({"order_id": order_id, "amount": amount}),
            })
        }
        _ => None,
    }
}

/// Risk signals of a placed order: lines far beyond what the SKU usually
/// sells (`daily_sales` per SKU, where known).
pub fn risk_signals(
    placed: &crate::event::OrderPlaced,
    daily_sales: &BTreeMap<Sku, Decimal>,
    policy: &OrderPolicy,
) -> Vec<String> {
    placed
        .lines
        .iter()
        .filter_map(|l| {
            let qty = l.qty.get();
            let usual = daily_sales.get(&l.sku).copied().unwrap_or_default()
                * policy.large_order_days_of_sales;
            if qty >= policy.large_order_qty {
                Some(format!(
                    "{qty} × {} is at least {} units",
                    l.sku, policy.large_order_qty
                ))
            } else if !usual.is_zero() && Decimal::from(qty) > usual {
                Some(format!(
                    "{qty} × {} is more than {} days of its recent sales ({})",
                    l.sku,
                    policy.large_order_days_of_sales,
                    usual.round_dp(1)
                ))
            } else {
                None
            }
        })
        .collect()
}

/// A hold for a failed payment that has waited out the grace period (and
/// was not rejected by a person, who would know it was paid) becomes a
/// recommendation to cancel. `None` for any other action, or too early.
pub fn escalate_unpaid(hold: &Action, policy: &OrderPolicy, now: DateTime<Utc>) -> Option<Action> {
    let unpaid_hold = hold.kind == ActionKind::Hold
        && hold.proposal["reason"] == "payment_failed"
        && matches!(
            hold.status_at(now),
            ActionStatus::Pending | ActionStatus::Approved | ActionStatus::Executed
        );
    if !unpaid_hold || now < hold.created_at + policy.payment_grace {
        return None;
    }
    let order_id = hold.order_id.clone()?;
    Some(Action {
        id: Action::id_for(&format!("escalate:{}", hold.id)),
        kind: ActionKind::Cancel,
        status: ActionStatus::Pending,
        sku: None,
        order_id: Some(order_id.clone()),
        reversible: false,
        requires_approval: true,
        rationale: format!(
            "Payment for order {order_id} failed {} h ago and the hold was never lifted: cancel it.",
            (now - hold.created_at).num_hours()
        ),
        evidence: json!({"hold": hold.id, "held_since": hold.created_at, "grace_s": policy.payment_grace.num_seconds()}),
        proposal: json!({"order_id": order_id, "reason": "payment_failed"}),
        created_at: now,
        expires_at: Some(now + policy.action_ttl),
        decided_at: None,
        decided_by: None,
        note: None,
    })
}

fn order_evidence(o: &OrderRecord) -> Value {
    json!({"status": o.status, "channel": o.channel, "total": o.total, "lines": o.lines,
           "reservations": o.reservations, "fulfilled": o.fulfilled})
}

/// The action a recommendation becomes; `cause` makes its id.
pub fn action_for(
    rec: Recommendation,
    event: &Event,
    cause: &str,
    policy: &OrderPolicy,
    now: DateTime<Utc>,
) -> Action {
    let reversible = rec.kind.reversible();
    let total: Option<Decimal> =
        serde_json::from_value(rec.evidence["order"]["total"].clone()).ok();
    let within_amount = match policy.auto_execute_max_total {
        None => true,
        Some(limit) => total.is_some_and(|t| t <= limit),
    };
    Action {
        id: Action::id_for(cause),
        kind: rec.kind,
        status: ActionStatus::Pending,
        sku: None,
        order_id: event.body.order_id().cloned(),
        reversible,
        requires_approval: !reversible || !policy.auto_execute_reversible || !within_amount,
        rationale: rec.rationale,
        evidence: rec.evidence,
        proposal: rec.proposal,
        created_at: now,
        expires_at: Some(now + policy.action_ttl),
        decided_at: None,
        decided_by: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{OrderShort, ShortLine};
    use crate::ledger::LocationStock;
    use crate::types::{Channel, LocationId, OrderId};

    fn short(requested: u32) -> Event {
        Event {
            id: "o:short".into(),
            occurred_at: Utc::now(),
            body: EventBody::OrderShort(OrderShort {
                order_id: OrderId::parse("1").unwrap(),
                channel: Channel::parse("shop").unwrap(),
                lines: vec![ShortLine {
                    sku: Sku::parse("A").unwrap(),
                    requested,
                    available: 0,
                }],
            }),
        }
    }

    fn stock(per_location: &[(&str, u32)]) -> BTreeMap<Sku, StockRecord> {
        let mut s = StockRecord::new(Sku::parse("A").unwrap());
        for (l, n) in per_location {
            s.locations.insert(
                LocationId::parse(l).unwrap(),
                LocationStock {
                    on_hand: *n,
                    ..Default::default()
                },
            );
        }
        BTreeMap::from([(Sku::parse("A").unwrap(), s)])
    }

    #[test]
    fn a_short_order_that_fits_now_is_rerouted() {
        let r = recommend(&short(3), None, &stock(&[("W1", 1), ("W2", 5)])).unwrap();
        assert_eq!(r.kind, ActionKind::Reroute);
        assert!(r.rationale.contains("W2"), "{}", r.rationale);
    }

    #[test]
    fn a_short_order_that_still_does_not_fit_gets_ranked_alternatives() {
        let r = recommend(&short(9), None, &stock(&[("W1", 2)])).unwrap();
        assert_eq!(r.kind, ActionKind::PartialShipment);
        assert_eq!(
            r.evidence["alternatives"],
            json!(["partial_shipment", "backorder", "cancel"])
        );
        let none = recommend(&short(9), None, &stock(&[])).unwrap();
        assert_eq!(none.kind, ActionKind::Backorder);
    }

    #[test]
    fn irreversible_actions_always_need_a_person() {
        let policy = OrderPolicy {
            auto_execute_reversible: true,
            ..OrderPolicy::default()
        };
        let refund = Event {
            id: "r".into(),
            occurred_at: Utc::now(),
            body: EventBody::OrderRefundRequested {
                order_id: OrderId::parse("1").unwrap(),
                amount: Decimal::new(500, 2),
                reason: "damaged".into(),
            },
        };
        let rec = recommend(&refund, None, &BTreeMap::new()).unwrap();
        let a = action_for(rec, &refund, "c", &policy, Utc::now());
        assert!(!a.reversible && a.requires_approval);
        let hold = Event {
            id: "p".into(),
            occurred_at: Utc::now(),
            body: EventBody::OrderPaymentFailed {
                order_id: OrderId::parse("1").unwrap(),
            },
        };
        let rec = recommend(&hold, None, &BTreeMap::new()).unwrap();
        let a = action_for(rec, &hold, "c2", &policy, Utc::now());
        assert!(a.reversible && !a.requires_approval);
    }

    #[test]
    fn an_unusually_large_order_is_a_risk_signal() {
        let placed = crate::event::OrderPlaced {
            order_id: OrderId::parse("9").unwrap(),
            channel: Channel::parse("shop").unwrap(),
            currency: crate::types::Currency::parse("EUR").unwrap(),
            lines: vec![crate::event::OrderLine {
                sku: Sku::parse("A").unwrap(),
                qty: crate::Quantity::new(12).unwrap(),
                unit_price: Decimal::ONE,
            }],
            ship_to: None,
            total: None,
        };
        let policy = OrderPolicy::default();
        assert!(
            risk_signals(&placed, &BTreeMap::new(), &policy).is_empty(),
            "no history, below 50"
        );
        let slow = BTreeMap::from([(Sku::parse("A").unwrap(), Decimal::ONE)]);
        let signals = risk_signals(&placed, &slow, &policy);
        assert!(
            signals[0].contains("10 days of its recent sales"),
            "{signals:?}"
        );
    }

    #[test]
    fn an_unpaid_hold_past_the_grace_period_becomes_a_cancel() {
        let policy = OrderPolicy::default();
        let failed = Event {
            id: "pf".into(),
            occurred_at: Utc::now(),
            body: EventBody::OrderPaymentFailed {
                order_id: OrderId::parse("7").unwrap(),
            },
        };
        let now = Utc::now();
        let hold = action_for(
            recommend(&failed, None, &BTreeMap::new()).unwrap(),
            &failed,
            "c",
            &policy,
            now,
        );
        assert!(
            escalate_unpaid(&hold, &policy, now + Duration::hours(1)).is_none(),
            "too early"
        );
        let cancel = escalate_unpaid(&hold, &policy, now + Duration::hours(25)).unwrap();
        assert_eq!(
            (cancel.kind, cancel.requires_approval),
            (ActionKind::Cancel, true)
        );
        let mut rejected = hold.clone();
        rejected.status = ActionStatus::Rejected;
        assert!(
            escalate_unpaid(&rejected, &policy, now + Duration::hours(25)).is_none(),
            "a person said it was paid"
        );
    }

    #[test]
    fn an_amount_threshold_forces_approval_of_reversible_actions() {
        let policy = OrderPolicy {
            auto_execute_reversible: true,
            auto_execute_max_total: Some(Decimal::from(100)),
            ..OrderPolicy::default()
        };
        let failed = Event {
            id: "pf".into(),
            occurred_at: Utc::now(),
            body: EventBody::OrderPaymentFailed {
                order_id: OrderId::parse("7").unwrap(),
            },
        };
        let mut order = OrderRecord {
            order_id: OrderId::parse("7").unwrap(),
            channel: None,
            currency: None,
            status: OrderStatus::Reserved,
            lines: vec![],
            total: Some(Decimal::from(80)),
            ship_to: None,
            reservations: vec![],
            fulfilled: vec![],
            updated_at: Utc::now(),
        };
        let small = action_for(
            recommend(&failed, Some(&order), &BTreeMap::new()).unwrap(),
            &failed,
            "a",
            &policy,
            Utc::now(),
        );
        assert!(!small.requires_approval);
        order.total = Some(Decimal::from(500));
        let large = action_for(
            recommend(&failed, Some(&order), &BTreeMap::new()).unwrap(),
            &failed,
            "b",
            &policy,
            Utc::now(),
        );
        assert!(large.requires_approval);
    }

    #[test]
    fn a_pending_action_past_its_time_reads_as_expired() {
        let e = short(1);
        let rec = recommend(&e, None, &BTreeMap::new()).unwrap();
        let now = Utc::now();
        let a = action_for(rec, &e, "c", &OrderPolicy::default(), now);
        assert_eq!(a.status_at(now), ActionStatus::Pending);
        assert_eq!(
            a.status_at(now + Duration::hours(73)),
            ActionStatus::Expired
        );
    }
}
