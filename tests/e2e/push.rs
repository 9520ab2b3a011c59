//! Closing the loop through `tally serve`: available-to-sell, prices and
//! approved order commands pushed to local stand-ins of Shopify, WooCommerce
//! and Shopware, coalesced, retried safely, and visible when they fail.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::platforms::{
    Fake, Fault, Platform, SHOPIFY_TOKEN, SHOPWARE_ID, SHOPWARE_SECRET, WOO_KEY, WOO_SECRET,
};
use support::*;

const SKU: &str = "TSHIRT-M";
const SHOPIFY_ITEM: &str = "gid://shopify/InventoryItem/808950810";
const SHOPIFY_VARIANT: &str = "gid://shopify/ProductVariant/49148385";
const WOO_PRODUCT: &str = "93";
const SHOPWARE_PRODUCT: &str = "0190a6f3c2b87d1e9b6a4f5c3d2e1f00";

struct Stack {
    s: Server,
    shop: Fake,
    woo: Fake,
    sw: Fake,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
}

/// tally serve with three pushing channels and one product sold on all of
/// them (WooCommerce keeps a buffer of 2), after the first full sync.
fn stack(on_hand: u32) -> Stack {
    stack_with(on_hand, "300")
}

/// `quiet_ms`: how long the push step waits for a burst to end.
fn stack_with(on_hand: u32, quiet_ms: &str) -> Stack {
    let (dir, data) = data_dir();
    let (shop, woo, sw) = (
        Fake::start(Platform::Shopify),
        Fake::start(Platform::Woo),
        Fake::start(Platform::Shopware),
    );
    let s = Server::start_with(
        &data,
        &[
            ("TALLY_PUSH_QUIET_MS", quiet_ms),
            ("TALLY_PUSH_BACKOFF_MS", "100"),
            ("TALLY_PUSH_TIMEOUT_MS", "1000"),
            ("RUST_LOG", "debug"),
        ],
    );
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET, "channel": "erp"}),
    );
    s.put(
        "/v1/sources/shop",
        json!({"platform": "shopify", "secret": "shopify-webhook-secret-0123", "channel": "shop",
               "api": {"base_url": shop.base, "access_token": SHOPIFY_TOKEN, "location_id": "655441491"}}),
    );
    s.put(
        "/v1/sources/woo",
        json!({"platform": "woocommerce", "secret": "woo-webhook-secret-0123", "channel": "woo",
               "api": {"base_url": woo.base, "consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET}}),
    );
    s.put(
        "/v1/sources/sw",
        json!({"platform": "shopware", "secret": "shopware-webhook-secret-0123", "channel": "sw",
               "api": {"base_url": sw.base, "client_id": SHOPWARE_ID, "client_secret": SHOPWARE_SECRET}}),
    );
    s.put(
        &format!("/v1/products/{SKU}"),
        json!({"currency": "EUR", "unit_cost": "10.00", "price": "19.99", "channel_buffers": {"woo": 2},
               "channel_refs": {"shop": {"inventory_item_id": "808950810", "variant_id": "49148385", "product_id": "632910392"},
                                "woo": {"product_id": WOO_PRODUCT},
                                "sw": {"product_id": SHOPWARE_PRODUCT}}}),
    );
    s.send(
        "erp",
        &json!([{"id": "c0", "type": "stock.counted", "occurred_at": chrono::Utc::now().to_rfc3339(),
                 "data": {"sku": SKU, "location": "WH-AMS", "on_hand": on_hand}}]),
    );
    let st = Stack {
        s,
        shop,
        woo,
        sw,
        _dir: dir,
        data,
    };
    st.wait_for_figures(on_hand as i64, "first sync");
    st
}

impl Stack {
    fn figures(&self) -> (Option<i64>, Option<i64>, Option<i64>) {
        (
            self.shop.stock_of(SHOPIFY_ITEM),
            self.woo.stock_of(WOO_PRODUCT),
            self.sw.stock_of(SHOPWARE_PRODUCT),
        )
    }

    /// Waits until every channel shows `available` (WooCommerce 2 fewer)
    /// and Tally says nothing is pending.
    fn wait_for_figures(&self, available: i64, what: &str) {
        let want = (
            Some(available),
            Some((available - 2).max(0)),
            Some(available),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.s.settle();
            let pending: u64 = self
                .channels()
                .iter()
                .map(|c| c["pending"].as_u64().unwrap())
                .sum();
            if self.figures() == want && pending == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: channels show {:?}, want {want:?}; {:?}",
                self.figures(),
                self.channels()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn channels(&self) -> Vec<Value> {
        self.s.get("/v1/channels")["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn channel(&self, name: &str) -> Value {
        self.channels()
            .into_iter()
            .find(|c| c["channel"] == name)
            .unwrap()
    }

    fn forget_calls(&self) {
        for f in [&self.shop, &self.woo, &self.sw] {
            f.with(|s| s.calls.clear());
        }
    }
}

fn orders(from: u32, n: u32, channel: &str) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"id": format!("o-{i}"), "type": "order.placed", "occurred_at": "2026-12-03T10:05:00Z",
                            "data": {"order_id": i.to_string(), "channel": channel, "currency": "EUR", "total": "19.99",
                                     "lines": [{"sku": SKU, "qty": 1, "unit_price": "19.99"}]}}))
            .collect(),
    )
}

