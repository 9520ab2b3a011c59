//! Canonical events: the one shape every platform's payload is translated
//! into, and the validation that runs on it in transit.
//!
//! `Event::parse` reads untrusted JSON and returns every reason it refuses,
//! so that a quarantined record says all that is wrong with it at once.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::{Channel, Currency, LocationId, Money, OrderId, Quantity, Reasons, Sku};

/// How far in the future an `occurred_at` may lie before it is refused:
/// clocks drift, but a week-ahead count would freeze the ledger.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
const MAX_ID_LEN: usize = 256;
const MAX_LINES: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(flatten)]
    pub body: EventBody,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    #[serde(rename = "stock.counted")]
    StockCounted {
        sku: Sku,
        location: LocationId,
        on_hand: Quantity,
    },
    #[serde(rename = "stock.adjusted")]
    StockAdjusted {
        sku: Sku,
        location: LocationId,
        delta: i64,
        reason: String,
    },
    #[serde(rename = "order.placed")]
    OrderPlaced(OrderPlaced),
    #[serde(rename = "order.cancelled")]
    OrderCancelled {
        order_id: OrderId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "order.fulfilled")]
    OrderFulfilled {
        order_id: OrderId,
        location: LocationId,
        lines: Vec<FulfilledLine>,
    },
    #[serde(rename = "order.payment_failed")]
    OrderPaymentFailed { order_id: OrderId },
    #[serde(rename = "order.address_change_requested")]
    OrderAddressChangeRequested { order_id: OrderId, address: Value },
    #[serde(rename = "order.refund_requested")]
    OrderRefundRequested {
        order_id: OrderId,
        amount: Decimal,
        reason: String,
    },
    #[serde(rename = "price.competitor_observed")]
    PriceCompetitorObserved {
        sku: Sku,
        competitor: String,
        price: Decimal,
        currency: Currency,
    },
    #[serde(rename = "product.cost_changed")]
    ProductCostChanged {
        sku: Sku,
        unit_cost: Decimal,
        currency: Currency,
    },
    /// Produced by Tally when an order cannot be reserved; never accepted
    /// from a source.
    #[serde(rename = "order.short")]
    OrderShort(OrderShort),
    /// Produced by Tally when an order looks risky (unusually large for the
    /// SKU); never accepted from a source.
    #[serde(rename = "order.flagged")]
    OrderFlagged {
        order_id: OrderId,
        reasons: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub channel: Channel,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub qty: Quantity,
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FulfilledLine {
    pub sku: Sku,
    pub qty: Quantity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShort {
    pub order_id: OrderId,
    pub channel: Channel,
    /// What the order asked for against what could be had, per SKU.
    pub lines: Vec<ShortLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortLine {
    pub sku: Sku,
    pub requested: u32,
    pub available: u32,
}

impl EventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::StockCounted { .. } => "stock.counted",
            EventBody::StockAdjusted { .. } => "stock.adjusted",
            EventBody::OrderPlaced(_) => "order.placed",
            EventBody::OrderCancelled { .. } => "order.cancelled",
            EventBody::OrderFulfilled { .. } => "order.fulfilled",
            EventBody::OrderPaymentFailed { .. } => "order.payment_failed",
            EventBody::OrderAddressChangeRequested { .. } => "order.address_change_requested",
            EventBody::OrderRefundRequested { .. } => "order.refund_requested",
            EventBody::PriceCompetitorObserved { .. } => "price.competitor_observed",
            EventBody::ProductCostChanged { .. } => "product.cost_changed",
            EventBody::OrderShort(_) => "order.short",
            EventBody::OrderFlagged { .. } => "order.flagged",
        }
    }

    /// The order this event concerns, if any.
    pub fn order_id(&self) -> Option<&OrderId> {
        match self {
            EventBody::OrderPlaced(o) => Some(&o.order_id),
            EventBody::OrderShort(o) => Some(&o.order_id),
            EventBody::OrderFlagged { order_id, .. } => Some(order_id),
            EventBody::OrderCancelled { order_id, .. }
            | EventBody::OrderFulfilled { order_id, .. }
            | EventBody::OrderPaymentFailed { order_id }
            | EventBody::OrderAddressChangeRequested { order_id, .. }
            | EventBody::OrderRefundRequested { order_id, .. } => Some(order_id),
            _ => None,
        }
    }

    /// Every SKU the event names.
    pub fn skus(&self) -> Vec<&Sku> {
        match self {
            EventBody::StockCounted { sku, .. }
            | EventBody::StockAdjusted { sku, .. }
            | EventBody::PriceCompetitorObserved { sku, .. }
            | EventBody::ProductCostChanged { sku, .. } => vec![sku],
            EventBody::OrderPlaced(o) => o.lines.iter().map(|l| &l.sku).collect(),
            EventBody::OrderFulfilled { lines, .. } => lines.iter().map(|l| &l.sku).collect(),
            EventBody::OrderShort(o) => o.lines.iter().map(|l| &l.sku).collect(),
            _ => vec![],
        }
    }

    /// Every location the event names.
    pub fn locations(&self) -> Vec<&LocationId> {
        match self {
            EventBody::StockCounted { location, .. }
            | EventBody::StockAdjusted { location, .. }
            | EventBody::OrderFulfilled { location, .. } => vec![location],
            _ => vec![],
        }
    }

    /// Whether the event is for the stock ledger (as opposed to pricing
    /// signals and order requests that only later workflows consume).
    pub fn touches_ledger(&self) -> bool {
        matches!(
            self,
            EventBody::StockCounted { .. }
                | EventBody::StockAdjusted { .. }
                | EventBody::OrderPlaced(_)
                | EventBody::OrderCancelled { .. }
                | EventBody::OrderFulfilled { .. }
        )
    }
}

