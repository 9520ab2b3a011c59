//! Shopware 6 app webhooks.
//!
//! Signed with `shopware-shop-signature`: hex HMAC-SHA256 of the raw body
//! with the app secret. The body is `{"data": {"payload": …, "event": …},
//! "source": {"url", "shopId", "appVersion", "eventId"}, "timestamp": …}`;
//! `source.eventId` is the identity, and a `timestamp` more than 300 s from
//! now is refused like a replayed request.
//!
//! | event | canonical |
//! |---|---|
//! | `checkout.order.placed` | `order.placed` (product line items by `payload.productNumber`) |
//! | `state_enter.order.state.cancelled` | `order.cancelled` |
//! | `state_enter.order.state.completed` | `order.fulfilled` (all product lines, at the source's default location) |
//! | `product.written` | `stock.counted` where the written payload carries `stock` |
//!
//! Orders are known by `orderNumber`, the number the merchant sees.
//! `product.written` is Shopware's entity-written event: it names the fields
//! that changed, and carries their values only when the app's webhook
//! includes them; a stock write without a figure is quarantined so it is
//! seen, not guessed.

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde_json::{Value, json};
use tally_core::Reasons;
use tally_core::catalog::Platform;
use tally_core::event::Event;

use crate::{Context, Error, Headers, canonical, hmac_body, id_text, reason};

pub const SIGNATURE_HEADER: &str = "shopware-shop-signature";
/// How far the body's `timestamp` may be from now.
pub const TOLERANCE_S: i64 = 300;
pub const KEPT_HEADERS: &[&str] = &["shopware-shop-signature"];

/// The header value Shopware would send for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_body::mac(secret, &[body]).finalize().into_bytes())
}

pub fn verify(
    secret: &str,
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(Error::MissingSignature("shopware-shop-signature"))?;
    let expected = hex::decode(header.trim())
        .map_err(|_| Error::MalformedSignature("shopware-shop-signature"))?;
    hmac_body::mac(secret, &[body])
        .verify_slice(&expected)
        .map_err(|_| Error::BadSignature)?;
    // The signature covers the timestamp, so an old body cannot be replayed
    // with a fresh one. A body without one is left to validation.
    let ts = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("timestamp").and_then(Value::as_i64));
    if let Some(ts) = ts {
        // Saturating: a timestamp at the edge of i64 is refused, not a panic.
        let skew = now.timestamp().saturating_sub(ts);
        if skew.unsigned_abs() > TOLERANCE_S.unsigned_abs() {
            return Err(Error::StaleSignature(skew));
        }
    }
    Ok(())
}

pub fn translate(body: &Value, ctx: &Context<'_>) -> Vec<Result<Event, Reasons>> {
    let Some(event_id) = body.pointer("/source/eventId").and_then(Value::as_str) else {
        return vec![Err(reason("source.eventId", "missing"))];
    };
    let sent = body
        .get("timestamp")
        .and_then(Value::as_i64)
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(ctx.now)
        .to_rfc3339();
    let event = body
        .pointer("/data/event")
        .and_then(Value::as_str)
        .unwrap_or("");
    let payload = body.pointer("/data/payload").unwrap_or(&Value::Null);
    let order = payload.get("order").unwrap_or(&Value::Null);
    let order_id = id_text(order.get("orderNumber")).or_else(|| id_text(order.get("id")));
    let at = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map_or(sent.clone(), str::to_owned)
    };
    let products = || -> Vec<&Value> {
        order
            .get("lineItems")
            .and_then(Value::as_array)
            .map_or(vec![], |l| {
                l.iter()
                    .filter(|i| i.get("type").and_then(Value::as_str) == Some("product"))
                    .collect()
            })
    };
    match event {
        "checkout.order.placed" => {
            let lines: Vec<Value> = products()
                .into_iter()
                .map(|l| json!({"sku": sku(l, ctx), "qty": l.get("quantity"), "unit_price": l.get("unitPrice")}))
                .collect();
            let ship_to = order.pointer("/deliveries/0/shippingOrderAddress");
            vec![canonical(
                json!({"id": event_id, "type": "order.placed",
                       "occurred_at": at(order.get("orderDateTime").or(order.get("createdAt"))),
                       "data": {"order_id": order_id, "channel": ctx.source.channel,
                                "currency": order.pointer("/currency/isoCode"), "lines": lines,
                                "total": order.get("amountTotal"), "ship_to": ship_to}}),
                Reasons::new(),
                ctx.now,
            )]
        }
        "state_enter.order.state.cancelled" => vec![canonical(
            json!({"id": event_id, "type": "order.cancelled", "occurred_at": at(order.get("updatedAt")),
                   "data": {"order_id": order_id, "reason": "cancelled in Shopware"}}),
            Reasons::new(),
            ctx.now,
        )],
        "state_enter.order.state.completed" => {
            let (location, extra) = ctx.location(Platform::Shopware, None);
            let lines: Vec<Value> = products()
                .into_iter()
                .map(|l| json!({"sku": sku(l, ctx), "qty": l.get("quantity")}))
                .collect();
            vec![canonical(
                json!({"id": event_id, "type": "order.fulfilled", "occurred_at": at(order.get("updatedAt")),
                       "data": {"order_id": order_id, "location": location, "lines": lines}}),
                extra,
                ctx.now,
            )]
        }
        "product.written" => payload
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|w| w.get("entity").and_then(Value::as_str) == Some("product"))
            .filter(|w| {
                w.get("updatedFields")
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|x| x == "stock"))
            })
            .enumerate()
            .map(|(i, w)| {
                let figure = w.pointer("/payload/stock").or(w.get("stock"));
                let Some(figure) = figure else {
                    return Err(reason(
                        "data.payload.stock",
                        "a stock write without the figure; include the product's stock in the app's webhook payload",
                    ));
                };
                let (location, extra) = ctx.location(Platform::Shopware, None);
                let product = w.get("payload").unwrap_or(w);
                canonical(
                    json!({"id": format!("{event_id}:{i}"), "type": "stock.counted", "occurred_at": sent,
                           "data": {"sku": sku(product, ctx), "location": location, "on_hand": figure}}),
                    extra,
                    ctx.now,
                )
            })
            .collect(),
        other => vec![Err(reason(
            "data.event",
            format!("event {other:?} is not one Tally handles"),
        ))],
    }
}

