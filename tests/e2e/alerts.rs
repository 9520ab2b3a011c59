//! Anomaly alerts through `tally serve`: each injected anomaly raises
//! exactly one alert, listed by `GET /v1/alerts` and in the activity feed.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const SHOP_SECRET: &str = "shop-secret-0123456789";

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn alerts(s: &Server) -> Vec<Value> {
    s.get("/v1/alerts")["items"].as_array().unwrap().clone()
}

fn of_kind(s: &Server, kind: &str) -> Vec<Value> {
    alerts(s)
        .into_iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// Waits until an alert of `kind` is listed, then returns all of that kind.
fn wait_for(s: &Server, kind: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        s.settle();
        let got = of_kind(s, kind);
        if !got.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} alert; alerts: {:?}",
            alerts(s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(s: &Server, id: &str, sku: &str, on_hand: u32) {
    assert_eq!(
        s.send(
            "erp",
            &json!({"id": id, "type": "stock.counted", "occurred_at": now(),
                    "data": {"sku": sku, "location": "WH-AMS", "on_hand": on_hand}}),
        ),
        StatusCode::ACCEPTED
    );
}

fn server(data: &std::path::Path) -> Server {
    let s = Server::start_with(
        data,
        &[
            ("TALLY_MONITOR_SWEEP_MS", "100"),
            ("TALLY_ALERT_DRIFT_S", "1"),
            ("TALLY_ALERT_SILENCE_MIN_S", "2"),
            ("TALLY_ALERT_QUARANTINE_BURST", "5"),
            ("TALLY_ALERT_STEP_RUN", "4"),
        ],
    );
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET, "channel": "erp"}),
    );
    s
}

#[test]
fn a_run_of_moves_at_the_step_limit_raises_one_alert() {
    let (_dir, data) = data_dir();
    let s = server(&data);
    s.put(
        "/v1/products/RUN-1",
        json!({"currency": "EUR", "unit_cost": "10.00", "price": "50.00", "policy": {
            "competitor_strategy": "match", "max_step_pct": "1", "min_interval_s": 0}}),
    );
    count(&s, "run-count", "RUN-1", 30);
    s.settle();
    // A competitor far below: each decision may only move 1 %.
    for i in 0..6 {
        assert_eq!(
            s.send(
                "erp",
                &json!({"id": format!("rival-{i}"), "type": "price.competitor_observed", "occurred_at": now(),
                        "data": {"sku": "RUN-1", "competitor": "rival.example", "price": format!("{}.00", 20 + i), "currency": "EUR"}}),
            ),
            StatusCode::ACCEPTED
        );
        s.settle();
    }
    let got = wait_for(&s, "price_step_run");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["subject"], "sku:RUN-1");
    // The activity feed shows it under alerts.
    let feed = s.get("/v1/audit?workflow=alerts");
    assert!(
        feed["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["inputs"]["sku"] == "RUN-1"),
        "{feed}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(of_kind(&s, "price_step_run").len(), 1);
}

#[test]
fn a_large_drop_in_one_count_raises_one_alert() {
    let (_dir, data) = data_dir();
    let s = server(&data);
    s.put(
        "/v1/products/DROP-1",
        json!({"currency": "EUR", "unit_cost": "10.00", "price": "20.00"}),
    );
    count(&s, "drop-0", "DROP-1", 200);
    count(&s, "drop-1", "DROP-1", 180);
    count(&s, "drop-2", "DROP-1", 12);
    let got = wait_for(&s, "stock_drop");
    // The redelivered count changes nothing and raises nothing.
    count(&s, "drop-2", "DROP-1", 12);
    s.settle();
    std::thread::sleep(Duration::from_millis(500));
    let got_after = of_kind(&s, "stock_drop");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got_after.len(), 1, "{got_after:?}");
    assert_eq!(got[0]["subject"], "stock:DROP-1@WH-AMS");
    assert_eq!(got[0]["details"]["from"], 180);
    assert_eq!(got[0]["details"]["to"], 12);
}

#[test]
fn a_quarantine_burst_raises_one_alert() {
    let (_dir, data) = data_dir();
    let s = server(&data);
    for i in 0..12 {
        assert_eq!(
            s.send(
                "erp",
                &json!({"id": format!("bad-{i}"), "type": "order.placed", "occurred_at": now(),
                        "data": {"order_id": format!("o{i}"), "channel": "erp", "currency": "EUR",
                                 "lines": [{"sku": "NOPE", "qty": 1, "unit_price": "1.00"}]}}),
            ),
            StatusCode::ACCEPTED
        );
    }
    let got = wait_for(&s, "quarantine_burst");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(of_kind(&s, "quarantine_burst").len(), 1, "{got:?}");
    assert_eq!(
        s.get("/v1/quarantine")["items"].as_array().unwrap().len(),
        12
    );
}

#[test]
fn a_silent_source_and_a_lasting_drift_raise_one_alert_each() {
    let (_dir, data) = data_dir();
    let s = server(&data);
    s.put(
        "/v1/sources/webshop",
        json!({"platform": "tally", "secret": SHOP_SECRET, "channel": "webshop", "authoritative_stock": false}),
    );
    s.put(
        "/v1/products/QUIET-1",
        json!({"currency": "EUR", "unit_cost": "10.00", "price": "20.00"}),
    );
    // The ERP speaks every ~100 ms, then stops.
    for i in 0..5 {
        count(&s, &format!("quiet-{i}"), "QUIET-1", 40 + i);
        s.settle();
        std::thread::sleep(Duration::from_millis(100));
    }
    // The shop reports a figure the ledger does not have: drift.
    let body = json!({"id": "shop-view-1", "type": "stock.counted", "occurred_at": now(),
                      "data": {"sku": "QUIET-1", "location": "WH-AMS", "on_hand": 7}})
    .to_string();
    let sig =
        tally_connectors::tally::sign(SHOP_SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
    assert_eq!(
        s.send_raw("webshop", &body, Some(sig)),
        StatusCode::ACCEPTED
    );
    let drift = wait_for(&s, "channel_drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["subject"], "channel:webshop");
    let silent = wait_for(&s, "source_silent");
    let erp: Vec<_> = silent
        .iter()
        .filter(|a| a["subject"] == "source:erp")
        .collect();
    assert_eq!(erp.len(), 1, "{silent:?}");
    // Many sweeps later, still one of each.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(of_kind(&s, "channel_drift").len(), 1);
    assert_eq!(
        of_kind(&s, "source_silent")
            .iter()
            .filter(|a| a["subject"] == "source:erp")
            .count(),
        1
    );
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tally_alerts_total{kind=\"channel_drift\"} 1"),
        "{metrics}"
    );
}