/// Reads one canonical event out of untrusted JSON.
pub fn parse_event(value: &Value, now: DateTime<Utc>) -> Result<Event, Reasons> {
    let mut r = Reasons::new();
    let Some(obj) = value.as_object() else {
        r.push("event", "must be a JSON object");
        return Err(r);
    };
    let id = field(obj, "", "id", &mut r).and_then(|v| match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Some(s.to_owned()),
        _ => {
            r.push(
                "id",
                format!("must be a string of 1 to {MAX_ID_LEN} characters"),
            );
            None
        }
    });
    let occurred_at = parse_field(obj, "", "occurred_at", &mut r, |v| {
        let s = v.as_str().ok_or("must be an RFC 3339 time string")?;
        let t = DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?
            .with_timezone(&Utc);
        if now
            .checked_add_signed(MAX_CLOCK_SKEW)
            .is_some_and(|limit| t > limit)
        {
            return Err(format!("{s} is in the future"));
        }
        Ok(t)
    });
    let ty = field(obj, "", "type", &mut r).and_then(|v| {
        let s = v.as_str();
        if s.is_none() {
            r.push("type", "must be a string");
        }
        s
    });
    let data = field(obj, "", "data", &mut r).and_then(|v| {
        let o = v.as_object();
        if o.is_none() {
            r.push("data", "must be an object");
        }
        o
    });
    let body = match (ty, data) {
        (Some(ty), Some(data)) => parse_body(ty, data, &mut r),
        _ => None,
    };
    match (id, body, occurred_at) {
        (Some(id), Some(body), Some(occurred_at)) if r.is_empty() => Ok(Event {
            id,
            body,
            occurred_at,
        }),
        _ => Err(r),
    }
}

