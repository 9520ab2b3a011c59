//! The stock ledger: on hand, reserved and safety stock per SKU × location,
//! and the reservations of each order.
//!
//! `apply` is the whole decision for a ledger event: given the records it
//! touches, it returns their new state, the audit records and any follow-up
//! event. It never reserves what is not available (rule 4 of the design):
//! an order either fits entirely or reserves nothing and becomes
//! `order.short`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{AuditLog, AuditRecord, Cause};
use crate::event::{
    Event, EventBody, FulfilledLine, OrderLine, OrderPlaced, OrderShort, ShortLine,
};
use crate::types::{Channel, Currency, LocationId, OrderId, Sku};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    pub on_hand: u32,
    pub reserved: u32,
    /// `occurred_at` of the count that set `on_hand`: older counts are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<DateTime<Utc>>,
}

impl LocationStock {
    /// On hand − reserved − safety stock, never below zero.
    pub fn available(&self, safety_stock: u32) -> u32 {
        self.on_hand
            .saturating_sub(self.reserved)
            .saturating_sub(safety_stock)
    }
}

/// One SKU's stock at every location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRecord {
    pub sku: Sku,
    /// Held back at each location.
    #[serde(default)]
    pub safety_stock: u32,
    #[serde(default)]
    pub locations: BTreeMap<LocationId, LocationStock>,
    /// `occurred_at` of the newest authoritative stock event (count or
    /// adjustment): how fresh the ledger's knowledge of this SKU is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stock_event_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl StockRecord {
    pub fn new(sku: Sku) -> Self {
        Self {
            sku,
            safety_stock: 0,
            locations: BTreeMap::new(),
            last_stock_event_at: None,
            updated_at: None,
        }
    }
    pub fn on_hand(&self) -> u32 {
        self.locations.values().map(|l| l.on_hand).sum()
    }
    pub fn reserved(&self) -> u32 {
        self.locations.values().map(|l| l.reserved).sum()
    }
    pub fn available(&self) -> u32 {
        self.locations
            .values()
            .map(|l| l.available(self.safety_stock))
            .sum()
    }
    pub fn available_at(&self, location: &LocationId) -> u32 {
        self.locations
            .get(location)
            .map_or(0, |l| l.available(self.safety_stock))
    }
    /// What a channel may sell: total available less its buffer, never < 0.
    pub fn available_for_channel(&self, buffer: u32) -> u32 {
        self.available().saturating_sub(buffer)
    }
    /// How one location looks in the API and the audit log.
    pub fn location_view(&self, location: &LocationId) -> Value {
        let l = self.locations.get(location).cloned().unwrap_or_default();
        json!({
            "location": location,
            "on_hand": l.on_hand,
            "reserved": l.reserved,
            "safety_stock": self.safety_stock,
            "available": l.available(self.safety_stock),
        })
    }
    pub fn audit_entity(&self, location: &LocationId) -> String {
        format!("stock:{}@{}", self.sku, location)
    }
    fn at_mut(&mut self, location: &LocationId) -> &mut LocationStock {
        self.locations.entry(location.clone()).or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Every line is reserved (some may already be fulfilled).
    Reserved,
    /// Could not be reserved; nothing is held for it.
    Short,
    Cancelled,
    Fulfilled,
}

/// Units of one SKU held for an order at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: Sku,
    pub location: LocationId,
    pub qty: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    pub status: OrderStatus,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<Value>,
    /// Reservations still held (fulfilled and released ones are removed).
    #[serde(default)]
    pub reservations: Vec<Allocation>,
    #[serde(default)]
    pub fulfilled: Vec<Allocation>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRecord {
    fn new(order_id: OrderId, status: OrderStatus, at: DateTime<Utc>) -> Self {
        Self {
            order_id,
            channel: None,
            currency: None,
            status,
            lines: vec![],
            total: None,
            ship_to: None,
            reservations: vec![],
            fulfilled: vec![],
            updated_at: at,
        }
    }
    pub fn audit_entity(&self) -> String {
        format!("order:{}", self.order_id)
    }
    fn view(&self) -> Value {
        json!({"status": self.status, "reservations": self.reservations, "fulfilled": self.fulfilled})
    }
}

