//! Pricing through `tally serve`: guardrails, stale stock, approvals and
//! reverts, seen from the admin API.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn at(minutes_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339()
}

fn setup(s: &Server, sku: &str, policy: Value, counted_minutes_ago: i64) {
    s.put(
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": SECRET}),
    );
    s.put(
        &format!("/v1/products/{sku}"),
        json!({"currency": "EUR", "unit_cost": "10.00", "price": "20.00", "policy": policy}),
    );
    s.send(
        "erp",
        &json!({"id": format!("count-{sku}"), "type": "stock.counted", "occurred_at": at(counted_minutes_ago),
                "data": {"sku": sku, "location": "WH-AMS", "on_hand": 50}}),
    );
    // The count itself triggers a first decision (nothing to act on yet):
    // wait for it so it cannot interleave with what a test sends next.
    decided(s, sku, |v| !v["last_decision"].is_null());
}

fn competitor(s: &Server, sku: &str, id: &str, price: &str) {
    assert_eq!(
        s.send(
            "erp",
            &json!({"id": id, "type": "price.competitor_observed", "occurred_at": at(0),
                    "data": {"sku": sku, "competitor": "rival.example", "price": price, "currency": "EUR"}}),
        ),
        StatusCode::ACCEPTED
    );
}

/// Polls the price until `check` holds.
fn decided(s: &Server, sku: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        s.settle();
        let v = s.get(&format!("/v1/prices/{sku}"));
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "no such decision: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const UNDERCUT: fn() -> Value = || {
    json!({"min_margin_pct": "20", "competitor_strategy": "undercut", "undercut_by": "0.50",
           "max_step_pct": "10", "min_interval_s": 0, "max_stock_age_s": 3600})
};

#[test]
fn the_margin_floor_holds_however_low_a_competitor_goes() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s, "TSHIRT-M", UNDERCUT(), 1);
    let v = s.get("/v1/prices/TSHIRT-M");
    assert_eq!(
        (v["floor"].as_str(), v["ceiling"].is_null()),
        (Some("12.50"), true),
        "{v}"
    );
    for n in 0..8 {
        competitor(&s, "TSHIRT-M", &format!("cmp-{n}"), "1.00");
    }
    // Every price on the way down, and where it ends, is at or above 12.50.
    decided(&s, "TSHIRT-M", |v| {
        let price: rust_decimal::Decimal = v["price"].as_str().unwrap().parse().unwrap();
        assert!(
            price >= rust_decimal::Decimal::new(1250, 2),
            "{price} below the floor"
        );
        v["price"] == "12.50"
    });
    let audit = s.get("/v1/audit?entity=price:TSHIRT-M");
    let path: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["after"]["price"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["18.00", "16.20", "14.58", "13.13", "12.50"]);
    let v = s.get("/v1/prices/TSHIRT-M");
    assert_eq!(v["price"], "12.50", "{v}");
    assert!(
        v["last_decision"]["reasons"].to_string().contains("floor"),
        "{v}"
    );
}

