//! Per-SKU batching on a real SQLite file (WAL, fsync on every commit):
//! 32 single-unit orders on one hot SKU applied one commit per order, and
//! as one batch (one version-checked write of the stock record, every
//! order's record, audit and marker). `cargo bench -p tally-app --bench ledger_batch`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tally_app::Tally;
use tally_core::SourceName;
use tally_core::event::{Event, parse_event};
use tally_embedded::Embedded;

const ORDERS: usize = 32;

fn event(v: serde_json::Value) -> Event {
    parse_event(&v, chrono::Utc::now()).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Embedded::open(&dir.path().join("bench.db")).unwrap();
    let tally = Tally::new(Arc::new(db.clone()), Arc::new(db));
    let erp = SourceName::parse("erp").unwrap();
    rt.block_on(async {
        tally
            .put_product("HOT-1", &json!({"currency": "EUR"}))
            .await
            .unwrap();
        // Enough that no order of the run comes out short.
        let count = event(json!({"id": "count", "type": "stock.counted",
            "occurred_at": chrono::Utc::now(),
            "data": {"sku": "HOT-1", "location": "WH-AMS", "on_hand": 1_000_000_000u32}}));
        tally.apply_to_ledger(&erp, &count).await.unwrap();
    });
    let next = AtomicU64::new(0);
    let orders = || -> Vec<Event> {
        (0..ORDERS)
            .map(|_| {
                let n = next.fetch_add(1, Ordering::Relaxed);
                event(json!({"id": format!("o-{n}"), "type": "order.placed",
                    "occurred_at": chrono::Utc::now(),
                    "data": {"order_id": format!("ORDER-{n}"), "channel": "web", "currency": "EUR",
                             "lines": [{"sku": "HOT-1", "qty": 1, "unit_price": "19.99"}]}}))
            })
            .collect()
    };

    let mut g = c.benchmark_group("hot_sku_reservations");
    g.throughput(Throughput::Elements(ORDERS as u64));
    g.sample_size(20);
    g.bench_function("one commit per order", |b| {
        b.iter_batched(
            orders,
            |events| {
                rt.block_on(async {
                    for e in &events {
                        tally.apply_to_ledger(&erp, e).await.unwrap();
                    }
                })
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("one batch of 32", |b| {
        b.iter_batched(
            orders,
            |events| {
                rt.block_on(async {
                    let items: Vec<(&SourceName, &Event)> =
                        events.iter().map(|e| (&erp, e)).collect();
                    tally.apply_batch_to_ledger(&items).await.unwrap();
                })
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