/// The records a ledger event reads: the stock of every SKU it (or its
/// order) names, and the order itself.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stocks: BTreeMap<Sku, StockRecord>,
    pub order: Option<OrderRecord>,
}

/// What a ledger event decided.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stock records that changed, in their new state.
    pub stocks: Vec<StockRecord>,
    /// The order's new state, if it changed.
    pub order: Option<OrderRecord>,
    pub audit: Vec<AuditRecord>,
    pub follow_ups: Vec<Event>,
}

impl Outcome {
    pub fn changes_nothing(&self) -> bool {
        self.stocks.is_empty() && self.order.is_none()
    }
}

/// The SKUs whose stock `apply` needs for this event, given the order's
/// stored record (a cancellation releases what the order holds).
pub fn skus_needed(event: &EventBody, order: Option<&OrderRecord>) -> BTreeSet<Sku> {
    let mut skus: BTreeSet<Sku> = event.skus().into_iter().cloned().collect();
    if let Some(o) = order {
        skus.extend(o.reservations.iter().map(|a| a.sku.clone()));
    }
    skus
}

/// Applies one validated ledger event. Events that are not for the ledger
/// change nothing.
pub fn apply(snapshot: &Snapshot, event: &Event, cause: &Cause) -> Outcome {
    let mut stocks = snapshot.stocks.clone();
    let mut log = AuditLog::new(cause);
    let mut changed: BTreeSet<Sku> = BTreeSet::new();
    let mut follow_ups = vec![];
    let inputs = json!({"event_id": event.id, "type": event.body.type_name(), "occurred_at": event.occurred_at});
    let at = cause.at;

    let order = match &event.body {
        EventBody::StockCounted {
            sku,
            location,
            on_hand,
        } => {
            let s = stock_mut(&mut stocks, sku);
            let before = s.location_view(location);
            let counted_at = s.locations.get(location).and_then(|l| l.counted_at);
            if counted_at.is_some_and(|t| t >= event.occurred_at) {
                // Last writer wins by occurred_at: an older count is kept
                // in the log and changes nothing.
                let mut why = inputs.clone();
                why["stale_against"] = json!(counted_at);
                why["on_hand"] = json!(on_hand);
                log.push(
                    s.audit_entity(location),
                    "stock.count_stale",
                    before.clone(),
                    before,
                    why,
                );
            } else {
                let l = s.at_mut(location);
                l.on_hand = on_hand.get();
                l.counted_at = Some(event.occurred_at);
                s.last_stock_event_at = s.last_stock_event_at.max(Some(event.occurred_at));
                let after = s.location_view(location);
                log.push(
                    s.audit_entity(location),
                    "stock.counted",
                    before,
                    after,
                    inputs.clone(),
                );
                changed.insert(sku.clone());
            }
            None
        }
        EventBody::StockAdjusted {
            sku,
            location,
            delta,
            reason,
        } => {
            let s = stock_mut(&mut stocks, sku);
            let before = s.location_view(location);
            let l = s.at_mut(location);
            let wanted = i64::from(l.on_hand) + delta;
            // A shrinkage larger than what is on hand empties the shelf; the
            // audit record says so rather than going negative.
            l.on_hand = u32::try_from(wanted.max(0)).unwrap_or(u32::MAX);
            s.last_stock_event_at = s.last_stock_event_at.max(Some(event.occurred_at));
            let mut why = inputs.clone();
            why["delta"] = json!(delta);
            why["reason"] = json!(reason);
            if wanted < 0 {
                why["clamped_at_zero"] = json!(true);
            }
            let after = s.location_view(location);
            log.push(
                s.audit_entity(location),
                "stock.adjusted",
                before,
                after,
                why,
            );
            changed.insert(sku.clone());
            None
        }
        EventBody::OrderPlaced(placed) => place(
            snapshot.order.as_ref(),
            placed,
            &mut stocks,
            &mut changed,
            &mut log,
            &mut follow_ups,
            event,
            &inputs,
        ),
        EventBody::OrderCancelled { order_id, reason } => {
            let mut why = inputs.clone();
            why["reason"] = json!(reason);
            match snapshot.order.clone() {
                // Cancelled before we saw it placed: remember, so the late
                // `order.placed` reserves nothing.
                None => {
                    let o = OrderRecord::new(order_id.clone(), OrderStatus::Cancelled, at);
                    log.push(
                        o.audit_entity(),
                        "order.cancelled",
                        Value::Null,
                        o.view(),
                        why,
                    );
                    Some(o)
                }
                Some(o) if matches!(o.status, OrderStatus::Cancelled | OrderStatus::Fulfilled) => {
                    log.push(
                        o.audit_entity(),
                        "order.cancel_ignored",
                        o.view(),
                        o.view(),
                        why,
                    );
                    None
                }
                Some(mut o) => {
                    let before = o.view();
                    for a in std::mem::take(&mut o.reservations) {
                        release(&mut stocks, &a, &mut log, &inputs);
                        changed.insert(a.sku);
                    }
                    o.status = OrderStatus::Cancelled;
                    o.updated_at = at;
                    log.push(o.audit_entity(), "order.cancelled", before, o.view(), why);
                    Some(o)
                }
            }
        }
        EventBody::OrderFulfilled {
            order_id,
            location,
            lines,
        } => {
            let mut o = snapshot
                .order
                .clone()
                .unwrap_or_else(|| OrderRecord::new(order_id.clone(), OrderStatus::Reserved, at));
            let before = o.view();
            for line in lines {
                fulfil_line(&mut o, line, location, &mut stocks, &mut log, &inputs);
                changed.insert(line.sku.clone());
            }
            if o.reservations.is_empty() && o.status == OrderStatus::Reserved {
                o.status = OrderStatus::Fulfilled;
            }
            o.updated_at = at;
            log.push(
                o.audit_entity(),
                "order.fulfilled",
                before,
                o.view(),
                inputs.clone(),
            );
            Some(o)
        }
        _ => None,
    };

    let stocks = changed
        .into_iter()
        .filter_map(|sku| stocks.remove(&sku))
        .map(|mut s| {
            s.updated_at = Some(at);
            s
        })
        .collect();
    Outcome {
        stocks,
        order,
        audit: log.records,
        follow_ups,
    }
}

