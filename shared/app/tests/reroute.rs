//! A short order is recommended a reroute once stock has arrived elsewhere,
//! and approving it reserves the order there: the steps driven one by one
//! on a real SQLite file, so the order of events is exactly as written.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tally_app::Tally;
use tally_core::SourceName;
use tally_core::event::parse_event;
use tally_core::inbound::SourcedEvent;
use tally_core::ports::queues;
use tally_embedded::Embedded;

async fn apply(tally: &Tally, source: &SourceName, v: Value) {
    let e = parse_event(&v, chrono::Utc::now()).unwrap();
    assert!(tally.check(&e).await.unwrap().is_empty());
    tally.apply_to_ledger(source, &e).await.unwrap();
}

#[tokio::test]
async fn a_short_order_is_rerouted_once_stock_arrives_and_approval_reserves_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Embedded::open(&dir.path().join("tally.db")).unwrap();
    let tally = Tally::new(Arc::new(db.clone()), Arc::new(db));
    tally
        .put_source(
            "erp",
            &json!({"platform": "tally", "secret": "erp-secret-0123456789"}),
        )
        .await
        .unwrap();
    tally
        .put_product("TSHIRT-M", &json!({"currency": "EUR"}))
        .await
        .unwrap();
    let erp = SourceName::parse("erp").unwrap();
    let count = |id: &str, loc: &str, n: u32| {
        json!({"id": id, "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
               "data": {"sku": "TSHIRT-M", "location": loc, "on_hand": n}})
    };
    apply(&tally, &erp, count("c1", "WH-AMS", 2)).await;
    apply(
        &tally,
        &erp,
        json!({"id": "o-1", "type": "order.placed", "occurred_at": "2026-12-03T10:01:00Z",
               "data": {"order_id": "1001", "channel": "erp", "currency": "EUR",
                        "lines": [{"sku": "TSHIRT-M", "qty": 5, "unit_price": "19.99"}]}}),
    )
    .await;
    // Stock arrives at another warehouse before order handling looks.
    apply(&tally, &erp, count("c2", "WH-RTM", 10)).await;

    let short = tally
        .queue
        .receive(queues::ORDER, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(short.len(), 1, "one order.short follow-up");
    let e: SourcedEvent = serde_json::from_str(&short[0].body).unwrap();
    let id = tally
        .recommend_for(&e.source, &e.event)
        .await
        .unwrap()
        .expect("an action");
    let action = tally.action_view(&id).await.unwrap();
    assert_eq!(action["kind"], "reroute", "{action}");
    assert!(
        action["rationale"].as_str().unwrap().contains("WH-RTM"),
        "{action}"
    );
    assert_eq!(tally.stock_view("TSHIRT-M").await.unwrap()["reserved"], 0);

    let done = tally
        .decide_action(&id, true, &json!({"actor": "ana"}))
        .await
        .unwrap();
    assert_eq!(done["status"], "executed");
    let stock = tally.stock_view("TSHIRT-M").await.unwrap();
    let rtm = stock["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "WH-RTM")
        .unwrap()
        .clone();
    assert_eq!(
        (rtm["reserved"].as_u64(), stock["reserved"].as_u64()),
        (Some(5), Some(5))
    );
    // Approving again changes nothing more.
    assert!(
        tally
            .decide_action(&id, true, &json!({"actor": "ben"}))
            .await
            .is_err()
    );
    assert_eq!(tally.stock_view("TSHIRT-M").await.unwrap()["reserved"], 5);
}