#[test]
fn an_undercut_moves_within_the_step_is_audited_and_reverts_exactly() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s, "TSHIRT-M", UNDERCUT(), 1);
    competitor(&s, "TSHIRT-M", "cmp-1", "15.00");
    let v = decided(&s, "TSHIRT-M", |v| v["price"] == "18.00");
    assert_eq!(v["last_decision"]["outcome"], "changed");
    assert_eq!(
        v["last_decision"]["reasons"],
        json!(["competitor", "max_step"])
    );
    let audit = s.get("/v1/audit?entity=price:TSHIRT-M");
    let first = audit["records"][0].clone();
    assert_eq!(
        (
            first["kind"].as_str(),
            first["before"]["price"].as_str(),
            first["after"]["price"].as_str()
        ),
        (Some("price.changed"), Some("20.00"), Some("18.00"))
    );
    assert_eq!(
        first["inputs"]["inputs"]["lowest_competitor"]["price"], "15.00",
        "{first}"
    );

    competitor(&s, "TSHIRT-M", "cmp-2", "15.00");
    decided(&s, "TSHIRT-M", |v| v["price"] == "16.20");
    let second = s.get("/v1/audit?entity=price:TSHIRT-M")["records"][0].clone();
    // The first change was superseded by the second: refused.
    let (status, body) = s.post(
        &format!("/v1/audit/{}/revert", first["id"].as_str().unwrap()),
        json!({"actor": "ops"}),
    );
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The latest reverts to exactly what it replaced.
    let (status, body) = s.post(
        &format!("/v1/audit/{}/revert", second["id"].as_str().unwrap()),
        json!({"actor": "ops@shop", "note": "too low"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.get("/v1/prices/TSHIRT-M")["price"], "18.00");
    let reverted = s.get("/v1/audit?entity=price:TSHIRT-M")["records"][0].clone();
    assert_eq!(
        (reverted["kind"].as_str(), reverted["actor"].as_str()),
        (Some("price.reverted"), Some("ops@shop"))
    );
    assert_eq!(
        s.get("/v1/products/TSHIRT-M")["price"],
        "18.00",
        "the product's price follows"
    );
}

#[test]
fn a_stale_count_holds_the_price_and_says_so() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s, "MUG-BLK", UNDERCUT(), 180);
    competitor(&s, "MUG-BLK", "cmp-1", "15.00");
    let v = decided(&s, "MUG-BLK", |v| {
        v["last_decision"]["inputs"]["lowest_competitor"].is_object()
    });
    assert_eq!(v["price"], "20.00");
    assert_eq!(v["last_decision"]["outcome"], "held");
    assert_eq!(v["last_decision"]["reasons"], json!(["stale_stock"]));
}

#[test]
fn a_move_beyond_the_approval_step_waits_for_a_person() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    let mut policy = UNDERCUT();
    policy["max_step_pct"] = json!("30");
    policy["approval_step_pct"] = json!("10");
    setup(&s, "CAP-RED", policy, 1);
    competitor(&s, "CAP-RED", "cmp-1", "15.00");
    let v = decided(&s, "CAP-RED", |v| {
        v["last_decision"]["outcome"] == "pending_approval"
    });
    assert_eq!(v["price"], "20.00", "not applied");
    let actions = s.get("/v1/actions?status=pending")["actions"].clone();
    let a = &actions[0];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["sku"].as_str(),
            a["requires_approval"].as_bool()
        ),
        (Some("price_change"), Some("CAP-RED"), Some(true))
    );
    assert_eq!(a["proposal"]["to"], "14.50");
    assert!(a["rationale"].as_str().unwrap().contains("14.50"));
    // Approving it applies it, through the same approval API as orders.
    let (status, body) = s.post(
        &format!("/v1/actions/{}/approve", a["id"].as_str().unwrap()),
        json!({"actor": "ana"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "executed");
    let v = s.get("/v1/prices/CAP-RED");
    assert_eq!(v["price"], "14.50");
    let change = s.get("/v1/audit?entity=price:CAP-RED")["records"][0].clone();
    assert_eq!(
        (change["kind"].as_str(), change["actor"].as_str()),
        (Some("price.changed"), Some("ana"))
    );
}

#[test]
fn an_impossible_policy_is_refused_naming_the_field() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    for (policy, field) in [
        (json!({"min_margin_pct": "100"}), "policy.min_margin_pct"),
        (
            json!({"min_price": "30", "max_price": "20"}),
            "policy.min_price",
        ),
        (json!({"max_step_pct": "-1"}), "policy.max_step_pct"),
        (
            json!({"competitor_strategy": "psychic"}),
            "policy.competitor_strategy",
        ),
    ] {
        let (status, body) = s.admin(
            reqwest::Method::PUT,
            "/v1/products/BAD-1",
            Some(json!({"currency": "EUR", "unit_cost": "10.00", "policy": policy})),
        );
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["reasons"].to_string().contains(field),
            "{field} not named: {body}"
        );
    }
}