/// Reserves a short order now, all or nothing as at placement (an approved
/// reroute). `Err` with the lines that still do not fit.
pub fn reserve_short(snapshot: &Snapshot, cause: &Cause) -> Result<Outcome, Vec<ShortLine>> {
    let Some(mut o) = snapshot
        .order
        .clone()
        .filter(|o| o.status == OrderStatus::Short)
    else {
        return Err(vec![]);
    };
    let mut stocks = snapshot.stocks.clone();
    let mut wanted: BTreeMap<&Sku, u32> = BTreeMap::new();
    for line in &o.lines {
        *wanted.entry(&line.sku).or_default() += line.qty.get();
    }
    let allocations = allocate(&wanted, &stocks)?;
    let mut log = AuditLog::new(cause);
    let before = o.view();
    let inputs = json!({"order_id": o.order_id, "rerouted": true});
    let mut changed = BTreeSet::new();
    for a in &allocations {
        let s = stock_mut(&mut stocks, &a.sku);
        let b = s.location_view(&a.location);
        s.at_mut(&a.location).reserved += a.qty;
        let mut why = inputs.clone();
        why["qty"] = json!(a.qty);
        log.push(
            s.audit_entity(&a.location),
            "stock.reserved",
            b,
            s.location_view(&a.location),
            why,
        );
        changed.insert(a.sku.clone());
    }
    o.reservations = allocations;
    o.status = OrderStatus::Reserved;
    o.updated_at = cause.at;
    log.push(o.audit_entity(), "order.rerouted", before, o.view(), inputs);
    Ok(Outcome {
        stocks: changed
            .into_iter()
            .filter_map(|sku| stocks.remove(&sku))
            .map(|mut s| {
                s.updated_at = Some(cause.at);
                s
            })
            .collect(),
        order: Some(o),
        audit: log.records,
        follow_ups: vec![],
    })
}

