//! WooCommerce webhooks (REST API v3 payloads).
//!
//! Signed with `X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the raw body
//! with the webhook's secret. WooCommerce never retries and disables a
//! webhook after repeated failures, and each delivery carries a new
//! Delivery-ID with the resource's *current* state, so identity is the
//! resource id plus a digest of the content that matters: a re-sent update
//! with the same content is the same event.
//!
//! | topic | status | canonical |
//! |---|---|---|
//! | `order.created`, `order.updated` | pending, processing, on-hold | `order.placed` |
//! | | cancelled, refunded | `order.cancelled` |
//! | | completed | `order.fulfilled` (all lines, at the source's default location) |
//! | | failed | `order.payment_failed` |
//! | | checkout-draft, trash | nothing |
//! | `product.updated` | managed stock | `stock.counted` (`stock_quantity` at the default location) |
//!
//! Times are `*_gmt` fields, which WooCommerce sends without a zone.

use serde_json::{Value, json};
use tally_core::Reasons;
use tally_core::catalog::Platform;
use tally_core::event::Event;

use crate::{Context, Error, Headers, canonical, digest, hmac_body, id_text, reason};

pub const KEPT_HEADERS: &[&str] = &[
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
    "x-wc-webhook-source",
];

pub fn verify(secret: &str, headers: &Headers, body: &[u8]) -> Result<(), Error> {
    hmac_body::verify(
        "x-wc-webhook-signature",
        "X-WC-Webhook-Signature",
        secret,
        headers,
        body,
    )
}

/// The header value WooCommerce would send for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hmac_body::sign(secret, body)
}

/// WooCommerce tests a new webhook's URL with an unsigned, form-encoded
/// `webhook_id=<n>` and refuses to save the webhook unless it gets a 2xx.
/// It carries no data, so answering it lets nothing in.
pub fn is_ping(headers: &Headers, body: &[u8]) -> bool {
    !headers.contains_key("x-wc-webhook-signature")
        && std::str::from_utf8(body)
            .ok()
            .and_then(|b| b.strip_prefix("webhook_id="))
            .is_some_and(|id| {
                !id.is_empty() && id.len() <= 20 && id.bytes().all(|c| c.is_ascii_digit())
            })
}

fn gmt(v: Option<&Value>, fallback: &str) -> String {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() && !s.ends_with('Z') && !s.contains('+') => format!("{s}Z"),
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => fallback.to_owned(),
    }
}

pub fn translate(
    headers: &Headers,
    body: &Value,
    ctx: &Context<'_>,
) -> Vec<Result<Event, Reasons>> {
    let topic = headers.get("x-wc-webhook-topic").map_or("", String::as_str);
    let now = ctx.now.to_rfc3339();
    let Some(id) = id_text(body.get("id")) else {
        return vec![Err(reason("id", "missing the resource id"))];
    };
    match topic {
        "order.created" | "order.updated" => order(&id, body, ctx, &now),
        "product.updated" | "product.created" => {
            let managed = body
                .get("manage_stock")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let qty = body.get("stock_quantity").filter(|v| !v.is_null());
            let Some(qty) = qty.filter(|_| managed) else {
                // Stock not managed in WooCommerce: nothing to count.
                return vec![];
            };
            let modified = gmt(body.get("date_modified_gmt"), &now);
            let (location, extra) = ctx.location(Platform::Woocommerce, None);
            vec![canonical(
                json!({"id": format!("woo-product:{id}:{}", digest(&[&qty.to_string(), &modified])),
                       "type": "stock.counted", "occurred_at": modified,
                       "data": {"sku": sku(body, ctx), "location": location, "on_hand": qty}}),
                extra,
                ctx.now,
            )]
        }
        other => vec![Err(reason(
            "x-wc-webhook-topic",
            format!("topic {other:?} is not one Tally handles"),
        ))],
    }
}

fn order(id: &str, body: &Value, ctx: &Context<'_>, now: &str) -> Vec<Result<Event, Reasons>> {
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let items = body
        .get("line_items")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let modified = gmt(body.get("date_modified_gmt"), now);
    // What identifies this state of the order: its status and its lines.
    let content: Vec<String> = items
        .iter()
        .map(|l| {
            format!(
                "{}x{}",
                sku(l, ctx),
                l.get("quantity").unwrap_or(&Value::Null)
            )
        })
        .collect();
    let ident = |ty: &str| {
        format!(
            "woo-order:{id}:{ty}:{}",
            digest(&[status, &content.join(",")])
        )
    };
    let event = |ty: &str, at: String, data: Value, extra: Reasons| {
        canonical(
            json!({"id": ident(ty), "type": ty, "occurred_at": at, "data": data}),
            extra,
            ctx.now,
        )
    };
    match status {
        "pending" | "processing" | "on-hold" => {
            let lines: Vec<Value> = items
                .iter()
                .map(|l| json!({"sku": sku(l, ctx), "qty": l.get("quantity"), "unit_price": l.get("price")}))
                .collect();
            vec![event(
                "order.placed",
                gmt(body.get("date_created_gmt"), now),
                json!({"order_id": id, "channel": ctx.source.channel, "currency": body.get("currency"),
                       "lines": lines, "total": body.get("total"), "ship_to": body.get("shipping")}),
                Reasons::new(),
            )]
        }
        "cancelled" | "refunded" => vec![event(
            "order.cancelled",
            modified,
            json!({"order_id": id, "reason": status}),
            Reasons::new(),
        )],
        "completed" => {
            let (location, extra) = ctx.location(Platform::Woocommerce, None);
            let lines: Vec<Value> = items
                .iter()
                .map(|l| json!({"sku": sku(l, ctx), "qty": l.get("quantity")}))
                .collect();
            vec![event(
                "order.fulfilled",
                gmt(body.get("date_completed_gmt"), &modified),
                json!({"order_id": id, "location": location, "lines": lines}),
                extra,
            )]
        }
        "failed" => vec![event(
            "order.payment_failed",
            modified,
            json!({"order_id": id}),
            Reasons::new(),
        )],
        "checkout-draft" | "trash" => vec![],
        other => vec![Err(reason(
            "status",
            format!("order status {other:?} is not one Tally knows; map it or replay once handled"),
        ))],
    }
}

