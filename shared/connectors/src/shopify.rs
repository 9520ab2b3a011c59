//! Shopify webhooks.
//!
//! Signed with `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body
//! with the app's secret. Identity: `X-Shopify-Event-Id`, else
//! `X-Shopify-Webhook-Id` (both stable across Shopify's retries, which
//! resend the original body for up to four hours). Topics handled:
//!
//! | topic | canonical |
//! |---|---|
//! | `orders/create` | `order.placed` |
//! | `orders/cancelled` | `order.cancelled` |
//! | `orders/fulfilled` | one `order.fulfilled` per fulfillment |
//! | `refunds/create` | `stock.adjusted` (+qty) per line restocked as a return |
//! | `inventory_levels/update` | `stock.counted` (`available` at the location) |
//!
//! Lines map by `sku`; a line without one maps through a product alias
//! `shopify:<variant_id>`, an inventory level through `shopify:<inventory_item_id>`,
//! a location through `shopify:<location_id>`.

use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::catalog::Platform;
use tally_core::event::Event;
use tally_core::{LocationId, Reasons};

use crate::{Context, Error, Headers, canonical, hmac_body, id_text, reason, unreadable};

pub const KEPT_HEADERS: &[&str] = &[
    "x-shopify-topic",
    "x-shopify-event-id",
    "x-shopify-webhook-id",
    "x-shopify-triggered-at",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
];

pub fn verify(secret: &str, headers: &Headers, body: &[u8]) -> Result<(), Error> {
    hmac_body::verify(
        "x-shopify-hmac-sha256",
        "X-Shopify-Hmac-Sha256",
        secret,
        headers,
        body,
    )
}

/// The header value Shopify would send for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hmac_body::sign(secret, body)
}

pub fn translate(headers: &Headers, body: &str, ctx: &Context<'_>) -> Vec<Result<Event, Reasons>> {
    let Some(event_id) = headers
        .get("x-shopify-event-id")
        .or_else(|| headers.get("x-shopify-webhook-id"))
        .filter(|s| !s.is_empty())
    else {
        return vec![Err(reason(
            "headers",
            "missing X-Shopify-Event-Id and X-Shopify-Webhook-Id",
        ))];
    };
    let topic = headers.get("x-shopify-topic").map_or("", String::as_str);
    // When the payload gives no time of its own, the time Shopify fired.
    let fired = headers
        .get("x-shopify-triggered-at")
        .cloned()
        .unwrap_or_else(|| ctx.now.to_rfc3339());
    if topic == "orders/create" {
        // The busiest topic and the biggest body: read only the fields
        // Tally uses, skipping the rest of the order as it is parsed.
        return vec![
            serde_json::from_str::<NewOrder>(body)
                .map_err(unreadable)
                .and_then(|order| order_placed(order, event_id, fired, ctx)),
        ];
    }
    let body: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return vec![Err(unreadable(e))],
    };
    let at = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map_or(fired.clone(), str::to_owned)
    };
    let order_id = id_text(body.get("id"));
    match topic {
        "orders/cancelled" => vec![canonical(
            json!({"id": event_id, "type": "order.cancelled", "occurred_at": at(body.get("cancelled_at")),
                   "data": {"order_id": order_id, "reason": body.get("cancel_reason")}}),
            Reasons::new(),
            ctx.now,
        )],
        "orders/fulfilled" => {
            let fulfillments = items(&body, "fulfillments");
            if fulfillments.is_empty() {
                return vec![Err(reason("fulfillments", "orders/fulfilled names no fulfillment"))];
            }
            fulfillments
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let (location, extra) = location(f.get("location_id"), ctx);
                    let lines: Vec<Value> = items(f, "line_items")
                        .iter()
                        .map(|l| json!({"sku": line_sku(l.get("sku"), l.get("variant_id"), ctx), "qty": l.get("quantity")}))
                        .collect();
                    canonical(
                        json!({"id": format!("{event_id}:{i}"), "type": "order.fulfilled",
                               "occurred_at": at(f.get("created_at").or(body.get("updated_at"))),
                               "data": {"order_id": order_id, "location": location, "lines": lines}}),
                        extra,
                        ctx.now,
                    )
                })
                .collect()
        }
        "refunds/create" => items(&body, "refund_line_items")
            .iter()
            .enumerate()
            // Only returns put units back on the shelf; a "cancel" restock
            // is an unshipped unit, which the cancellation already released.
            .filter(|(_, l)| l.get("restock_type").and_then(Value::as_str) == Some("return"))
            .map(|(i, l)| {
                let (location, extra) = location(l.get("location_id"), ctx);
                let item = l.get("line_item").unwrap_or(&Value::Null);
                canonical(
                    json!({"id": format!("{event_id}:{i}"), "type": "stock.adjusted",
                           "occurred_at": at(body.get("created_at")),
                           "data": {"sku": line_sku(item.get("sku"), item.get("variant_id"), ctx),
                                    "location": location, "delta": l.get("quantity"),
                                    "reason": format!("shopify refund {} of order {}",
                                                      id_text(body.get("id")).unwrap_or_default(),
                                                      id_text(body.get("order_id")).unwrap_or_default())}}),
                    extra,
                    ctx.now,
                )
            })
            .collect(),
        "inventory_levels/update" => {
            let (location, extra) = location(body.get("location_id"), ctx);
            let item = id_text(body.get("inventory_item_id")).unwrap_or_default();
            let sku = ctx
                .mappings
                .sku(Platform::Shopify, &item)
                .map_or_else(|| format!("shopify:{item}"), |s| s.to_string());
            vec![canonical(
                json!({"id": event_id, "type": "stock.counted", "occurred_at": at(body.get("updated_at")),
                       "data": {"sku": sku, "location": location, "on_hand": body.get("available")}}),
                extra,
                ctx.now,
            )]
        }
        other => vec![Err(reason(
            "x-shopify-topic",
            format!("topic {other:?} is not one Tally handles"),
        ))],
    }
}

