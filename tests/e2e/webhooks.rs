//! Platform webhooks into the running stack, shaped like each platform's
//! own payloads (tests/events/), signed as each platform signs.

mod support;

use serde_json::{Value, json};
use support::*;

const SHOP_SECRET: &str = "shopify-app-secret-0123456789";
const WOO_SECRET: &str = "woo-webhook-secret-0123456789";

fn setup(s: &Server) {
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET}),
    );
    s.put(
        "/v1/sources/shop",
        json!({"platform": "shopify", "secret": SHOP_SECRET, "channel": "shopify"}),
    );
    s.put(
        "/v1/sources/woo",
        json!({"platform": "woocommerce", "secret": WOO_SECRET, "channel": "woo", "default_location": "WH-AMS"}),
    );
    s.put(
        "/v1/locations/WH-AMS",
        json!({"aliases": ["shopify:71234567890"]}),
    );
    s.put(
        "/v1/products/TSHIRT-M",
        json!({"currency": "USD", "aliases": ["shopify:46234567890123"]}),
    );
    s.put("/v1/products/MUG-BLK", json!({"currency": "USD"}));
    for (sku, n) in [("TSHIRT-M", 10), ("MUG-BLK", 10)] {
        s.send(
            "erp",
            &json!({"id": format!("count-{sku}"), "type": "stock.counted", "occurred_at": "2026-12-03T08:00:00Z",
                    "data": {"sku": sku, "location": "WH-AMS", "on_hand": n}}),
        );
    }
    s.settle();
}

fn reserved(s: &Server, sku: &str) -> u64 {
    s.stock(sku)["reserved"].as_u64().unwrap()
}

fn shopify(s: &Server, topic: &str, webhook_id: &str, body: &[u8], secret: &str) -> StatusCode {
    let sig = tally_connectors::shopify::sign(secret, body);
    s.webhook(
        "shopify",
        "shop",
        &[
            ("X-Shopify-Topic", topic.to_owned()),
            ("X-Shopify-Hmac-Sha256", sig),
            ("X-Shopify-Webhook-Id", webhook_id.to_owned()),
            ("X-Shopify-Shop-Domain", "example.myshopify.com".to_owned()),
        ],
        body,
    )
}

fn woo(s: &Server, topic: &str, body: &[u8], secret: &str) -> StatusCode {
    let sig = tally_connectors::woocommerce::sign(secret, body);
    s.webhook(
        "woocommerce",
        "woo",
        &[
            ("X-WC-Webhook-Topic", topic.to_owned()),
            ("X-WC-Webhook-Signature", sig),
            ("X-WC-Webhook-Delivery-ID", uuid_like()),
        ],
        body,
    )
}

