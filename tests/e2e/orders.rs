//! Order handling through `tally serve`: recommendations with their
//! reasons, a person's approval for what cannot be undone, execution once.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn setup(s: &Server) {
    s.configure(0);
    s.send(
        "erp",
        &json!([
            {"id": "c1", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
             "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": 2}},
            {"id": "c2", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
             "data": {"sku": "TSHIRT-M", "location": "WH-RTM", "on_hand": 1}},
        ]),
    );
    s.settle();
}

fn order(id: &str, qty: u32) -> Value {
    json!({"id": format!("o-{id}"), "type": "order.placed", "occurred_at": "2026-12-03T10:05:00Z",
           "data": {"order_id": id, "channel": "erp", "currency": "EUR", "total": "39.98",
                    "lines": [{"sku": "TSHIRT-M", "qty": qty, "unit_price": "19.99"}]}})
}

/// Waits for the one action about `order_id`.
fn action_for(s: &Server, order_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        s.settle();
        let all = s.get("/v1/actions")["actions"].clone();
        if let Some(a) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["order_id"] == order_id)
        {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no action for order {order_id}: {all}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reserved(s: &Server) -> u64 {
    s.stock("TSHIRT-M")["reserved"].as_u64().unwrap()
}

#[test]
fn an_order_larger_than_the_stock_reserves_nothing_and_waits_with_a_rationale() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    s.send("erp", &order("1001", 5));
    let a = action_for(&s, "1001");
    assert_eq!(reserved(&s), 0, "nothing is reserved for a short order");
    assert_eq!(
        (a["status"].as_str(), a["kind"].as_str()),
        (Some("pending"), Some("partial_shipment"))
    );
    assert!(
        a["rationale"]
            .as_str()
            .unwrap()
            .contains("TSHIRT-M wanted 5, 3 available"),
        "{a}"
    );
    assert_eq!(
        a["evidence"]["alternatives"],
        json!(["partial_shipment", "backorder", "cancel"])
    );
    // The one action is there by id, with its evidence.
    let one = s.get(&format!("/v1/actions/{}", a["id"].as_str().unwrap()));
    assert_eq!(one["evidence"], a["evidence"]);
}

#[test]
fn irreversible_actions_wait_for_approval_which_is_audited_and_happens_once() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    s.send("erp", &order("2001", 2));
    assert_eq!(reserved(&s), 2);
    s.send(
        "erp",
        &json!({"id": "r-2001", "type": "order.refund_requested", "occurred_at": "2026-12-03T11:00:00Z",
                "data": {"order_id": "2001", "amount": "39.98", "reason": "changed mind"}}),
    );
    let a = action_for(&s, "2001");
    assert_eq!(
        (
            a["kind"].as_str(),
            a["reversible"].as_bool(),
            a["requires_approval"].as_bool()
        ),
        (Some("cancel"), Some(false), Some(true))
    );
    assert_eq!(a["status"], "pending");
    let id = a["id"].as_str().unwrap().to_owned();

    // Two people approve at once: one wins, the other is told it is done.
    let url = format!("{}/v1/actions/{id}/approve", s.base);
    let approvals: Vec<_> = ["ana", "ben"]
        .map(|who| {
            let (url, http) = (url.clone(), s.http.clone());
            std::thread::spawn(move || {
                http.post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"actor": who, "note": "customer asked"}))
                    .send()
                    .unwrap()
                    .status()
            })
        })
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut codes: Vec<u16> = approvals.iter().map(|c| c.as_u16()).collect();
    codes.sort();
    assert_eq!(codes, [200, 409]);
    assert_eq!(
        s.post(
            &format!("/v1/actions/{id}/approve"),
            json!({"actor": "ana"})
        )
        .0,
        StatusCode::CONFLICT,
        "approving again"
    );
    assert_eq!(
        s.post("/v1/actions/no-such/approve", json!({})).0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(reserved(&s), 0, "the cancel released the reservation");
    let audit = s.get(&format!("/v1/audit?entity=action:{id}"))["records"].clone();
    let approved: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "action.approved")
        .collect();
    assert_eq!(approved.len(), 1);
    assert!(["ana", "ben"].contains(&approved[0]["actor"].as_str().unwrap()));
    // Exactly one cancel command went to the channel. The ERP channel has
    // no push credentials, so it became one alert asking a person to do it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let manual = loop {
        let alerts = s.get("/v1/alerts")["items"].clone();
        let manual: Vec<Value> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "channel_command_manual")
            .cloned()
            .collect();
        if !manual.is_empty() {
            break manual;
        }
        assert!(
            Instant::now() < deadline,
            "no command reached the channel: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(manual.len(), 1, "{manual:?}");
    assert_eq!(manual[0]["details"]["command"], "cancel_order");
    assert_eq!(manual[0]["details"]["action_id"], id.as_str());
    // And the stock was released once: a second order can take all 3.
    s.send("erp", &order("2002", 3));
    assert_eq!(reserved(&s), 3);
}

