//! Encoding the persistence primitive for DynamoDB: a ledger step's
//! transaction (a two-line order reserved across two warehouses, with its
//! audit records, marker and follow-up) and a batch of ten hot-SKU orders,
//! into TransactWriteItems. No network: the client is never called.
//! `cargo bench -p tally-aws --bench encode`

use std::collections::BTreeMap;
use std::hint::black_box;

use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_aws::DynamoStore;
use tally_core::audit::Cause;
use tally_core::entity::Entity;
use tally_core::event::{Event, parse_event};
use tally_core::ledger::{LocationStock, Snapshot, StockRecord, apply};
use tally_core::ports::{Expect, Message, OutboxMessage, Put, Transaction};
use tally_core::{LocationId, Sku};

fn stock(sku: &str, at: &[(&str, u32)]) -> StockRecord {
    let mut s = StockRecord::new(Sku::parse(sku).unwrap());
    for (loc, n) in at {
        s.locations.insert(
            LocationId::parse(loc).unwrap(),
            LocationStock {
                on_hand: *n,
                ..Default::default()
            },
        );
    }
    s
}

fn order(id: &str, lines: serde_json::Value) -> Event {
    parse_event(
        &serde_json::json!({"id": id, "type": "order.placed", "occurred_at": Utc::now(),
            "data": {"order_id": id, "channel": "shopify", "currency": "EUR", "lines": lines}}),
        Utc::now(),
    )
    .unwrap()
}

/// The ledger's decisions on `events`, in turn, as one transaction.
fn transaction(mut stocks: BTreeMap<Sku, StockRecord>, events: &[Event]) -> Transaction {
    let mut tx = Transaction::default();
    for e in events {
        let cause = Cause::system(format!("shop:{}", e.id), Utc::now());
        let out = apply(
            &Snapshot {
                stocks: stocks.clone(),
                order: None,
            },
            e,
            &cause,
        );
        for s in out.stocks {
            stocks.insert(s.sku.clone(), s);
        }
        if let Some(o) = out.order {
            tx.puts.push(Put {
                entity: Entity::Order(o),
                expect: Expect::Absent,
            });
        }
        tx.audit.extend(out.audit);
        tx.applied.push(cause.key.clone());
        tx.outbox
            .extend(out.follow_ups.iter().map(|f| OutboxMessage {
                queue: "order".into(),
                message: Message {
                    body: serde_json::to_string(f).unwrap(),
                    group: Some(e.id.clone()),
                    dedup_id: Some(f.id.clone()),
                },
            }));
    }
    tx.puts.extend(stocks.into_values().map(|s| Put {
        entity: Entity::Stock(s),
        expect: Expect::Version(7),
    }));
    tx
}

fn bench(c: &mut Criterion) {
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .build(),
    );
    let store = DynamoStore::new(client, "tally-state", "tally-audit");

    let two = [("TSHIRT-M", "WH-AMS", 40), ("MUG-BLK", "WH-RTM", 25)];
    let stocks = two
        .iter()
        .map(|(s, l, n)| (Sku::parse(s).unwrap(), stock(s, &[(l, *n), ("WH-BER", 3)])))
        .collect();
    let step = transaction(
        stocks,
        &[order(
            "1001",
            serde_json::json!([{"sku": "TSHIRT-M", "qty": 2, "unit_price": "19.99"},
                               {"sku": "MUG-BLK", "qty": 1, "unit_price": "9.50"}]),
        )],
    );
    let hot = BTreeMap::from([(
        Sku::parse("HOT-1").unwrap(),
        stock("HOT-1", &[("WH-AMS", 500)]),
    )]);
    let orders: Vec<Event> = (0..10)
        .map(|i| {
            order(
                &format!("{}", 2000 + i),
                serde_json::json!([{"sku": "HOT-1", "qty": 1, "unit_price": "19.99"}]),
            )
        })
        .collect();
    let batch = transaction(hot, &orders);

    let mut g = c.benchmark_group("dynamodb_encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("ledger step ({} items)", step.items()), |b| {
        b.iter(|| black_box(store.encode(black_box(&step)).unwrap()))
    });
    g.throughput(Throughput::Elements(orders.len() as u64));
    g.bench_function(
        format!("10 hot-SKU orders in one ({} items)", batch.items()),
        |b| b.iter(|| black_box(store.encode(black_box(&batch)).unwrap())),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
