//! The ingest hot path on real Shopify payloads: verify the signature over
//! the raw body, translate, and validate into canonical events; then the
//! whole in-process chain, with the ledger step that reserves the order.
//! `cargo bench -p tally-connectors`

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_connectors::{Context, Headers, Mappings, shopify, translate};
use tally_core::audit::Cause;
use tally_core::catalog::{Platform, Source};
use tally_core::event::Event;
use tally_core::inbound::Delivery;
use tally_core::ledger::{LocationStock, Snapshot, StockRecord, apply};
use tally_core::{LocationId, Sku, SourceName};

const SECRET: &str = "shopify-app-secret-0123456789";

fn bench(c: &mut Criterion) {
    let source = Source::parse(
        &SourceName::parse("shop").unwrap(),
        &serde_json::json!({"platform": "shopify", "secret": SECRET}),
        None,
        Utc::now(),
    )
    .unwrap();
    let mappings = Mappings::default();
    let mut group = c.benchmark_group("shopify_order");
    for (name, body) in [
        (
            "3KB",
            include_str!("../../../tests/events/shopify/orders_create.json"),
        ),
        (
            "8KB",
            include_str!("../../../tests/events/shopify/orders_create_large.json"),
        ),
    ] {
        let headers: Headers = [
            ("x-shopify-topic".to_owned(), "orders/create".to_owned()),
            ("x-shopify-webhook-id".to_owned(), "wh-1".to_owned()),
            (
                "x-shopify-hmac-sha256".to_owned(),
                shopify::sign(SECRET, body.as_bytes()),
            ),
        ]
        .into();
        let delivery = || Delivery {
            id: "d".into(),
            source: source.name.clone(),
            platform: Platform::Shopify,
            received_at: Utc::now(),
            headers: headers.clone(),
            body: body.to_owned(),
        };
        // Verify, then translate and validate one delivery as ingest and
        // the validate step do.
        let translated = || -> Event {
            shopify::verify(SECRET, &headers, black_box(body.as_bytes())).unwrap();
            let ctx = Context {
                source: &source,
                mappings: &mappings,
                now: Utc::now(),
            };
            let mut out = translate(&delivery(), &ctx);
            out.pop().unwrap().result.unwrap()
        };
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("verify+translate+validate/{name}"), |b| {
            b.iter(|| black_box(translated()))
        });
        let snapshot = stocked(&translated());
        group.bench_function(
            format!("verify+translate+validate+ledger step/{name}"),
            |b| {
                b.iter(|| {
                    let event = translated();
                    let cause = Cause::system("shop:wh-1", Utc::now());
                    let outcome = apply(&snapshot, &event, &cause);
                    assert_eq!(outcome.stocks.len(), snapshot.stocks.len(), "reserved");
                    black_box(outcome)
                })
            },
        );
    }
    group.finish();
}

/// Every SKU the order names, stocked in two warehouses, so the ledger
/// step reserves the whole order.
fn stocked(order: &Event) -> Snapshot {
    let stocks = order
        .body
        .skus()
        .into_iter()
        .map(|sku: &Sku| {
            let mut s = StockRecord::new(sku.clone());
            for loc in ["WH-AMS", "WH-RTM"] {
                s.locations.insert(
                    LocationId::parse(loc).unwrap(),
                    LocationStock {
                        on_hand: 10_000,
                        ..Default::default()
                    },
                );
            }
            (sku.clone(), s)
        })
        .collect();
    Snapshot {
        stocks,
        order: None,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