/// WooCommerce's Delivery-ID is new on every delivery.
fn uuid_like() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn shopify_orders_reserve_by_sku_once_and_cancellations_release() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    let order = fixture("shopify/orders_create.json");
    assert_eq!(
        shopify(
            &s,
            "orders/create",
            "wh-1",
            &order,
            "wrong-secret-0123456789"
        ),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        reserved(&s, "TSHIRT-M"),
        0,
        "a forged order changes nothing"
    );
    assert_eq!(
        shopify(&s, "orders/create", "wh-1", &order, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    // Shopify redelivers with the same webhook id: nothing changes.
    assert_eq!(
        shopify(&s, "orders/create", "wh-1", &order, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    let cancelled = fixture("shopify/orders_cancelled.json");
    assert_eq!(
        shopify(&s, "orders/cancelled", "wh-2", &cancelled, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (0, 0));
}

#[test]
fn woocommerce_orders_reserve_once_per_content_and_cancellations_release() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    let created = fixture("woocommerce/order_created.json");
    assert_eq!(
        woo(&s, "order.created", &created, "wrong-secret-0123456789"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        woo(&s, "order.created", &created, WOO_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    // Re-sent with the same content (a new Delivery-ID): nothing changes.
    assert_eq!(
        woo(&s, "order.updated", &created, WOO_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    let cancelled = fixture("woocommerce/order_updated_cancelled.json");
    assert_eq!(
        woo(&s, "order.updated", &cancelled, WOO_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (0, 0));
    // WooCommerce's unsigned ping when a webhook is saved gets exactly the
    // 200 it insists on, and leaves nothing behind.
    let ping = fixture("woocommerce/ping.txt");
    assert_eq!(s.webhook("woocommerce", "woo", &[], &ping), StatusCode::OK);
    assert!(
        s.get("/v1/quarantine")["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_unknown_sku_is_quarantined_refused_on_replay_then_applied_once_when_added() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    let mut order: Value = serde_json::from_slice(&fixture("shopify/orders_create.json")).unwrap();
    order["line_items"][1]["sku"] = json!("HAT-GRN");
    let body = serde_json::to_vec(&order).unwrap();
    assert_eq!(
        shopify(&s, "orders/create", "wh-9", &body, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    s.settle();
    let q = s.get("/v1/quarantine");
    let item = &q["items"][0];
    assert!(item["reasons"].to_string().contains("HAT-GRN"), "{q}");
    assert_eq!(
        reserved(&s, "TSHIRT-M"),
        0,
        "nothing of a quarantined order is reserved"
    );
    let id = item["id"].as_str().unwrap().to_owned();

    let (status, refused) = s.post(
        &format!("/v1/quarantine/{id}/replay"),
        json!({"actor": "ops@shop"}),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["error"]["reasons"].to_string().contains("HAT-GRN"),
        "{refused}"
    );

    s.put("/v1/products/HAT-GRN", json!({"currency": "USD"}));
    s.send(
        "erp",
        &json!({"id": "count-hat", "type": "stock.counted", "occurred_at": "2026-12-03T08:00:00Z",
                          "data": {"sku": "HAT-GRN", "location": "WH-AMS", "on_hand": 5}}),
    );
    s.settle(); // the count is in before the order is replayed
    let (status, done) = s.post(
        &format!("/v1/quarantine/{id}/replay"),
        json!({"actor": "ops@shop"}),
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "HAT-GRN")), (2, 1));
    // Gone from quarantine; a second replay finds nothing, and a redelivery
    // of the original webhook is a duplicate.
    assert_eq!(
        s.post(&format!("/v1/quarantine/{id}/replay"), json!({})).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        shopify(&s, "orders/create", "wh-9", &body, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "HAT-GRN")), (2, 1));
    let audit = s.get(&format!("/v1/audit?entity=quarantine:{id}"));
    assert_eq!(audit["records"][0]["kind"], "quarantine.replayed");
    assert_eq!(audit["records"][0]["actor"], "ops@shop");
}

#[test]
fn truncated_json_is_kept_and_oversized_bodies_are_refused() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    let order = fixture("shopify/orders_create.json");
    let truncated = &order[..order.len() / 2];
    assert_eq!(
        shopify(&s, "orders/create", "wh-t", truncated, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    s.settle();
    let q = s.get("/v1/quarantine");
    let item = &q["items"][0];
    assert_eq!(item["payload"].as_str().unwrap().as_bytes(), truncated);
    assert!(
        item["reasons"].to_string().contains("not valid JSON"),
        "{q}"
    );
    assert_eq!(item["headers"]["x-shopify-topic"], "orders/create");
    // Discarding is deliberate and audited.
    let id = item["id"].as_str().unwrap();
    let (status, _) = s.admin(
        reqwest::Method::DELETE,
        &format!("/v1/quarantine/{id}"),
        Some(json!({"actor": "ops"})),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v1/audit?entity=quarantine:{id}"))["records"][0]["kind"],
        "quarantine.discarded"
    );

    let huge = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        shopify(&s, "orders/create", "wh-h", &huge, SHOP_SECRET),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn a_non_authoritative_channel_stock_webhook_leaves_the_ledger_and_shows_as_drift() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    let level = fixture("shopify/inventory_levels_update.json"); // available: 37
    assert_eq!(
        shopify(&s, "inventory_levels/update", "wh-l", &level, SHOP_SECRET),
        StatusCode::ACCEPTED
    );
    let stock = s.stock("TSHIRT-M");
    assert_eq!(stock["on_hand"], 10, "the ledger is unchanged");
    let drift = s.get("/v1/drift");
    let item = &drift["items"][0];
    assert_eq!(
        (item["sku"].as_str(), item["channel"].as_str()),
        (Some("TSHIRT-M"), Some("shopify"))
    );
    assert_eq!(
        (
            item["channel_figure"].as_i64(),
            item["ledger_figure"].as_i64()
        ),
        (Some(37), Some(10))
    );
    assert!(item["since"].is_string());
    // When the channel agrees with the ledger again, the drift is gone.
    let mut agree: Value = serde_json::from_slice(&level).unwrap();
    agree["available"] = json!(10);
    agree["updated_at"] = json!("2026-12-03T09:00:00Z");
    shopify(
        &s,
        "inventory_levels/update",
        "wh-l2",
        &serde_json::to_vec(&agree).unwrap(),
        SHOP_SECRET,
    );
    s.settle();
    assert!(s.get("/v1/drift")["items"].as_array().unwrap().is_empty());
}

const SW_SECRET: &str = "shopware-app-secret-0123456789";

/// A Shopware fixture as sent now: Shopware signs the body with its
/// timestamp, so an old one is refused like a replay.
fn shopware_body(path: &str, age_s: i64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(path)).unwrap();
    v["timestamp"] = json!(chrono::Utc::now().timestamp() - age_s);
    serde_json::to_vec(&v).unwrap()
}

fn shopware(s: &Server, body: &[u8], secret: &str) -> StatusCode {
    let sig = tally_connectors::shopware::sign(secret, body);
    s.webhook("shopware", "sw", &[("shopware-shop-signature", sig)], body)
}

#[test]
fn shopware_orders_reserve_by_product_number_and_cancellations_release() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET}),
    );
    s.put(
        "/v1/sources/sw",
        json!({"platform": "shopware", "secret": SW_SECRET, "default_location": "WH-AMS"}),
    );
    for sku in ["TSHIRT-M", "MUG-BLK"] {
        s.put(&format!("/v1/products/{sku}"), json!({"currency": "EUR"}));
        s.send("erp", &json!({"id": format!("count-{sku}"), "type": "stock.counted", "occurred_at": "2026-12-03T08:00:00Z",
                              "data": {"sku": sku, "location": "WH-AMS", "on_hand": 10}}));
    }
    let placed = shopware_body("shopware/checkout_order_placed.json", 0);
    assert_eq!(
        shopware(&s, &placed, "wrong-secret-0123456789"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        shopware(
            &s,
            &shopware_body("shopware/checkout_order_placed.json", 600),
            SW_SECRET
        ),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        reserved(&s, "TSHIRT-M"),
        0,
        "refused deliveries change nothing"
    );
    assert_eq!(shopware(&s, &placed, SW_SECRET), StatusCode::ACCEPTED);
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    // The same event id again (Shopware's retry): applied once.
    assert_eq!(shopware(&s, &placed, SW_SECRET), StatusCode::ACCEPTED);
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (2, 1));
    let cancelled = shopware_body("shopware/order_state_cancelled.json", 0);
    assert_eq!(shopware(&s, &cancelled, SW_SECRET), StatusCode::ACCEPTED);
    assert_eq!((reserved(&s, "TSHIRT-M"), reserved(&s, "MUG-BLK")), (0, 0));
}

#[test]
fn source_secrets_and_the_admin_token_never_reach_the_log_of_a_full_run() {
    let (_dir, data) = data_dir();
    // The most an operator would turn on: every crate at debug.
    let s = Server::start_with(&data, &[("RUST_LOG", "debug")]);
    setup(&s);
    let order = fixture("shopify/orders_create.json");
    shopify(&s, "orders/create", "wh-1", &order, SHOP_SECRET);
    shopify(
        &s,
        "orders/create",
        "wh-9",
        &order,
        "wrong-secret-0123456789",
    );
    woo(
        &s,
        "order.created",
        &fixture("woocommerce/order_created.json"),
        WOO_SECRET,
    );
    // Well signed but malformed: quarantined, with its reasons logged.
    s.send(
        "erp",
        &json!({"id": "bad-1", "type": "stock.counted", "data": {"sku": "TSHIRT-M"}}),
    );
    // Refused: the wrong token, and a delivery signed with the wrong secret.
    let (status, _) = s.admin_with_token("wrong-token-0123456789", "/v1/sources/erp");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.send_raw(
        "erp",
        "{}",
        Some(tally_connectors::tally::sign(
            "not-the-secret",
            chrono::Utc::now().timestamp(),
            b"{}",
        )),
    );
    s.settle();
    for path in [
        "/v1/sources/erp",
        "/v1/sources/shop",
        "/v1/sources/woo",
        "/v1/quarantine",
        "/v1/audit?entity=source:shop",
        "/metrics",
    ] {
        s.admin(reqwest::Method::GET, path, None);
    }
    s.put("/v1/sources/shop", json!({"platform": "shopify", "secret": "rotated-shopify-secret-0123", "channel": "shopify"}));

    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("DEBUG"), "the log was written at debug level");
    assert!(log.contains("quarantined"), "the run logged what it did");
    for secret in [
        SECRET,
        SHOP_SECRET,
        WOO_SECRET,
        "rotated-shopify-secret-0123",
        TOKEN,
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log");
    }
}