fn parse_body(ty: &str, d: &Map<String, Value>, r: &mut Reasons) -> Option<EventBody> {
    let p = "data";
    Some(match ty {
        "stock.counted" => {
            let sku = sku(d, p, "sku", r);
            let location = location(d, p, "location", r);
            let on_hand = quantity(d, p, "on_hand", 0, r);
            EventBody::StockCounted {
                sku: sku?,
                location: location?,
                on_hand: on_hand?,
            }
        }
        "stock.adjusted" => {
            let sku = sku(d, p, "sku", r);
            let location = location(d, p, "location", r);
            let delta = parse_field(d, p, "delta", r, |v| {
                let n = v.as_i64().ok_or("must be a whole number")?;
                if n.unsigned_abs() > u64::from(Quantity::MAX) {
                    return Err(format!("{n} is beyond ±{}", Quantity::MAX));
                }
                Ok(n)
            });
            let reason = text(d, p, "reason", r);
            EventBody::StockAdjusted {
                sku: sku?,
                location: location?,
                delta: delta?,
                reason: reason?,
            }
        }
        "order.placed" => {
            let order_id = order_id(d, p, r);
            let channel = parse_field(d, p, "channel", r, |v| {
                Channel::parse(v.as_str().ok_or("must be a string")?)
            });
            let currency = currency(d, p, "currency", r);
            let lines = lines(d, p, r, |line, lp, r| {
                let sku = sku(line, lp, "sku", r);
                let qty = quantity(line, lp, "qty", 1, r);
                let unit_price = decimal(line, lp, "unit_price", r);
                Some(OrderLine {
                    sku: sku?,
                    qty: qty?,
                    unit_price: unit_price?,
                })
            });
            let ship_to = d.get("ship_to").filter(|v| !v.is_null()).cloned();
            if ship_to.as_ref().is_some_and(|v| !v.is_object()) {
                r.push("data.ship_to", "must be an object");
            }
            let total = match d.get("total") {
                None | Some(Value::Null) => None,
                Some(_) => Some(decimal(d, p, "total", r)?),
            };
            EventBody::OrderPlaced(OrderPlaced {
                order_id: order_id?,
                channel: channel?,
                currency: currency?,
                lines: lines?,
                ship_to,
                total,
            })
        }
        "order.cancelled" => {
            let order_id = order_id(d, p, r);
            let reason = d.get("reason").and_then(Value::as_str).map(str::to_owned);
            EventBody::OrderCancelled {
                order_id: order_id?,
                reason,
            }
        }
        "order.fulfilled" => {
            let order_id = order_id(d, p, r);
            let location = location(d, p, "location", r);
            let lines = lines(d, p, r, |line, lp, r| {
                let sku = sku(line, lp, "sku", r);
                let qty = quantity(line, lp, "qty", 1, r);
                Some(FulfilledLine {
                    sku: sku?,
                    qty: qty?,
                })
            });
            EventBody::OrderFulfilled {
                order_id: order_id?,
                location: location?,
                lines: lines?,
            }
        }
        "order.payment_failed" => EventBody::OrderPaymentFailed {
            order_id: order_id(d, p, r)?,
        },
        "order.address_change_requested" => {
            let order_id = order_id(d, p, r);
            let address = parse_field(d, p, "address", r, |v| {
                if v.is_object() {
                    Ok(v.clone())
                } else {
                    Err("must be an object")
                }
            });
            EventBody::OrderAddressChangeRequested {
                order_id: order_id?,
                address: address?,
            }
        }
        "order.refund_requested" => {
            let order_id = order_id(d, p, r);
            let amount = decimal(d, p, "amount", r);
            let reason = text(d, p, "reason", r);
            EventBody::OrderRefundRequested {
                order_id: order_id?,
                amount: amount?,
                reason: reason?,
            }
        }
        "price.competitor_observed" => {
            let sku = sku(d, p, "sku", r);
            let competitor = text(d, p, "competitor", r);
            let price = decimal(d, p, "price", r);
            let currency = currency(d, p, "currency", r);
            EventBody::PriceCompetitorObserved {
                sku: sku?,
                competitor: competitor?,
                price: price?,
                currency: currency?,
            }
        }
        "product.cost_changed" => {
            let sku = sku(d, p, "sku", r);
            let unit_cost = decimal(d, p, "unit_cost", r);
            let currency = currency(d, p, "currency", r);
            EventBody::ProductCostChanged {
                sku: sku?,
                unit_cost: unit_cost?,
                currency: currency?,
            }
        }
        "order.short" | "order.flagged" => {
            r.push(
                "type",
                format!("{ty} is produced by Tally and not accepted from a source"),
            );
            return None;
        }
        other => {
            r.push("type", format!("unknown event type {other:?}"));
            return None;
        }
    })
}

fn field<'v>(
    obj: &'v Map<String, Value>,
    prefix: &str,
    name: &str,
    r: &mut Reasons,
) -> Option<&'v Value> {
    match obj.get(name) {
        Some(Value::Null) | None => {
            r.push(&path(prefix, name), "missing");
            None
        }
        Some(v) => Some(v),
    }
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn parse_field<T, E: std::fmt::Display>(
    obj: &Map<String, Value>,
    prefix: &str,
    name: &str,
    r: &mut Reasons,
    parse: impl FnOnce(&Value) -> Result<T, E>,
) -> Option<T> {
    let v = field(obj, prefix, name, r)?;
    parse(v).map_err(|e| r.push(&path(prefix, name), e)).ok()
}

fn sku(o: &Map<String, Value>, p: &str, n: &str, r: &mut Reasons) -> Option<Sku> {
    parse_field(o, p, n, r, |v| {
        Sku::parse(v.as_str().ok_or("must be a string")?)
    })
}

fn location(o: &Map<String, Value>, p: &str, n: &str, r: &mut Reasons) -> Option<LocationId> {
    parse_field(o, p, n, r, |v| {
        LocationId::parse(v.as_str().ok_or("must be a string")?)
    })
}

