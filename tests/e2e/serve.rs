//! `tally serve` from the outside, as a merchant's systems use it: a real
//! process on a real SQLite file, spoken to over HTTP with signed events.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::*;

fn count(id: &str, at: &str, location: &str, on_hand: u32) -> Value {
    json!({"id": id, "type": "stock.counted", "occurred_at": at,
           "data": {"sku": "TSHIRT-M", "location": location, "on_hand": on_hand}})
}

fn order(id: &str, order_id: &str, qty: u32) -> Value {
    json!({"id": id, "type": "order.placed", "occurred_at": "2026-12-03T10:05:00Z",
           "data": {"order_id": order_id, "channel": "erp", "currency": "EUR",
                    "lines": [{"sku": "TSHIRT-M", "qty": qty, "unit_price": "19.99"}]}})
}

fn figures(stock: &Value) -> (u64, u64, u64, u64) {
    let f = |k: &str| stock[k].as_u64().unwrap();
    (
        f("on_hand"),
        f("reserved"),
        f("safety_stock"),
        f("available"),
    )
}

fn assert_available_is_on_hand_less_reserved_less_safety(stock: &Value) {
    for l in stock["locations"].as_array().unwrap() {
        let f = |k: &str| l[k].as_i64().unwrap();
        assert_eq!(
            f("available"),
            (f("on_hand") - f("reserved") - f("safety_stock")).max(0),
            "{l}"
        );
    }
}

