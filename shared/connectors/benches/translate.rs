//! The ingest hot path on real Shopify payloads: verify the signature over
//! the raw body, translate, and validate into canonical events.
//! `cargo bench -p tally-connectors`

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_connectors::{Context, Headers, Mappings, shopify, translate};
use tally_core::SourceName;
use tally_core::catalog::{Platform, Source};
use tally_core::inbound::Delivery;

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
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("verify+translate+validate/{name}"), |b| {
            b.iter(|| {
                shopify::verify(SECRET, &headers, black_box(body.as_bytes())).unwrap();
                let delivery = Delivery {
                    id: "d".into(),
                    source: source.name.clone(),
                    platform: Platform::Shopify,
                    received_at: Utc::now(),
                    headers: headers.clone(),
                    body: body.to_owned(),
                };
                let ctx = Context {
                    source: &source,
                    mappings: &mappings,
                    now: Utc::now(),
                };
                let out = translate(&delivery, &ctx);
                assert!(out[0].result.is_ok());
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