fn order_id(o: &Map<String, Value>, p: &str, r: &mut Reasons) -> Option<OrderId> {
    parse_field(o, p, "order_id", r, |v| match v {
        Value::String(s) => OrderId::parse(s),
        // Platforms number orders; accept a whole number as its text.
        Value::Number(n) if n.is_u64() => OrderId::parse(&n.to_string()),
        _ => Err("must be a string".into()),
    })
}

fn currency(o: &Map<String, Value>, p: &str, n: &str, r: &mut Reasons) -> Option<Currency> {
    parse_field(o, p, n, r, |v| {
        Currency::parse(v.as_str().ok_or("must be a string")?)
    })
}

fn decimal(o: &Map<String, Value>, p: &str, n: &str, r: &mut Reasons) -> Option<Decimal> {
    parse_field(o, p, n, r, Money::parse_amount)
}

fn text(o: &Map<String, Value>, p: &str, n: &str, r: &mut Reasons) -> Option<String> {
    parse_field(o, p, n, r, |v| match v.as_str() {
        Some(s) if !s.trim().is_empty() && s.len() <= 1024 => Ok(s.to_owned()),
        _ => Err("must be a non-empty string of at most 1024 characters"),
    })
}

fn quantity(
    o: &Map<String, Value>,
    p: &str,
    n: &str,
    min: u32,
    r: &mut Reasons,
) -> Option<Quantity> {
    parse_field(o, p, n, r, |v| {
        let n = match v.as_i64() {
            Some(n) => n,
            None => return Err("must be a whole number".to_owned()),
        };
        if n < i64::from(min) {
            return Err(format!("{n} is below {min}"));
        }
        Quantity::new(u32::try_from(n).map_err(|_| format!("{n} is too large"))?)
    })
}

fn lines<T>(
    d: &Map<String, Value>,
    p: &str,
    r: &mut Reasons,
    mut parse_line: impl FnMut(&Map<String, Value>, &str, &mut Reasons) -> Option<T>,
) -> Option<Vec<T>> {
    let arr = field(d, p, "lines", r)?;
    let Some(arr) = arr.as_array() else {
        r.push("data.lines", "must be an array");
        return None;
    };
    if arr.is_empty() || arr.len() > MAX_LINES {
        r.push("data.lines", format!("must hold 1 to {MAX_LINES} lines"));
        return None;
    }
    let mut out = Vec::with_capacity(arr.len());
    let mut ok = true;
    for (i, line) in arr.iter().enumerate() {
        let lp = format!("data.lines[{i}]");
        match line.as_object() {
            Some(obj) => match parse_line(obj, &lp, r) {
                Some(l) => out.push(l),
                None => ok = false,
            },
            None => {
                r.push(&lp, "must be an object");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_stock_count_parses() {
        let e = parse_event(
            &json!({"id": "wms-1", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
                    "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": 40}}),
            now(),
        )
        .unwrap();
        assert_eq!(e.body.type_name(), "stock.counted");
        assert_eq!(e.id, "wms-1");
    }

    #[test]
    fn every_reason_is_reported_not_just_the_first() {
        let err = parse_event(
            &json!({"id": "", "type": "order.placed", "occurred_at": "2030-01-01T00:00:00Z",
                    "data": {"order_id": "1", "currency": "euro",
                             "lines": [{"sku": "A", "qty": -1, "unit_price": "x"}]}}),
            now(),
        )
        .unwrap_err();
        let all = err.to_string();
        for needle in [
            "id:",
            "occurred_at",
            "data.channel: missing",
            "data.currency",
            "data.lines[0].qty",
            "data.lines[0].unit_price",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
    }

    #[test]
    fn unknown_types_and_tally_internal_types_are_refused() {
        for ty in ["stock.teleported", "order.short"] {
            let err = parse_event(
                &json!({"id": "1", "type": ty, "occurred_at": "2026-12-03T10:00:00Z", "data": {}}),
                now(),
            )
            .unwrap_err();
            assert!(err.to_string().contains("type"), "{err}");
        }
    }

    #[test]
    fn canonical_json_round_trips() {
        let v = json!({"id": "o-1", "type": "order.placed", "occurred_at": "2026-12-03T10:00:00Z",
                       "data": {"order_id": "1001", "channel": "shopify", "currency": "EUR",
                                "lines": [{"sku": "A", "qty": 2, "unit_price": "19.99"}]}});
        let e = parse_event(&v, now()).unwrap();
        let back: Event = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn non_objects_are_refused_with_a_reason() {
        for v in [json!(null), json!([1]), json!("x"), json!(3)] {
            assert!(!parse_event(&v, now()).unwrap_err().is_empty());
        }
    }
}