#[test]
fn a_burst_of_reservations_is_one_push_per_channel_with_the_final_figure() {
    // A second of quiet ends a burst (at most ten seconds in all), so the
    // test holds on a loaded machine too.
    let st = stack_with(100, "1000");
    // The first sync set stock and price everywhere, once.
    assert_eq!(st.shop.price_of(SHOPIFY_VARIANT).as_deref(), Some("19.99"));
    assert_eq!(st.woo.price_of(WOO_PRODUCT).as_deref(), Some("19.99"));
    assert_eq!(st.sw.price_of(SHOPWARE_PRODUCT).as_deref(), Some("19.99"));
    st.forget_calls();

    assert_eq!(
        st.s.send("erp", &orders(1, 50, "erp")),
        StatusCode::ACCEPTED
    );
    st.wait_for_figures(50, "after 50 reservations");
    for f in [&st.shop, &st.woo, &st.sw] {
        let writes = f.calls(f.stock_op());
        assert_eq!(
            writes.len(),
            1,
            "{:?}: one push for the burst, got {writes:#?}",
            f.platform
        );
    }
    // Each channel's figure is the ledger's available less its buffer.
    let stock = st.s.stock(SKU);
    assert_eq!(stock["available"], 50);
    assert_eq!(
        stock["channels"]["shop"],
        st.shop.stock_of(SHOPIFY_ITEM).unwrap()
    );
    assert_eq!(
        stock["channels"]["woo"],
        st.woo.stock_of(WOO_PRODUCT).unwrap()
    );
    assert_eq!(stock["channels"]["woo"], 48);
    // The Shopify write was a compare-and-set against what Tally had pushed.
    let set =
        &st.shop.calls("inventorySetQuantities")[0].body["variables"]["input"]["quantities"][0];
    assert_eq!(
        (set["compareQuantity"].as_i64(), set["quantity"].as_i64()),
        (Some(100), Some(50))
    );

    let shop = st.channel("shop");
    assert_eq!(shop["push"], "enabled");
    assert_eq!(shop["failures"], 0);
    assert!(shop["last_push_at"].is_string());
    assert!(shop["lag_ms"].as_i64().unwrap() >= 0, "{shop}");
    // The ERP channel has no credentials: receive-only, never pushed to.
    assert_eq!(st.channel("erp")["push"], "receive_only");
    // Pushes are audited with what was sent.
    let audit = st.s.get("/v1/audit?entity=channel:woo")["records"].clone();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "channel.pushed" && r["after"]["available"][SKU] == 48),
        "{audit}"
    );
}