/// A product's or line's SKU, else the SKU its variation or product id is an
/// alias of, else the alias itself so the quarantine reason names it.
fn sku(v: &Value, ctx: &Context<'_>) -> String {
    if let Some(s) = v
        .get("sku")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    {
        return s.to_owned();
    }
    let id = id_text(v.get("variation_id").filter(|x| x.as_u64() != Some(0)))
        .or_else(|| id_text(v.get("product_id")))
        .or_else(|| id_text(v.get("id")))
        .unwrap_or_default();
    ctx.mappings
        .sku(Platform::Woocommerce, &id)
        .map_or_else(|| format!("woocommerce:{id}"), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{headers, mappings, source};
    use tally_core::event::EventBody;

    const CREATED: &str = include_str!("../../../tests/events/woocommerce/order_created.json");
    const CANCELLED: &str =
        include_str!("../../../tests/events/woocommerce/order_updated_cancelled.json");
    const COMPLETED: &str =
        include_str!("../../../tests/events/woocommerce/order_updated_completed.json");
    const REFUNDED: &str =
        include_str!("../../../tests/events/woocommerce/order_updated_refunded.json");
    const PRODUCT: &str = include_str!("../../../tests/events/woocommerce/product_updated.json");

    fn run(topic: &str, body: &str) -> Vec<Result<Event, Reasons>> {
        let src = source(Platform::Woocommerce, Some("WH-AMS"));
        let m = mappings(&[], &[]);
        let ctx = Context {
            source: &src,
            mappings: &m,
            now: chrono::Utc::now(),
        };
        translate(
            &headers(&[("x-wc-webhook-topic", topic)]),
            &serde_json::from_str(body).unwrap(),
            &ctx,
        )
    }

    #[test]
    fn the_signature_is_base64_hmac_and_the_ping_is_recognised() {
        let sig = sign("secret-0123456789", CREATED.as_bytes());
        assert_eq!(
            verify(
                "secret-0123456789",
                &headers(&[("x-wc-webhook-signature", &sig)]),
                CREATED.as_bytes()
            ),
            Ok(())
        );
        assert!(is_ping(&Headers::new(), b"webhook_id=15"));
        assert!(!is_ping(&Headers::new(), b"webhook_id=15&x=1"));
        assert!(!is_ping(
            &headers(&[("x-wc-webhook-signature", "x")]),
            b"webhook_id=15"
        ));
    }

    #[test]
    fn status_transitions_become_the_matching_events() {
        let placed = run("order.created", CREATED);
        let EventBody::OrderPlaced(o) = &placed[0].as_ref().unwrap().body else {
            panic!("{placed:?}")
        };
        assert_eq!(o.lines[0].unit_price.to_string(), "25");
        assert_eq!(o.lines[1].unit_price.to_string(), "14.5");
        assert!(matches!(
            run("order.updated", CANCELLED)[0].as_ref().unwrap().body,
            EventBody::OrderCancelled { .. }
        ));
        assert!(matches!(
            run("order.updated", REFUNDED)[0].as_ref().unwrap().body,
            EventBody::OrderCancelled { .. }
        ));
        let done = run("order.updated", COMPLETED);
        let EventBody::OrderFulfilled { location, .. } = &done[0].as_ref().unwrap().body else {
            panic!("{done:?}")
        };
        assert_eq!(location.as_str(), "WH-AMS");
    }

    #[test]
    fn the_same_content_is_the_same_event_and_new_content_a_new_one() {
        let a = run("order.created", CREATED)[0]
            .as_ref()
            .unwrap()
            .id
            .clone();
        let b = run("order.updated", CREATED)[0]
            .as_ref()
            .unwrap()
            .id
            .clone();
        assert_eq!(a, b, "created and a same-content update are one event");
        let mut changed: Value = serde_json::from_str(CREATED).unwrap();
        changed["line_items"][0]["quantity"] = json!(3);
        let src = source(Platform::Woocommerce, Some("WH-AMS"));
        let m = mappings(&[], &[]);
        let ctx = Context {
            source: &src,
            mappings: &m,
            now: chrono::Utc::now(),
        };
        let c = translate(
            &headers(&[("x-wc-webhook-topic", "order.updated")]),
            &changed,
            &ctx,
        );
        assert_ne!(c[0].as_ref().unwrap().id, a);
    }

    #[test]
    fn a_product_update_counts_its_stock_at_the_default_location() {
        let out = run("product.updated", PRODUCT);
        let EventBody::StockCounted {
            sku,
            location,
            on_hand,
        } = &out[0].as_ref().unwrap().body
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            (sku.as_str(), location.as_str(), on_hand.get()),
            ("MUG-BLK", "WH-AMS", 41)
        );
    }
}