/// What Tally reads of an `orders/create` payload. Values stay loose
/// (`Value`) so that a wrong one is reported by the canonical validation,
/// with every other reason, rather than failing the parse.
#[derive(Deserialize)]
struct NewOrder {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    created_at: Value,
    #[serde(default)]
    currency: Value,
    #[serde(default)]
    total_price: Value,
    #[serde(default)]
    shipping_address: Value,
    #[serde(default)]
    line_items: Option<Vec<NewOrderLine>>,
}

#[derive(Deserialize)]
struct NewOrderLine {
    #[serde(default)]
    sku: Value,
    #[serde(default)]
    variant_id: Value,
    #[serde(default)]
    quantity: Value,
    #[serde(default)]
    price: Value,
}

fn order_placed(
    order: NewOrder,
    event_id: &str,
    fired: String,
    ctx: &Context<'_>,
) -> Result<Event, Reasons> {
    let lines = order
        .line_items
        .unwrap_or_default()
        .into_iter()
        .map(|l| {
            object([
                ("sku", line_sku(Some(&l.sku), Some(&l.variant_id), ctx)),
                ("qty", l.quantity),
                ("unit_price", l.price),
            ])
        })
        .collect();
    let occurred_at = match order.created_at {
        Value::String(s) => s,
        _ => fired,
    };
    let data = object([
        (
            "order_id",
            id_text(Some(&order.id)).map_or(Value::Null, Value::String),
        ),
        (
            "channel",
            Value::String(ctx.source.channel.as_str().to_owned()),
        ),
        ("currency", order.currency),
        ("lines", Value::Array(lines)),
        ("total", order.total_price),
        ("ship_to", order.shipping_address),
    ]);
    canonical(
        object([
            ("id", Value::String(event_id.to_owned())),
            ("type", Value::String("order.placed".to_owned())),
            ("occurred_at", Value::String(occurred_at)),
            ("data", data),
        ]),
        Reasons::new(),
        ctx.now,
    )
}

/// A JSON object from its fields, moved in rather than copied as `json!`
/// would.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A line's SKU, else the SKU its variant is an alias of, else the alias
/// itself, so the quarantine reason names what to configure.
fn line_sku(sku: Option<&Value>, variant_id: Option<&Value>, ctx: &Context<'_>) -> Value {
    if let Some(sku) = sku.and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
        return json!(sku);
    }
    match id_text(variant_id) {
        Some(v) => json!(
            ctx.mappings
                .sku(Platform::Shopify, &v)
                .map_or_else(|| format!("shopify:{v}"), |s| s.to_string())
        ),
        None => Value::Null,
    }
}

