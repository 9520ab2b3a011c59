//! The pure decisions: a ledger step (reserve an order across locations)
//! and a pricing decision. `cargo bench -p tally-core`

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use tally_core::audit::Cause;
use tally_core::event::{Event, EventBody, OrderLine, OrderPlaced};
use tally_core::ledger::{LocationStock, Snapshot, StockRecord, apply};
use tally_core::pricing::{CompetitorPrice, Inputs, Policy, decide};
use tally_core::{Channel, Currency, LocationId, OrderId, Quantity, Sku};

fn bench(c: &mut Criterion) {
    let skus: Vec<Sku> = ["TSHIRT-M", "MUG-BLK"]
        .iter()
        .map(|s| Sku::parse(s).unwrap())
        .collect();
    let stocks: BTreeMap<Sku, StockRecord> = skus
        .iter()
        .map(|sku| {
            let mut s = StockRecord::new(sku.clone());
            for (loc, n) in [("WH-AMS", 40), ("WH-RTM", 25)] {
                s.locations.insert(
                    LocationId::parse(loc).unwrap(),
                    LocationStock {
                        on_hand: n,
                        ..Default::default()
                    },
                );
            }
            (sku.clone(), s)
        })
        .collect();
    let event = Event {
        id: "o-1".into(),
        occurred_at: Utc::now(),
        body: EventBody::OrderPlaced(OrderPlaced {
            order_id: OrderId::parse("1001").unwrap(),
            channel: Channel::parse("shopify").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            lines: skus
                .iter()
                .map(|s| OrderLine {
                    sku: s.clone(),
                    qty: Quantity::new(2).unwrap(),
                    unit_price: Decimal::new(1999, 2),
                })
                .collect(),
            ship_to: None,
            total: None,
        }),
    };
    let snapshot = Snapshot {
        stocks,
        order: None,
    };
    let cause = Cause::system("shop:o-1", Utc::now());
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(1));
    g.bench_function("reserve a two-line order", |b| {
        b.iter(|| black_box(apply(black_box(&snapshot), &event, &cause)))
    });
    g.finish();

    let policy = Policy::parse(
        serde_json::json!({"min_margin_pct": "20", "competitor_strategy": "undercut", "max_step_pct": "5",
                           "low_cover_days": "3", "high_cover_days": "30", "price_ending": "0.99"})
        .as_object()
        .unwrap(),
        Some(Decimal::new(1000, 2)),
    )
    .unwrap();
    let now = Utc::now();
    let inputs = Inputs {
        unit_cost: Some(Decimal::new(1000, 2)),
        current: Decimal::new(1999, 2),
        available: 65,
        daily_sales: Decimal::new(45, 1),
        stock_event_at: Some(now - Duration::minutes(3)),
        competitors: BTreeMap::from([(
            "rival".to_owned(),
            CompetitorPrice {
                price: Decimal::new(1849, 2),
                at: now,
            },
        )]),
        last_changed_at: Some(now - Duration::hours(2)),
        now,
    };
    let mut g = c.benchmark_group("pricing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide", |b| {
        b.iter(|| black_box(decide(black_box(&policy), black_box(&inputs))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
