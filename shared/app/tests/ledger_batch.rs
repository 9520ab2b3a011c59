//! Ledger events applied as a batch, on a real SQLite file: many
//! reservations on one SKU are one commit with one version check, decided
//! in order; a batch never oversells; a duplicate inside a batch or one
//! applied before changes nothing; a batch gives the same ledger as the
//! same events one by one.

use std::sync::Arc;

use serde_json::{Value, json};
use tally_app::Tally;
use tally_app::pipeline::Outcome;
use tally_core::SourceName;
use tally_core::event::{Event, parse_event};
use tally_embedded::Embedded;

async fn stack(dir: &tempfile::TempDir, name: &str) -> Tally {
    let db = Embedded::open(&dir.path().join(format!("{name}.db"))).unwrap();
    let tally = Tally::new(Arc::new(db.clone()), Arc::new(db));
    tally
        .put_source(
            "erp",
            &json!({"platform": "tally", "secret": "erp-secret-0123456789"}),
        )
        .await
        .unwrap();
    tally
        .put_product("HOT-1", &json!({"currency": "EUR"}))
        .await
        .unwrap();
    tally
}

fn event(v: Value) -> Event {
    parse_event(&v, chrono::Utc::now()).unwrap()
}

fn count(id: &str, n: u32) -> Event {
    event(
        json!({"id": id, "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
                 "data": {"sku": "HOT-1", "location": "WH-AMS", "on_hand": n}}),
    )
}

fn order(i: usize, qty: u32) -> Event {
    event(
        json!({"id": format!("o-{i}"), "type": "order.placed", "occurred_at": "2026-12-03T10:01:00Z",
               "data": {"order_id": format!("ORDER-{i}"), "channel": "erp", "currency": "EUR",
                        "lines": [{"sku": "HOT-1", "qty": qty, "unit_price": "19.99"}]}}),
    )
}

async fn reserved(tally: &Tally) -> (i64, i64) {
    let v = tally.stock_view("HOT-1").await.unwrap();
    (
        v["reserved"].as_i64().unwrap(),
        v["available"].as_i64().unwrap(),
    )
}

async fn stock_audit(tally: &Tally) -> usize {
    tally
        .store
        .audit_for("stock:HOT-1@WH-AMS", 1000)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_batch_of_orders_on_the_last_units_reserves_exactly_the_stock_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tally = stack(&dir, "batch").await;
    let erp = SourceName::parse("erp").unwrap();
    tally.apply_to_ledger(&erp, &count("c1", 5)).await.unwrap();

    let orders: Vec<Event> = (0..8).map(|i| order(i, 1)).collect();
    let items: Vec<(&SourceName, &Event)> = orders.iter().map(|e| (&erp, e)).collect();
    let outcomes = tally.apply_batch_to_ledger(&items).await.unwrap();

    assert_eq!(outcomes, vec![Outcome::Applied; 8]);
    assert_eq!(reserved(&tally).await, (5, 0), "never more than on hand");
    // The first five in the batch got the units; the last three are short.
    for i in 0..8 {
        let o = tally
            .store
            .get(&[tally_core::entity::Key::order(
                &tally_core::OrderId::parse(&format!("ORDER-{i}")).unwrap(),
            )])
            .await
            .unwrap()
            .pop()
            .flatten()
            .and_then(|v| v.value.as_order().cloned())
            .unwrap();
        let short = o.status == tally_core::ledger::OrderStatus::Short;
        assert_eq!(short, i >= 5, "order {i} is {:?}", o.status);
    }
}

#[tokio::test]
async fn duplicates_inside_a_batch_and_from_before_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let tally = stack(&dir, "dup").await;
    let erp = SourceName::parse("erp").unwrap();
    tally.apply_to_ledger(&erp, &count("c1", 10)).await.unwrap();
    tally.apply_to_ledger(&erp, &order(0, 2)).await.unwrap();

    let batch = [order(0, 2), order(1, 3), order(1, 3), order(2, 1)];
    let items: Vec<(&SourceName, &Event)> = batch.iter().map(|e| (&erp, e)).collect();
    let outcomes = tally.apply_batch_to_ledger(&items).await.unwrap();

    assert_eq!(
        outcomes,
        vec![
            Outcome::Duplicate,
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Applied
        ]
    );
    assert_eq!(reserved(&tally).await, (6, 4), "2 + 3 + 1, each once");
    let again = tally.apply_batch_to_ledger(&items).await.unwrap();
    assert_eq!(again, vec![Outcome::Duplicate; 4]);
    assert_eq!(reserved(&tally).await, (6, 4));
}

#[tokio::test]
async fn a_batch_leaves_the_same_ledger_and_audit_as_one_event_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (batched, single) = (stack(&dir, "b").await, stack(&dir, "s").await);
    let erp = SourceName::parse("erp").unwrap();
    let mut events = vec![count("c1", 7)];
    events.extend((0..20).map(|i| order(i, 1 + (i as u32 % 3))));
    events.push(event(
        json!({"id": "x-1", "type": "order.cancelled", "occurred_at": "2026-12-03T10:02:00Z",
               "data": {"order_id": "ORDER-1"}}),
    ));
    events.push(order(99, 2));

    let items: Vec<(&SourceName, &Event)> = events.iter().map(|e| (&erp, e)).collect();
    batched.apply_batch_to_ledger(&items).await.unwrap();
    for e in &events {
        single.apply_to_ledger(&erp, e).await.unwrap();
    }

    assert_eq!(reserved(&batched).await, reserved(&single).await);
    assert_eq!(stock_audit(&batched).await, stock_audit(&single).await);
    let (r, a) = reserved(&batched).await;
    assert!(r <= 7 && a >= 0, "reserved {r}, available {a}");
}
