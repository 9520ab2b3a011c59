//! `tally backtest` on a generated month, and the same month replayed
//! through `tally serve` with `tally replay`: the two must agree.

mod support;

use std::io::Write;
use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// A month for three SKUs: daily recounts, orders and competitor prices for
/// A and B; C is counted once and then only watched, so its stock data goes
/// stale.
fn month() -> Vec<Value> {
    let start: chrono::DateTime<chrono::Utc> = "2026-11-01T08:00:00Z".parse().unwrap();
    let at = |day: i64, minute: i64| {
        (start + chrono::Duration::days(day) + chrono::Duration::minutes(minute)).to_rfc3339()
    };
    let mut out = vec![];
    for sku in ["SKU-A", "SKU-B", "SKU-C"] {
        out.push(
            json!({"id": format!("count-{sku}-0"), "type": "stock.counted", "occurred_at": at(0, 0),
                        "data": {"sku": sku, "location": "WH-1", "on_hand": 200}}),
        );
    }
    for day in 0..30i64 {
        for (sku, base) in [("SKU-A", 1900i64), ("SKU-B", 1150)] {
            if day > 0 {
                out.push(json!({"id": format!("count-{sku}-{day}"), "type": "stock.counted", "occurred_at": at(day, 1),
                                "data": {"sku": sku, "location": "WH-1", "on_hand": 200 - day}}));
            }
            for n in 0..3 {
                out.push(json!({"id": format!("ord-{sku}-{day}-{n}"), "type": "order.placed", "occurred_at": at(day, 60 + n * 90),
                                "data": {"order_id": format!("{sku}-{day}-{n}"), "channel": "erp", "currency": "EUR",
                                         "lines": [{"sku": sku, "qty": 1, "unit_price": "10.00"}]}}));
            }
            // A rival that drifts down, with a bounce every week.
            let cents = base - day * 25 + if day % 7 == 3 { 300 } else { 0 };
            out.push(json!({"id": format!("cmp-{sku}-{day}"), "type": "price.competitor_observed", "occurred_at": at(day, 400),
                            "data": {"sku": sku, "competitor": "rival", "price": format!("{}.{:02}", cents / 100, cents % 100), "currency": "EUR"}}));
        }
        out.push(json!({"id": format!("cmp-SKU-C-{day}"), "type": "price.competitor_observed", "occurred_at": at(day, 400),
                        "data": {"sku": "SKU-C", "competitor": "rival", "price": "5.00", "currency": "EUR"}}));
    }
    out
}

const TEN_YEARS: u64 = 315_360_000;

fn setup() -> Value {
    json!({
        "defaults": {"min_margin_pct": "20", "competitor_strategy": "undercut", "undercut_by": "0.10",
                     "max_step_pct": "5", "min_interval_s": 0, "max_stock_age_s": TEN_YEARS,
                     "competitor_max_age_s": TEN_YEARS},
        "products": {
            "SKU-A": {"currency": "EUR", "unit_cost": "8.00", "price": "20.00"},
            "SKU-B": {"currency": "EUR", "unit_cost": "5.00", "price": "12.00"},
            "SKU-C": {"currency": "EUR", "unit_cost": "3.00", "price": "9.00", "policy": {"max_stock_age_s": 86400}},
        }
    })
}

fn write(
    dir: &std::path::Path,
    name: &str,
    lines: impl IntoIterator<Item = String>,
) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    p
}

#[test]
fn a_backtest_reports_the_month_and_agrees_with_a_replay_through_serve() {
    let (dir, data) = data_dir();
    let events = write(
        dir.path(),
        "month.ndjson",
        month().iter().map(Value::to_string),
    );
    let policy = write(dir.path(), "policy.json", [setup().to_string()]);

    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["backtest", "--json", "--events"])
        .arg(&events)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], month().len());
    assert_eq!(report["quarantined"], 0);
    let a = &report["skus"]["SKU-A"];
    assert!(a["path"].as_array().unwrap().len() >= 5, "{a}");
    assert!(a["bound"]["max_step"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["units_sold"], 90);
    assert!(
        report["skus"]["SKU-C"]["held_for_stale_stock"]
            .as_u64()
            .unwrap()
            >= 25,
        "{}",
        report["skus"]["SKU-C"]
    );
    // The floor (cost / 0.8) is never crossed.
    for (sku, floor) in [("SKU-A", 10.0), ("SKU-B", 6.25)] {
        for step in report["skus"][sku]["path"].as_array().unwrap() {
            let price: f64 = step[1].as_str().unwrap().parse().unwrap();
            assert!(price >= floor, "{sku} at {price}");
        }
    }

    // The human-readable report says the same.
    let text = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["backtest", "--events"])
        .arg(&events)
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("SKU-A") && text.contains("stale holds") && text.contains("margin kept"),
        "{text}"
    );

    // The same month through the running stack, one event at a time.
    let s = Server::start(&data);
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET}),
    );
    let setup = setup();
    for (sku, product) in setup["products"].as_object().unwrap() {
        let mut body = product.clone();
        let mut p = setup["defaults"].as_object().unwrap().clone();
        p.extend(product["policy"].as_object().cloned().unwrap_or_default());
        body["policy"] = Value::Object(p);
        s.put(&format!("/v1/products/{sku}"), body);
    }
    let replay = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "replay", "--url", &s.base, "--source", "erp", "--secret", SECRET,
        ])
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // A and B do not depend on the wall clock (their guardrails are
    // timeless); C's staleness does, so it is left out.
    for sku in ["SKU-A", "SKU-B"] {
        let price = s.get(&format!("/v1/prices/{sku}"));
        let changes = s.get(&format!("/v1/audit?entity=price:{sku}&limit=1000"))["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "price.changed")
            .count();
        let r = &report["skus"][sku];
        assert_eq!(price["price"], r["end_price"], "{sku}: end price");
        assert_eq!(
            changes,
            r["path"].as_array().unwrap().len(),
            "{sku}: number of changes"
        );
        assert_eq!(s.stock(sku)["reserved"], 90, "{sku}");
    }
}