/// A line's or product's number, else the SKU its Shopware id is an alias
/// of, else the alias itself so the quarantine reason names it.
fn sku(v: &Value, ctx: &Context<'_>) -> String {
    if let Some(n) = v
        .pointer("/payload/productNumber")
        .or(v.get("productNumber"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    {
        return n.to_owned();
    }
    let id = id_text(v.get("productId"))
        .or_else(|| id_text(v.get("referencedId")))
        .or_else(|| id_text(v.get("primaryKey")))
        .unwrap_or_default();
    ctx.mappings
        .sku(Platform::Shopware, &id)
        .map_or_else(|| format!("shopware:{id}"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{headers, mappings, source};
    use tally_core::event::EventBody;

    const PLACED: &str = include_str!("../../../tests/events/shopware/checkout_order_placed.json");
    const CANCELLED: &str =
        include_str!("../../../tests/events/shopware/order_state_cancelled.json");
    const COMPLETED: &str =
        include_str!("../../../tests/events/shopware/order_state_completed.json");
    const WRITTEN: &str = include_str!("../../../tests/events/shopware/product_written.json");

    fn run(body: &str) -> Vec<Result<Event, Reasons>> {
        let src = source(Platform::Shopware, Some("WH-AMS"));
        let m = mappings(&[], &[]);
        let ctx = Context {
            source: &src,
            mappings: &m,
            now: Utc::now(),
        };
        translate(&serde_json::from_str(body).unwrap(), &ctx)
    }

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    #[test]
    fn the_signature_is_hex_hmac_and_an_old_timestamp_is_refused() {
        let ts = serde_json::from_str::<Value>(PLACED).unwrap()["timestamp"]
            .as_i64()
            .unwrap();
        let h = headers(&[(
            SIGNATURE_HEADER,
            &sign("app-secret-0123456789", PLACED.as_bytes()),
        )]);
        assert_eq!(
            verify("app-secret-0123456789", &h, PLACED.as_bytes(), at(ts + 10)),
            Ok(())
        );
        assert_eq!(
            verify("another-secret-012345", &h, PLACED.as_bytes(), at(ts)),
            Err(Error::BadSignature)
        );
        assert!(matches!(
            verify("app-secret-0123456789", &h, PLACED.as_bytes(), at(ts + 301)),
            Err(Error::StaleSignature(301))
        ));
    }

    #[test]
    fn a_signed_timestamp_at_the_edge_of_i64_is_stale_not_a_panic() {
        let body = format!(r#"{{"timestamp": {}}}"#, i64::MIN);
        let h = headers(&[(
            SIGNATURE_HEADER,
            &sign("app-secret-0123456789", body.as_bytes()),
        )]);
        assert!(matches!(
            verify("app-secret-0123456789", &h, body.as_bytes(), at(0)),
            Err(Error::StaleSignature(_))
        ));
    }

    #[test]
    fn an_order_becomes_order_placed_by_product_number() {
        let out = run(PLACED);
        let EventBody::OrderPlaced(o) = &out[0].as_ref().unwrap().body else {
            panic!("{out:?}")
        };
        assert_eq!(o.order_id.as_str(), "10042");
        assert_eq!(o.currency.as_str(), "EUR");
        let skus: Vec<_> = o
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.qty.get()))
            .collect();
        assert_eq!(skus, [("TSHIRT-M", 2), ("MUG-BLK", 1)]);
    }

    #[test]
    fn state_changes_cancel_and_fulfil() {
        assert!(matches!(
            run(CANCELLED)[0].as_ref().unwrap().body,
            EventBody::OrderCancelled { .. }
        ));
        let done = run(COMPLETED);
        let EventBody::OrderFulfilled {
            location, lines, ..
        } = &done[0].as_ref().unwrap().body
        else {
            panic!("{done:?}")
        };
        assert_eq!(location.as_str(), "WH-AMS");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn a_stock_write_without_its_figure_is_refused_with_a_reason_and_with_it_is_a_count() {
        let out = run(WRITTEN);
        assert!(out[0].as_ref().unwrap_err().to_string().contains("stock"));
        let mut with: Value = serde_json::from_str(WRITTEN).unwrap();
        with["data"]["payload"][0]["payload"] = json!({"productNumber": "MUG-BLK", "stock": 12});
        let out = run(&with.to_string());
        let EventBody::StockCounted { sku, on_hand, .. } = &out[0].as_ref().unwrap().body else {
            panic!("{out:?}")
        };
        assert_eq!((sku.as_str(), on_hand.get()), ("MUG-BLK", 12));
    }
}