#[test]
fn a_price_change_reaches_every_channel_of_the_product() {
    let st = stack(10);
    // Pricing moves the price: undercut a competitor, within a 10 % step.
    let mut product = st.s.get(&format!("/v1/products/{SKU}"));
    product["policy"] = json!({"min_margin_pct": "20", "competitor_strategy": "undercut", "undercut_by": "0.50",
                               "max_step_pct": "10", "min_interval_s": 0, "max_stock_age_s": 3600});
    st.s.put(&format!("/v1/products/{SKU}"), product);
    st.wait_for_figures(10, "after the policy");
    st.forget_calls();
    st.s.send(
        "erp",
        &json!([{"id": "cmp-1", "type": "price.competitor_observed", "occurred_at": chrono::Utc::now().to_rfc3339(),
                 "data": {"sku": SKU, "competitor": "rival.example", "price": "15.00", "currency": "EUR"}}]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let price = loop {
        st.s.settle();
        let v = st.s.get(&format!("/v1/prices/{SKU}"));
        if v["price"] != "19.99" {
            break v["price"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "pricing never moved: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Shopware's prices are JSON numbers (18 for 18.00): compare amounts.
    let amount = |p: Option<String>| p.and_then(|p| p.parse::<rust_decimal::Decimal>().ok());
    let want = amount(Some(price.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while [
        amount(st.shop.price_of(SHOPIFY_VARIANT)),
        amount(st.woo.price_of(WOO_PRODUCT)),
        amount(st.sw.price_of(SHOPWARE_PRODUCT)),
    ] != [want, want, want]
    {
        assert!(
            Instant::now() < deadline,
            "price never reached every channel: {:?} {:?} {:?}; {:?}",
            st.shop.price_of(SHOPIFY_VARIANT),
            st.woo.price_of(WOO_PRODUCT),
            st.sw.price_of(SHOPWARE_PRODUCT),
            st.channels()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the price moved: no channel was sent its unchanged stock again.
    for f in [&st.woo, &st.sw] {
        let sent = f.calls(f.stock_op());
        assert!(
            sent.iter().all(|c| !c.body.to_string().contains("stock")),
            "{sent:#?}"
        );
    }
    assert!(st.shop.calls("inventorySetQuantities").is_empty());
    assert_eq!(st.shop.calls("productVariantsBulkUpdate").len(), 1);
}

#[test]
fn a_stale_compare_at_shopify_rereads_and_sets_the_ledgers_figure() {
    let st = stack(20);
    // Someone moved the figure at Shopify behind Tally's back.
    st.shop.with(|s| s.stock.insert(SHOPIFY_ITEM.into(), 17));
    st.forget_calls();
    st.s.send("erp", &orders(1, 3, "erp"));
    st.wait_for_figures(17, "after 3 reservations");
    let sets = st.shop.calls("inventorySetQuantities");
    assert_eq!(
        sets.len(),
        2,
        "the first compare is stale, the second lands: {sets:#?}"
    );
    assert_eq!(
        sets[0].body["variables"]["input"]["quantities"][0]["compareQuantity"],
        20
    );
    assert_eq!(
        sets[1].body["variables"]["input"]["quantities"][0]["compareQuantity"],
        17
    );
    assert_eq!(st.shop.calls("nodes").len(), 1, "one re-read");
}

#[test]
fn an_approved_cancel_is_one_call_at_the_platform_even_when_the_first_attempt_times_out() {
    let st = stack(10);
    st.shop.with(|s| {
        s.orders
            .insert("gid://shopify/Order/5001".into(), Default::default())
    });
    st.s.send("erp", &orders(5001, 1, "shop"));
    st.s.send(
        "erp",
        &json!({"id": "r-5001", "type": "order.refund_requested", "occurred_at": "2026-12-03T11:00:00Z",
                "data": {"order_id": "5001", "amount": "19.99", "reason": "changed mind"}}),
    );
    let action = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            st.s.settle();
            let all = st.s.get("/v1/actions?status=pending")["actions"].clone();
            if let Some(a) = all
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["order_id"] == "5001")
            {
                break a.clone();
            }
            assert!(Instant::now() < deadline, "no action: {all}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(action["kind"], "cancel");
    // Shopify cancels, then answers after the client gave up (1 s).
    st.shop.fail_next(
        Some("orderCancel"),
        Fault::ActThenStall(Duration::from_secs(3)),
    );
    let (status, _) = st.s.post(
        &format!("/v1/actions/{}/approve", action["id"].as_str().unwrap()),
        json!({"actor": "ops-lead", "note": "customer asked"}),
    );
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = st.s.get("/v1/audit?entity=channel:shop")["records"].clone();
        if audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "channel.command")
        {
            assert!(
                audit
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["kind"] == "channel.command"
                        && r["after"]["outcome"] == "already_done"),
                "{audit}"
            );
            assert!(
                audit
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["kind"] == "channel.push_failed"),
                "the timeout is on record: {audit}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command never completed: {audit}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        st.shop.calls("orderCancel").len(),
        1,
        "exactly one cancel call"
    );
    assert!(
        st.shop
            .with(|s| s.orders["gid://shopify/Order/5001"].cancelled)
    );
    assert!(
        st.shop.calls("order").len() >= 2,
        "each attempt read the order first"
    );
}

/// Waits for the pending action about `order_id` and approves it.
fn approve(st: &Stack, order_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let action = loop {
        st.s.settle();
        let all = st.s.get("/v1/actions?status=pending")["actions"].clone();
        if let Some(a) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["order_id"] == order_id)
        {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "no action for {order_id}: {all}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, body) = st.s.post(
        &format!("/v1/actions/{}/approve", action["id"].as_str().unwrap()),
        json!({"actor": "ops-lead"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    action
}

fn refund_requested(order_id: &str) -> Value {
    json!({"id": format!("r-{order_id}"), "type": "order.refund_requested", "occurred_at": "2026-12-03T11:00:00Z",
           "data": {"order_id": order_id, "amount": "19.99", "reason": "changed mind"}})
}

#[test]
fn approved_cancels_reach_woocommerce_and_shopware_through_their_own_apis() {
    let st = stack(10);
    st.woo.with(|s| {
        s.orders.insert(
            "7001".into(),
            support::platforms::Order {
                status: "processing".into(),
                ..Default::default()
            },
        )
    });
    st.sw
        .with(|s| s.orders.insert("7002".into(), Default::default()));
    st.s.send("erp", &orders(7001, 1, "woo"));
    st.s.send("erp", &orders(7002, 1, "sw"));
    st.s.send(
        "erp",
        &json!([refund_requested("7001"), refund_requested("7002")]),
    );
    assert_eq!(approve(&st, "7001")["kind"], "cancel");
    assert_eq!(approve(&st, "7002")["kind"], "cancel");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(st.woo.with(|s| s.orders["7001"].cancelled)
        && st.sw.with(|s| s.orders["7002"].cancelled))
    {
        assert!(Instant::now() < deadline, "the cancels never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    // WooCommerce: read the order, then one status change.
    let woo: Vec<String> = st.woo.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.ends_with("/orders/7001"))
            .map(|c| c.method.clone())
            .collect()
    });
    assert_eq!(woo, ["GET", "PUT"]);
    assert_eq!(
        st.woo
            .calls("/wp-json/wc/v3/orders/7001")
            .last()
            .unwrap()
            .body,
        json!({"status": "cancelled"})
    );
    // Shopware: search by order number, then the cancel transition.
    assert_eq!(st.sw.calls("/api/search/order").len(), 1);
    let transitions: Vec<String> = st.sw.with(|s| {
        s.calls
            .iter()
            .filter(|c| c.path.ends_with("/state/cancel"))
            .map(|c| c.path.clone())
            .collect()
    });
    assert_eq!(transitions.len(), 1, "{transitions:?}");
}

#[test]
fn a_throttled_shopify_call_waits_for_its_bucket_to_refill() {
    let st = stack(10);
    st.forget_calls();
    // Shopify's cost-based throttle: 200 with a THROTTLED error; the bucket
    // needs (202 - 2) / 100 = 2 s to hold the query's cost again.
    st.shop.fail_next(
        Some("inventorySetQuantities"),
        Fault::Body(json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                           "extensions": {"cost": {"requestedQueryCost": 202, "actualQueryCost": null,
                                          "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 2, "restoreRate": 100.0}}}})),
    );
    st.s.send("erp", &orders(1, 1, "erp"));
    st.wait_for_figures(9, "after the throttle");
    let sets = st.shop.calls("inventorySetQuantities");
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let waited = sets[1].at - sets[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
}

#[test]
fn a_rate_limited_channel_is_retried_after_its_retry_after() {
    let st = stack(10);
    st.forget_calls();
    st.woo.fail_next(
        Some("/wp-json/wc/v3/products/batch"),
        Fault::Status(429, Some("2")),
    );
    st.s.send("erp", &orders(1, 1, "erp"));
    st.wait_for_figures(9, "after the 429");
    let writes = st.woo.calls("/wp-json/wc/v3/products/batch");
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let waited = writes[1].at - writes[0].at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After"
    );
    assert!(st.channel("woo")["failures_total"].as_u64().unwrap() >= 1);
}

#[test]
fn a_channel_that_stays_down_ends_in_the_dlq_with_one_alert_and_resync_restores_it() {
    let st = stack(10);
    st.sw.set_down(true);
    st.s.send("erp", &orders(1, 4, "erp"));
    // Five attempts (backoff 100 ms, doubling), then given up on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sw = loop {
        let sw = st.channel("sw");
        if sw["dead_lettered"].as_u64().unwrap() >= 1 {
            break sw;
        }
        assert!(Instant::now() < deadline, "never given up on: {sw}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sw["failures"], 5, "{sw}");
    assert_eq!(
        sw["pending"], 1,
        "the figure Shopware does not show yet: {sw}"
    );
    assert!(sw["last_error"].as_str().unwrap().contains("503"), "{sw}");
    let alerts = st.s.get("/v1/alerts")["items"].clone();
    let push_alerts: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "channel_push_failed")
        .collect();
    assert_eq!(push_alerts.len(), 1, "{alerts}");
    assert_eq!(push_alerts[0]["subject"], "channel:sw");
    // The others were not held up by it.
    assert_eq!(st.shop.stock_of(SHOPIFY_ITEM), Some(6));
    assert_eq!(
        st.sw.stock_of(SHOPWARE_PRODUCT),
        Some(10),
        "still the old figure"
    );

    // Back up: a resync pushes the full current state; nothing is lost.
    st.sw.set_down(false);
    let (status, body) =
        st.s.post("/v1/channels/sw/resync", json!({"actor": "ops-lead"}));
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    st.wait_for_figures(6, "after the resync");
    let sw = st.channel("sw");
    assert_eq!(
        (sw["failures"].as_u64(), sw["pending"].as_u64()),
        (Some(0), Some(0)),
        "{sw}"
    );
    assert!(sw["lag_ms"].is_i64(), "{sw}");
    assert_eq!(st.sw.price_of(SHOPWARE_PRODUCT).as_deref(), Some("19.99"));
    // A resync of a channel without credentials, or of none, is refused.
    assert_eq!(
        st.s.post("/v1/channels/erp/resync", json!({})).0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        st.s.post("/v1/channels/nowhere/resync", json!({})).0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn channel_credentials_are_never_shown_nor_logged() {
    let st = stack(5);
    st.s.send("erp", &orders(1, 1, "erp"));
    st.wait_for_figures(4, "after one order");
    let shown = [
        st.s.get("/v1/sources/shop").to_string(),
        st.s.get("/v1/sources/woo").to_string(),
        st.s.get("/v1/sources/sw").to_string(),
        st.s.get("/v1/audit?entity=source:shop").to_string(),
        st.s.get("/v1/channels").to_string(),
    ]
    .join("\n");
    let log = std::fs::read_to_string(st.data.with_extension("log")).unwrap();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the log was written at debug level"
    );
    for secret in [
        SHOPIFY_TOKEN,
        WOO_KEY,
        WOO_SECRET,
        SHOPWARE_ID,
        SHOPWARE_SECRET,
        "sw-access-token-e2e",
    ] {
        assert!(!shown.contains(secret), "{secret} shown by the API");
        assert!(!log.contains(secret), "{secret} in the log");
    }
    assert!(
        shown.contains("access_token"),
        "the API names which credentials are set"
    );
}