#[test]
fn a_payment_failure_gets_a_hold_and_rejecting_it_leaves_the_stock() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    setup(&s);
    s.send("erp", &order("3001", 1));
    let before = s.stock("TSHIRT-M");
    s.send("erp", &json!({"id": "pf-3001", "type": "order.payment_failed", "occurred_at": "2026-12-03T11:00:00Z",
                          "data": {"order_id": "3001"}}));
    let a = action_for(&s, "3001");
    assert_eq!(
        (a["kind"].as_str(), a["reversible"].as_bool()),
        (Some("hold"), Some(true))
    );
    let (status, body) = s.post(
        &format!("/v1/actions/{}/reject", a["id"].as_str().unwrap()),
        json!({"actor": "ana", "note": "paid by phone"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "rejected");
    let after = s.stock("TSHIRT-M");
    assert_eq!(
        (after["on_hand"].clone(), after["reserved"].clone()),
        (before["on_hand"].clone(), before["reserved"].clone())
    );
}

#[test]
fn a_pending_action_past_its_time_expires_and_cannot_be_approved() {
    let (_dir, data) = data_dir();
    let s = Server::start_with(&data, &[("TALLY_ACTION_TTL_S", "1")]);
    setup(&s);
    s.send("erp", &order("4001", 9));
    let a = action_for(&s, "4001");
    std::thread::sleep(Duration::from_millis(1500));
    let id = a["id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/actions/{id}"))["status"], "expired");
    assert!(
        s.get("/v1/actions?status=expired")["actions"]
            .to_string()
            .contains(id)
    );
    let (status, body) = s.post(
        &format!("/v1/actions/{id}/approve"),
        json!({"actor": "ana"}),
    );
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[test]
fn an_unusually_large_order_is_held_for_review() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    s.send(
        "erp",
        &json!({"id": "c1", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
                          "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": 100}}),
    );
    s.send("erp", &order("5001", 60));
    let a = action_for(&s, "5001");
    assert_eq!(
        (a["kind"].as_str(), a["status"].as_str()),
        (Some("hold"), Some("pending"))
    );
    assert!(a["rationale"].as_str().unwrap().contains("review"), "{a}");
    assert_eq!(
        reserved(&s),
        60,
        "the order is reserved; the hold stops fulfilment, not the count"
    );
    // An ordinary order raises nothing.
    s.send("erp", &order("5002", 2));
    s.settle();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.get("/v1/actions")["actions"].to_string().contains("5002"));
}

#[test]
fn an_unpaid_hold_becomes_a_cancel_recommendation_after_the_grace_period() {
    let (_dir, data) = data_dir();
    let s = Server::start_with(&data, &[("TALLY_PAYMENT_GRACE_S", "1")]);
    setup(&s);
    s.send("erp", &order("6001", 1));
    s.send("erp", &json!({"id": "pf-6001", "type": "order.payment_failed", "occurred_at": "2026-12-03T11:00:00Z",
                          "data": {"order_id": "6001"}}));
    let hold = action_for(&s, "6001");
    assert_eq!(hold["kind"], "hold");
    let deadline = Instant::now() + Duration::from_secs(20);
    let cancel = loop {
        let all = s.get("/v1/actions?status=pending")["actions"].clone();
        if let Some(c) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["order_id"] == "6001" && a["kind"] == "cancel")
        {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "no cancel recommended: {all}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(cancel["requires_approval"], true);
    assert_eq!(cancel["evidence"]["hold"], hold["id"]);
}

#[test]
fn reversible_actions_execute_by_themselves_when_the_policy_allows_within_its_amount() {
    let (_dir, data) = data_dir();
    let s = Server::start_with(
        &data,
        &[
            ("TALLY_AUTO_EXECUTE_REVERSIBLE", "true"),
            ("TALLY_AUTO_EXECUTE_MAX_TOTAL", "50"),
        ],
    );
    setup(&s);
    s.send("erp", &order("7001", 1)); // total 39.98: within the limit
    s.send("erp", &json!({"id": "pf-7001", "type": "order.payment_failed", "occurred_at": "2026-12-03T11:00:00Z",
                          "data": {"order_id": "7001"}}));
    let deadline = Instant::now() + Duration::from_secs(20);
    let hold = loop {
        let a = action_for(&s, "7001");
        if a["status"] == "executed" {
            break a;
        }
        assert!(Instant::now() < deadline, "the hold never executed: {a}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (
            hold["requires_approval"].as_bool(),
            hold["decided_by"].as_str()
        ),
        (Some(false), Some("policy"))
    );
    // A refund request is irreversible: it waits however the policy is set.
    s.send("erp", &json!({"id": "r-7001", "type": "order.refund_requested", "occurred_at": "2026-12-03T11:05:00Z",
                          "data": {"order_id": "7001", "amount": "39.98", "reason": "late"}}));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = s.get("/v1/actions?status=pending")["actions"].clone();
        if all
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["order_id"] == "7001" && a["kind"] == "cancel")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no pending cancel: {all}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