fn stock_mut<'a>(stocks: &'a mut BTreeMap<Sku, StockRecord>, sku: &Sku) -> &'a mut StockRecord {
    stocks
        .entry(sku.clone())
        .or_insert_with(|| StockRecord::new(sku.clone()))
}

#[allow(clippy::too_many_arguments)]
fn place(
    existing: Option<&OrderRecord>,
    placed: &OrderPlaced,
    stocks: &mut BTreeMap<Sku, StockRecord>,
    changed: &mut BTreeSet<Sku>,
    log: &mut AuditLog<'_>,
    follow_ups: &mut Vec<Event>,
    event: &Event,
    inputs: &Value,
) -> Option<OrderRecord> {
    if let Some(o) = existing {
        // The same order again under another event id (a platform's update,
        // a redelivery): it already holds what it should.
        if o.status == OrderStatus::Cancelled && o.lines.is_empty() {
            let mut late = o.clone();
            late.lines = placed.lines.clone();
            late.channel = Some(placed.channel.clone());
            late.currency = Some(placed.currency);
            log.push(
                o.audit_entity(),
                "order.placed_after_cancel",
                o.view(),
                late.view(),
                inputs.clone(),
            );
            return Some(late);
        }
        return None;
    }
    let mut wanted: BTreeMap<&Sku, u32> = BTreeMap::new();
    for line in &placed.lines {
        *wanted.entry(&line.sku).or_default() += line.qty.get();
    }
    let mut o = OrderRecord::new(placed.order_id.clone(), OrderStatus::Reserved, log.at());
    o.channel = Some(placed.channel.clone());
    o.currency = Some(placed.currency);
    o.lines = placed.lines.clone();
    o.total = placed.total;
    o.ship_to = placed.ship_to.clone();

    match allocate(&wanted, stocks) {
        Ok(allocations) => {
            for a in &allocations {
                let s = stock_mut(stocks, &a.sku);
                let before = s.location_view(&a.location);
                s.at_mut(&a.location).reserved += a.qty;
                let after = s.location_view(&a.location);
                let mut why = inputs.clone();
                why["order_id"] = json!(placed.order_id);
                why["qty"] = json!(a.qty);
                log.push(
                    s.audit_entity(&a.location),
                    "stock.reserved",
                    before,
                    after,
                    why,
                );
                changed.insert(a.sku.clone());
            }
            o.reservations = allocations;
            log.push(
                o.audit_entity(),
                "order.reserved",
                Value::Null,
                o.view(),
                inputs.clone(),
            );
        }
        Err(short) => {
            o.status = OrderStatus::Short;
            let mut why = inputs.clone();
            why["short"] = json!(short);
            log.push(o.audit_entity(), "order.short", Value::Null, o.view(), why);
            follow_ups.push(Event {
                id: format!("{}:short", event.id),
                occurred_at: event.occurred_at,
                body: EventBody::OrderShort(OrderShort {
                    order_id: placed.order_id.clone(),
                    channel: placed.channel.clone(),
                    lines: short,
                }),
            });
        }
    }
    Some(o)
}