/// A Shopify location id through the location aliases.
fn location(id: Option<&Value>, ctx: &Context<'_>) -> (Option<LocationId>, Reasons) {
    ctx.location(Platform::Shopify, id_text(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{headers, mappings, source};
    use tally_core::event::EventBody;

    const ORDER: &str = include_str!("../../../tests/events/shopify/orders_create.json");
    const CANCELLED: &str = include_str!("../../../tests/events/shopify/orders_cancelled.json");
    const FULFILLED: &str = include_str!("../../../tests/events/shopify/orders_fulfilled.json");
    const REFUND: &str = include_str!("../../../tests/events/shopify/refunds_create.json");
    const LEVEL: &str = include_str!("../../../tests/events/shopify/inventory_levels_update.json");

    fn run(topic: &str, body: &str, m: &crate::Mappings) -> Vec<Result<Event, Reasons>> {
        let src = source(Platform::Shopify, None);
        let ctx = Context {
            source: &src,
            mappings: m,
            now: chrono::Utc::now(),
        };
        let h = headers(&[("x-shopify-topic", topic), ("x-shopify-webhook-id", "wh-1")]);
        translate(&h, body, &ctx)
    }

    #[test]
    fn the_signature_is_base64_hmac_of_the_raw_body() {
        let sig = sign("secret-0123456789", ORDER.as_bytes());
        let h = headers(&[("x-shopify-hmac-sha256", &sig)]);
        assert_eq!(verify("secret-0123456789", &h, ORDER.as_bytes()), Ok(()));
        assert_eq!(
            verify("secret-0123456789", &h, CANCELLED.as_bytes()),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn an_order_becomes_order_placed_by_sku() {
        let out = run("orders/create", ORDER, &mappings(&[], &[]));
        let EventBody::OrderPlaced(o) = &out[0].as_ref().unwrap().body else {
            panic!("{out:?}")
        };
        assert_eq!(o.order_id.as_str(), "5912345678901");
        assert_eq!(o.currency.as_str(), "USD");
        let lines: Vec<_> = o
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.qty.get(), l.unit_price.to_string()))
            .collect();
        assert_eq!(
            lines,
            [
                ("TSHIRT-M", 2, "25.00".to_owned()),
                ("MUG-BLK", 1, "14.50".to_owned())
            ]
        );
        assert_eq!(out[0].as_ref().unwrap().id, "wh-1");
    }

    #[test]
    fn a_cancellation_and_a_fulfillment_translate() {
        let m = mappings(&[], &[("WH-AMS", "shopify:71234567890")]);
        let c = run("orders/cancelled", CANCELLED, &m);
        assert!(matches!(
            c[0].as_ref().unwrap().body,
            EventBody::OrderCancelled { .. }
        ));
        let f = run("orders/fulfilled", FULFILLED, &m);
        let EventBody::OrderFulfilled {
            location, lines, ..
        } = &f[0].as_ref().unwrap().body
        else {
            panic!("{f:?}")
        };
        assert_eq!(location.as_str(), "WH-AMS");
        assert!(!lines.is_empty());
    }

    #[test]
    fn an_unmapped_location_is_a_reason_naming_the_alias() {
        let f = run("orders/fulfilled", FULFILLED, &mappings(&[], &[]));
        let err = f[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("shopify:71234567890"), "{err}");
    }

    #[test]
    fn returned_units_are_restocked_and_an_inventory_level_is_a_count() {
        let m = mappings(
            &[("TSHIRT-M", "shopify:46234567890123")],
            &[("WH-AMS", "shopify:71234567890")],
        );
        let r = run("refunds/create", REFUND, &m);
        assert!(!r.is_empty());
        for e in &r {
            let EventBody::StockAdjusted { delta, .. } = e.as_ref().unwrap().body else {
                panic!("{r:?}")
            };
            assert!(delta > 0);
        }
        let l = run("inventory_levels/update", LEVEL, &m);
        let EventBody::StockCounted { sku, on_hand, .. } = &l[0].as_ref().unwrap().body else {
            panic!("{l:?}")
        };
        assert_eq!((sku.as_str(), on_hand.get()), ("TSHIRT-M", 37));
    }

    #[test]
    fn an_order_of_the_wrong_shape_or_with_wrong_values_says_why() {
        let m = mappings(&[], &[]);
        let shape = run(
            "orders/create",
            r#"{"id": 1, "line_items": "two shirts"}"#,
            &m,
        );
        let why = shape[0].as_ref().unwrap_err().to_string();
        assert!(why.starts_with("body: does not have the shape"), "{why}");
        let values = run(
            "orders/create",
            r#"{"id": 1, "currency": "USD", "created_at": "2025-03-14T10:21:07-04:00",
                "line_items": [{"sku": "TSHIRT-M", "quantity": "two", "price": "25.00"}, {"quantity": 1}]}"#,
            &m,
        );
        let why = values[0].as_ref().unwrap_err().to_string();
        for reason in [
            "data.lines[0].qty",
            "data.lines[1].sku",
            "data.lines[1].unit_price",
        ] {
            assert!(why.contains(reason), "{reason} in {why}");
        }
        let not_json = run("orders/create", "{\"id\": ", &m);
        let why = not_json[0].as_ref().unwrap_err().to_string();
        assert!(why.starts_with("body: is not valid JSON"), "{why}");
    }

    #[test]
    fn an_unknown_topic_is_a_reason() {
        let out = run("carts/create", ORDER, &mappings(&[], &[]));
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("carts/create")
        );
    }
}