#[test]
fn admin_routes_refuse_a_missing_or_wrong_token_and_never_show_a_secret() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    let routes = [
        ("PUT", "/v1/sources/x"),
        ("GET", "/v1/sources/erp"),
        ("PUT", "/v1/locations/WH-AMS"),
        ("PUT", "/v1/products/TSHIRT-M"),
        ("GET", "/v1/products/TSHIRT-M"),
        ("GET", "/v1/stock/TSHIRT-M"),
        ("GET", "/v1/audit?entity=product:TSHIRT-M"),
        ("GET", "/v1/quarantine"),
    ];
    for (method, path) in routes {
        let method: reqwest::Method = method.parse().unwrap();
        let url = format!("{}{path}", s.base);
        let none = s
            .http
            .request(method.clone(), &url)
            .json(&json!({}))
            .send()
            .unwrap();
        assert_eq!(
            none.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        let body: Value = none.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let wrong = s
            .http
            .request(method, &url)
            .bearer_auth("nope")
            .json(&json!({}))
            .send()
            .unwrap();
        assert_eq!(
            wrong.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
    let shown = s.get("/v1/sources/erp").to_string();
    assert!(!shown.contains(SECRET), "{shown}");
    let audit = s.get("/v1/audit?entity=source:erp").to_string();
    assert!(
        audit.contains("source.updated") && !audit.contains(SECRET),
        "{audit}"
    );
}

#[test]
fn the_ledger_follows_counts_orders_cancellations_fulfilments_and_adjustments() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(2);

    assert_eq!(
        s.send("erp", &count("c1", "2026-12-03T10:00:00Z", "WH-AMS", 40)),
        StatusCode::ACCEPTED
    );
    assert_eq!(figures(&s.stock("TSHIRT-M")), (40, 0, 2, 38));

    s.send("erp", &order("o1", "1001", 5));
    assert_eq!(figures(&s.stock("TSHIRT-M")), (40, 5, 2, 33));

    s.send(
        "erp",
        &json!({"id": "x1", "type": "order.cancelled", "occurred_at": "2026-12-03T10:06:00Z",
                          "data": {"order_id": "1001"}}),
    );
    assert_eq!(figures(&s.stock("TSHIRT-M")), (40, 0, 2, 38));

    s.send("erp", &order("o2", "1002", 3));
    s.send("erp", &json!({"id": "f2", "type": "order.fulfilled", "occurred_at": "2026-12-03T10:07:00Z",
                          "data": {"order_id": "1002", "location": "WH-AMS", "lines": [{"sku": "TSHIRT-M", "qty": 3}]}}));
    assert_eq!(figures(&s.stock("TSHIRT-M")), (37, 0, 2, 35));

    s.send("erp", &json!({"id": "a1", "type": "stock.adjusted", "occurred_at": "2026-12-03T10:08:00Z",
                          "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "delta": -7, "reason": "damaged"}}));
    let stock = s.stock("TSHIRT-M");
    assert_eq!(figures(&stock), (30, 0, 2, 28));
    assert_available_is_on_hand_less_reserved_less_safety(&stock);
    // The webshop channel sells what is available less its buffer of 3.
    assert_eq!(stock["channels"]["webshop"], 25);
    assert_eq!(stock["channels"]["erp"], 28);

    let audit = s.get("/v1/audit?entity=stock:TSHIRT-M@WH-AMS");
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "stock.adjusted", "newest first: {kinds:?}");
    assert!(
        kinds.contains(&"stock.reserved")
            && kinds.contains(&"stock.released")
            && kinds.contains(&"stock.fulfilled")
    );
    assert_eq!(audit["records"][0]["cause"], "erp:a1");
}

#[test]
fn duplicates_stale_counts_bad_signatures_and_unknown_sources_change_nothing() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    s.send("erp", &count("c1", "2026-12-03T10:00:00Z", "WH-AMS", 10));
    s.send("erp", &order("o1", "1001", 2));
    let before = s.stock("TSHIRT-M");

    // The same order again, same id: applied once.
    assert_eq!(s.send("erp", &order("o1", "1001", 2)), StatusCode::ACCEPTED);
    // A count older than the one applied: recorded as stale, no change.
    assert_eq!(
        s.send("erp", &count("c0", "2026-12-03T09:00:00Z", "WH-AMS", 99)),
        StatusCode::ACCEPTED
    );
    // A wrong signature, an old one, none at all, an unknown source.
    let body = count("c9", "2026-12-03T11:00:00Z", "WH-AMS", 500).to_string();
    let forged = tally_connectors::tally::sign(
        "not-the-secret-at-all",
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    assert_eq!(
        s.send_raw("erp", &body, Some(forged)),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.send_raw("erp", &body, Some(sign(&body, 301))),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.send_raw("erp", &body, None), StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.send_raw("nobody", &body, Some(sign(&body, 0))),
        StatusCode::NOT_FOUND
    );
    // Over 1 MiB: refused before anything is read.
    let huge = format!("[{}]", vec![body.as_str(); 10000].join(","));
    assert!(huge.len() > 1 << 20);
    assert_eq!(
        s.send_raw("erp", &huge, Some(sign(&huge, 0))),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let after = s.stock("TSHIRT-M");
    assert_eq!(figures(&after), figures(&before));
    assert_eq!(figures(&after), (10, 2, 0, 8));
    let audit = s.get("/v1/audit?entity=stock:TSHIRT-M@WH-AMS");
    assert_eq!(audit["records"][0]["kind"], "stock.count_stale");
}

#[test]
fn a_well_signed_malformed_event_is_accepted_and_quarantined_with_its_reasons() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    let bad = json!([
        {"id": "bad-1", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
         "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": -4}},
        count("good-1", "2026-12-03T10:00:00Z", "WH-AMS", 7),
        order("unknown-sku", "2001", 1).as_object().map(|o| {
            let mut o = o.clone();
            o["data"]["lines"][0]["sku"] = json!("NO-SUCH-SKU");
            Value::Object(o)
        }).unwrap(),
    ]);
    assert_eq!(s.send("erp", &bad), StatusCode::ACCEPTED);
    assert_eq!(s.stock("TSHIRT-M")["on_hand"], 7);
    let q = s.get("/v1/quarantine");
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{q}");
    let reasons = q.to_string();
    assert!(reasons.contains("data.on_hand"), "{reasons}");
    assert!(reasons.contains("NO-SUCH-SKU"), "{reasons}");
    // Truncated JSON that is well signed is kept too.
    let truncated = r#"{"id": "t-1", "type": "stock.coun"#;
    assert_eq!(
        s.send_raw("erp", truncated, Some(sign(truncated, 0))),
        StatusCode::ACCEPTED
    );
    s.settle();
    let q = s.get("/v1/quarantine");
    assert!(
        q["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["payload"] == truncated),
        "{q}"
    );
}

#[test]
fn a_burst_of_concurrent_orders_reserves_exactly_the_stock_and_never_more() {
    let (_dir, data) = data_dir();
    let s = Arc::new(Server::start(&data));
    s.configure(0);
    s.send("erp", &count("c1", "2026-12-03T10:00:00Z", "WH-AMS", 12));
    s.settle();
    let orders = 60;
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let (s, next, accepted) = (s.clone(), next.clone(), accepted.clone());
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= orders {
                        return;
                    }
                    if s.send("erp", &order(&format!("o{n}"), &format!("{n}"), 1))
                        == StatusCode::ACCEPTED
                    {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        orders,
        "every order is accepted"
    );
    let stock = s.stock("TSHIRT-M");
    assert_eq!(figures(&stock), (12, 12, 0, 0));
    // The other 48 were refused as short, each with its own record.
    let shorts = (0..orders)
        .filter(|n| {
            let a = s.get(&format!("/v1/audit?entity=order:{n}"));
            a["records"][0]["kind"] == "order.short"
        })
        .count();
    assert_eq!(shorts, orders - 12);
}

#[test]
fn an_order_is_reserved_where_it_fits_and_stock_lists_locations_and_channels() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    s.send(
        "erp",
        &json!([
            count("c1", "2026-12-03T10:00:00Z", "WH-AMS", 2),
            count("c2", "2026-12-03T10:00:00Z", "WH-RTM", 5)
        ]),
    );
    s.send("erp", &order("o1", "1001", 4));
    let stock = s.stock("TSHIRT-M");
    let at = |loc: &str| {
        stock["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["location"] == loc)
            .cloned()
            .unwrap()
    };
    assert_eq!(at("WH-AMS")["reserved"], 0);
    assert_eq!(at("WH-RTM")["reserved"], 4);
    assert_eq!(stock["available"], 3);
    assert_eq!(stock["channels"], json!({"erp": 3, "webshop": 0}));
    assert_available_is_on_hand_less_reserved_less_safety(&stock);
}

#[test]
fn state_survives_a_restart_and_kill_9_loses_and_doubles_nothing() {
    let (_dir, data) = data_dir();
    let mut s = Server::start(&data);
    s.configure(0);
    s.send("erp", &count("c1", "2026-12-03T10:00:00Z", "WH-AMS", 0));
    s.settle();
    let total = 300usize;
    let adjust = |n: usize| {
        json!({"id": format!("adj-{n}"), "type": "stock.adjusted", "occurred_at": "2026-12-03T10:00:01Z",
               "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "delta": 1, "reason": "received"}})
    };
    let accepted = Arc::new(AtomicUsize::new(0));
    let base = s.base.clone();
    let sender = {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let http = Client::new();
            for n in 0..total {
                let body = adjust(n).to_string();
                let ok = http
                    .post(format!("{base}/events/erp"))
                    .header("X-Tally-Signature", sign(&body, 0))
                    .body(body)
                    .send()
                    .map(|r| r.status() == StatusCode::ACCEPTED)
                    .unwrap_or(false);
                if !ok {
                    return; // the server is gone
                }
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while accepted.load(Ordering::SeqCst) < 60 {
        std::thread::sleep(Duration::from_millis(2));
    }
    s.kill9();
    sender.join().unwrap();
    let acknowledged = accepted.load(Ordering::SeqCst);
    assert!(acknowledged < total, "the kill came mid-burst");

    let s = Server::start(&data);
    let on_hand = s.stock("TSHIRT-M")["on_hand"].as_u64().unwrap() as usize;
    // Everything acknowledged survived; at most the one in flight beyond it.
    assert!(
        on_hand >= acknowledged && on_hand <= acknowledged + 1,
        "{on_hand} vs {acknowledged}"
    );
    // The sender retries everything, as platforms do: nothing is doubled.
    for n in 0..total {
        assert_eq!(s.send("erp", &adjust(n)), StatusCode::ACCEPTED);
    }
    assert_eq!(s.stock("TSHIRT-M")["on_hand"], total);
}

#[test]
fn metrics_count_what_was_sent_and_show_the_lag_distribution() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    let counts: Vec<Value> = (0..5)
        .map(|n| {
            count(
                &format!("c{n}"),
                &format!("2026-12-03T10:0{n}:00Z"),
                "WH-AMS",
                10 + n,
            )
        })
        .collect();
    assert_eq!(s.send("erp", &Value::Array(counts)), StatusCode::ACCEPTED);
    s.send("erp", &count("c4", "2026-12-03T10:04:00Z", "WH-AMS", 14)); // a duplicate
    s.send("erp", &json!({"id": "bad", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z", "data": {}}));
    s.send("erp", &order("big", "9001", 500)); // would oversell
    s.settle();
    let resp = s.http.get(format!("{}/metrics", s.base)).send().unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "metrics are behind the admin token"
    );
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "tally_events_accepted_total{source=\"erp\",platform=\"tally\"} 8",
        "tally_events_applied_total{type=\"stock.counted\"} 5",
        "tally_events_applied_total{type=\"order.placed\"} 1",
        "tally_events_duplicate_total 1",
        "tally_events_quarantined_total{source=\"erp\"} 1",
        "tally_oversells_prevented_total 1",
        "tally_lag_seconds_count{from=\"receipt\"} 6",
        "tally_lag_seconds_count{from=\"event\"} 6",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(
        text.contains("tally_lag_seconds_bucket{from=\"receipt\",le=\"+Inf\"} 6"),
        "{text}"
    );
}