/// Chooses where to reserve: one location for the whole order if any can
/// serve it all; otherwise each SKU from one location if possible, split
/// across locations (largest first) only when no single one holds enough.
/// On failure returns the lines that do not fit.
pub fn allocate(
    wanted: &BTreeMap<&Sku, u32>,
    stocks: &BTreeMap<Sku, StockRecord>,
) -> Result<Vec<Allocation>, Vec<ShortLine>> {
    let avail = |sku: &Sku, loc: &LocationId| stocks.get(sku).map_or(0, |s| s.available_at(loc));
    let locations: BTreeSet<&LocationId> = wanted
        .keys()
        .filter_map(|sku| stocks.get(*sku))
        .flat_map(|s| s.locations.keys())
        .collect();

    // One location for everything: the one with the most room to spare.
    let whole = locations
        .iter()
        .filter(|loc| wanted.iter().all(|(sku, q)| avail(sku, loc) >= *q))
        .max_by_key(|loc| {
            let spare: u64 = wanted.keys().map(|sku| u64::from(avail(sku, loc))).sum();
            (spare, std::cmp::Reverse(**loc))
        });
    if let Some(loc) = whole {
        return Ok(wanted
            .iter()
            .map(|(sku, q)| Allocation {
                sku: (*sku).clone(),
                location: (*loc).clone(),
                qty: *q,
            })
            .collect());
    }

    let mut out = vec![];
    let mut short = vec![];
    for (sku, q) in wanted {
        let mut by_room: Vec<(&LocationId, u32)> = locations
            .iter()
            .map(|l| (*l, avail(sku, l)))
            .filter(|(_, a)| *a > 0)
            .collect();
        // Largest first; ties by location id so decisions are repeatable.
        by_room.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let total: u32 = by_room.iter().map(|(_, a)| a).sum();
        if total < *q {
            short.push(ShortLine {
                sku: (*sku).clone(),
                requested: *q,
                available: total,
            });
            continue;
        }
        // A single location that fits the line beats a split.
        if let Some((loc, _)) = by_room.iter().rev().find(|(_, a)| *a >= *q) {
            out.push(Allocation {
                sku: (*sku).clone(),
                location: (*loc).clone(),
                qty: *q,
            });
            continue;
        }
        let mut left = *q;
        for (loc, a) in by_room {
            let take = a.min(left);
            out.push(Allocation {
                sku: (*sku).clone(),
                location: loc.clone(),
                qty: take,
            });
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    if short.is_empty() {
        Ok(out)
    } else {
        Err(short)
    }
}

fn release(
    stocks: &mut BTreeMap<Sku, StockRecord>,
    a: &Allocation,
    log: &mut AuditLog<'_>,
    inputs: &Value,
) {
    let s = stock_mut(stocks, &a.sku);
    let before = s.location_view(&a.location);
    let l = s.at_mut(&a.location);
    l.reserved = l.reserved.saturating_sub(a.qty);
    let after = s.location_view(&a.location);
    let mut why = inputs.clone();
    why["qty"] = json!(a.qty);
    log.push(
        s.audit_entity(&a.location),
        "stock.released",
        before,
        after,
        why,
    );
}

/// Ships `line` from `location`: on hand drops there; the order's
/// reservation for the SKU is consumed, at that location first. Units
/// reserved elsewhere but shipped from here are released where they were.
fn fulfil_line(
    o: &mut OrderRecord,
    line: &FulfilledLine,
    location: &LocationId,
    stocks: &mut BTreeMap<Sku, StockRecord>,
    log: &mut AuditLog<'_>,
    inputs: &Value,
) {
    let mut left = line.qty.get();
    o.reservations
        .sort_by_key(|a| (a.sku != line.sku, &a.location != location));
    let s = stock_mut(stocks, &line.sku);
    let mut touched: BTreeSet<LocationId> = BTreeSet::from([location.clone()]);
    let before: BTreeMap<LocationId, Value> = s
        .locations
        .keys()
        .chain([location])
        .map(|l| (l.clone(), s.location_view(l)))
        .collect();
    for a in o.reservations.iter_mut().filter(|a| a.sku == line.sku) {
        let take = a.qty.min(left);
        if take == 0 {
            break;
        }
        let l = s.at_mut(&a.location);
        l.reserved = l.reserved.saturating_sub(take);
        a.qty -= take;
        left -= take;
        touched.insert(a.location.clone());
    }
    o.reservations.retain(|a| a.qty > 0);
    let here = s.at_mut(location);
    here.on_hand = here.on_hand.saturating_sub(line.qty.get());
    o.fulfilled.push(Allocation {
        sku: line.sku.clone(),
        location: location.clone(),
        qty: line.qty.get(),
    });
    for loc in touched {
        let mut why = inputs.clone();
        why["order_id"] = json!(o.order_id);
        why["shipped_from"] = json!(location);
        why["qty"] = json!(line.qty);
        let b = before.get(&loc).cloned().unwrap_or(Value::Null);
        log.push(
            s.audit_entity(&loc),
            "stock.fulfilled",
            b,
            s.location_view(&loc),
            why,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantity;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }
    fn loc(s: &str) -> LocationId {
        LocationId::parse(s).unwrap()
    }
    fn t(min: i64) -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(min)
    }
    fn ev(id: &str, at: i64, body: EventBody) -> Event {
        Event {
            id: id.into(),
            occurred_at: t(at),
            body,
        }
    }
    fn count(id: &str, at: i64, s: &str, l: &str, n: u32) -> Event {
        ev(
            id,
            at,
            EventBody::StockCounted {
                sku: sku(s),
                location: loc(l),
                on_hand: Quantity::new(n).unwrap(),
            },
        )
    }
    fn order(id: &str, order_id: &str, lines: &[(&str, u32)]) -> Event {
        ev(
            id,
            0,
            EventBody::OrderPlaced(OrderPlaced {
                order_id: OrderId::parse(order_id).unwrap(),
                channel: Channel::parse("shop").unwrap(),
                currency: Currency::parse("EUR").unwrap(),
                lines: lines
                    .iter()
                    .map(|(s, q)| OrderLine {
                        sku: sku(s),
                        qty: Quantity::new(*q).unwrap(),
                        unit_price: dec!(9.99),
                    })
                    .collect(),
                ship_to: None,
                total: None,
            }),
        )
    }
    fn cancel(id: &str, order_id: &str) -> Event {
        ev(
            id,
            0,
            EventBody::OrderCancelled {
                order_id: OrderId::parse(order_id).unwrap(),
                reason: None,
            },
        )
    }
    fn fulfil(id: &str, order_id: &str, l: &str, lines: &[(&str, u32)]) -> Event {
        ev(
            id,
            0,
            EventBody::OrderFulfilled {
                order_id: OrderId::parse(order_id).unwrap(),
                location: loc(l),
                lines: lines
                    .iter()
                    .map(|(s, q)| FulfilledLine {
                        sku: sku(s),
                        qty: Quantity::new(*q).unwrap(),
                    })
                    .collect(),
            },
        )
    }

    /// Applies events the way the stores do: skip what was applied, load
    /// what the event needs, decide, keep the outcome.
    #[derive(Default, Clone, PartialEq, Debug)]
    struct World {
        stocks: BTreeMap<Sku, StockRecord>,
        orders: BTreeMap<OrderId, OrderRecord>,
        applied: BTreeSet<String>,
    }

    impl World {
        fn apply(&mut self, e: &Event) -> Outcome {
            if !self.applied.insert(e.id.clone()) {
                return Outcome::default();
            }
            let order = e
                .body
                .order_id()
                .and_then(|id| self.orders.get(id))
                .cloned();
            let stocks = skus_needed(&e.body, order.as_ref())
                .into_iter()
                .filter_map(|s| self.stocks.get(&s).map(|r| (s, r.clone())))
                .collect();
            let out = apply(
                &Snapshot { stocks, order },
                e,
                &Cause::system(e.id.clone(), t(0)),
            );
            for s in &out.stocks {
                self.stocks.insert(s.sku.clone(), s.clone());
            }
            if let Some(o) = &out.order {
                self.orders.insert(o.order_id.clone(), o.clone());
            }
            out
        }
        fn at(&self, s: &str, l: &str) -> LocationStock {
            self.stocks[&sku(s)]
                .locations
                .get(&loc(l))
                .cloned()
                .unwrap_or_default()
        }
    }

    #[test]
    fn a_count_sets_on_hand_and_an_older_count_changes_nothing() {
        let mut w = World::default();
        w.apply(&count("c1", 10, "A", "W1", 40));
        let stale = w.apply(&count("c2", 5, "A", "W1", 3));
        assert_eq!(w.at("A", "W1").on_hand, 40);
        assert!(stale.changes_nothing());
        assert_eq!(stale.audit[0].kind, "stock.count_stale");
    }

    #[test]
    fn an_order_reserves_at_one_location_that_fits_it_whole() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 1));
        w.apply(&count("c2", 0, "A", "W2", 5));
        w.apply(&count("c3", 0, "B", "W2", 5));
        w.apply(&count("c4", 0, "B", "W1", 9));
        w.apply(&order("o1", "1", &[("A", 2), ("B", 2)]));
        assert_eq!(w.at("A", "W2").reserved, 2);
        assert_eq!(w.at("B", "W2").reserved, 2);
        assert_eq!(w.at("B", "W1").reserved, 0);
    }

    #[test]
    fn an_order_splits_only_when_no_single_location_holds_enough() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 3));
        w.apply(&count("c2", 0, "A", "W2", 2));
        w.apply(&order("o1", "1", &[("A", 4)]));
        assert_eq!(w.at("A", "W1").reserved, 3);
        assert_eq!(w.at("A", "W2").reserved, 1);
    }

    #[test]
    fn a_short_order_reserves_nothing_and_raises_order_short() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 3));
        w.apply(&count("c2", 0, "B", "W1", 1));
        let out = w.apply(&order("o1", "1", &[("A", 2), ("B", 2)]));
        assert_eq!(w.at("A", "W1").reserved, 0);
        assert_eq!(out.order.unwrap().status, OrderStatus::Short);
        let EventBody::OrderShort(short) = &out.follow_ups[0].body else {
            panic!("expected order.short");
        };
        assert_eq!(
            short.lines,
            vec![ShortLine {
                sku: sku("B"),
                requested: 2,
                available: 1
            }]
        );
    }

    #[test]
    fn safety_stock_is_never_sold() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 3));
        w.stocks.get_mut(&sku("A")).unwrap().safety_stock = 2;
        let out = w.apply(&order("o1", "1", &[("A", 2)]));
        assert_eq!(out.order.unwrap().status, OrderStatus::Short);
        w.apply(&order("o2", "2", &[("A", 1)]));
        assert_eq!(w.stocks[&sku("A")].available(), 0);
    }

    #[test]
    fn cancelling_releases_and_fulfilling_ships_out_of_on_hand() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 10));
        w.apply(&order("o1", "1", &[("A", 3)]));
        w.apply(&order("o2", "2", &[("A", 2)]));
        w.apply(&cancel("x1", "1"));
        assert_eq!(w.at("A", "W1").reserved, 2);
        w.apply(&fulfil("f2", "2", "W1", &[("A", 2)]));
        assert_eq!(
            w.at("A", "W1"),
            LocationStock {
                on_hand: 8,
                reserved: 0,
                counted_at: Some(t(0))
            }
        );
        assert_eq!(
            w.orders[&OrderId::parse("2").unwrap()].status,
            OrderStatus::Fulfilled
        );
    }

    #[test]
    fn a_cancellation_that_arrives_first_keeps_the_late_order_from_reserving() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 10));
        w.apply(&cancel("x1", "1"));
        w.apply(&order("o1", "1", &[("A", 3)]));
        assert_eq!(w.at("A", "W1").reserved, 0);
    }

    #[test]
    fn an_adjustment_applies_its_delta_and_never_goes_below_zero() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 5));
        let adj = |id: &str, d: i64| {
            ev(
                id,
                1,
                EventBody::StockAdjusted {
                    sku: sku("A"),
                    location: loc("W1"),
                    delta: d,
                    reason: "r".into(),
                },
            )
        };
        w.apply(&adj("a1", 3));
        assert_eq!(w.at("A", "W1").on_hand, 8);
        let out = w.apply(&adj("a2", -20));
        assert_eq!(w.at("A", "W1").on_hand, 0);
        assert_eq!(out.audit[0].inputs["clamped_at_zero"], json!(true));
    }

    #[test]
    fn a_channel_sells_total_available_less_its_buffer_never_below_zero() {
        let mut w = World::default();
        w.apply(&count("c1", 0, "A", "W1", 4));
        w.apply(&count("c2", 0, "A", "W2", 3));
        let s = &w.stocks[&sku("A")];
        assert_eq!(s.available_for_channel(5), 2);
        assert_eq!(s.available_for_channel(50), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Count(usize, usize, u32, i64),
        Adjust(usize, usize, i64),
        Place(usize, Vec<(usize, u32)>),
        Cancel(usize),
        Fulfil(usize, usize),
        Repeat(usize),
    }

    const SKUS: [&str; 3] = ["A", "B", "C"];
    const LOCS: [&str; 2] = ["W1", "W2"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..2usize, 0..12u32, 0..50i64)
                .prop_map(|(s, l, n, t)| Op::Count(s, l, n, t)),
            (0..3usize, 0..2usize, -5..6i64).prop_map(|(s, l, d)| Op::Adjust(s, l, d)),
            (0..8usize, prop::collection::vec((0..3usize, 1..5u32), 1..4))
                .prop_map(|(o, l)| Op::Place(o, l)),
            (0..8usize).prop_map(Op::Cancel),
            (0..8usize, 0..2usize).prop_map(|(o, l)| Op::Fulfil(o, l)),
            (0..64usize).prop_map(Op::Repeat),
        ]
    }

    fn events(ops: &[Op]) -> Vec<Event> {
        let mut out: Vec<Event> = vec![];
        for (i, op) in ops.iter().enumerate() {
            let id = format!("e{i}");
            let e = match op {
                Op::Count(s, l, n, at) => count(&id, *at, SKUS[*s], LOCS[*l], *n),
                Op::Adjust(s, l, d) => ev(
                    &id,
                    0,
                    EventBody::StockAdjusted {
                        sku: sku(SKUS[*s]),
                        location: loc(LOCS[*l]),
                        delta: *d,
                        reason: "p".into(),
                    },
                ),
                Op::Place(o, lines) => {
                    let lines: Vec<(&str, u32)> =
                        lines.iter().map(|(s, q)| (SKUS[*s], *q)).collect();
                    order(&id, &o.to_string(), &lines)
                }
                Op::Cancel(o) => cancel(&id, &o.to_string()),
                Op::Fulfil(o, l) => {
                    // Ship whatever the order asked for, as platforms do.
                    fulfil(&id, &o.to_string(), LOCS[*l], &[(SKUS[o % 3], 1)])
                }
                // A duplicate delivery of an earlier event, same id.
                Op::Repeat(k) if !out.is_empty() => out[k % out.len()].clone(),
                Op::Repeat(_) => continue,
            };
            out.push(e);
        }
        out
    }

    fn check_invariants(w: &World) -> Result<(), TestCaseError> {
        for (s, rec) in &w.stocks {
            for (l, ls) in &rec.locations {
                let held: u32 = w
                    .orders
                    .values()
                    .flat_map(|o| &o.reservations)
                    .filter(|a| &a.sku == s && &a.location == l)
                    .map(|a| a.qty)
                    .sum();
                prop_assert_eq!(
                    ls.reserved,
                    held,
                    "reserved at {}@{} != open reservations",
                    s,
                    l
                );
                prop_assert_eq!(
                    i64::from(ls.available(rec.safety_stock)),
                    (i64::from(ls.on_hand) - i64::from(ls.reserved) - i64::from(rec.safety_stock))
                        .max(0)
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn the_ledger_never_oversells_and_replays_change_nothing(ops in prop::collection::vec(op(), 1..60)) {
            let evs = events(&ops);
            let mut w = World::default();
            for e in &evs {
                let out = w.apply(e);
                // A reservation only ever takes what was available.
                if out.audit.iter().any(|a| a.kind == "order.reserved") {
                    for a in &out.order.as_ref().unwrap().reservations {
                        let rec = &w.stocks[&a.sku];
                        let l = &rec.locations[&a.location];
                        prop_assert!(l.reserved + rec.safety_stock <= l.on_hand, "oversold {}@{}", a.sku, a.location);
                    }
                }
                check_invariants(&w)?;
            }
            // Replaying any prefix again (same ids) changes nothing.
            let before = w.clone();
            let cut = evs.len() / 2;
            for e in &evs[..cut] {
                prop_assert!(w.apply(e).changes_nothing());
            }
            prop_assert_eq!(&w, &before);
            // Orders re-sent under new ids (a platform's redelivery) reserve
            // and release nothing more.
            for e in evs.iter().filter(|e| matches!(e.body, EventBody::OrderPlaced(_) | EventBody::OrderCancelled { .. })) {
                let mut again = e.clone();
                again.id = format!("{}-again", e.id);
                w.apply(&again);
            }
            prop_assert_eq!(&w.stocks, &before.stocks);
            check_invariants(&w)?;
        }
    }
}
