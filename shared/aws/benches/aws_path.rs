//! The AWS path under load, on DynamoDB Local and moto's SQS, against the
//! emulators' own ceiling measured in the same run:
//!
//! - **ceiling**: `WORKERS` tasks committing the ledger step's write shape
//!   (marker, version-checked stock record, audit record) in one
//!   TransactWriteItems each, as fast as DynamoDB Local takes them.
//! - **emulators' path ceiling**: the same messages through the same
//!   pollers, each answered by one bare write of that shape: what moto and
//!   DynamoDB Local allow this path before any of Tally's own work.
//! - **path**: stock adjustments on 200 SKUs queued on a FIFO stock queue,
//!   received by `WORKERS` pollers 10 at a time and applied by the real
//!   update-stock handler, as Lambda's event-source mapping would; events/s
//!   and its share of both ceilings.
//! - **hot SKU**: single-unit orders on one SKU (one FIFO group each)
//!   through the same handler, batching its SQS batch into one commit
//!   (`ledger_batch` 10) and one commit per order (1): orders/s, oversells.
//!
//! Needs the emulators: `infra/bench/aws.sh` starts them and runs this.
//! Sizes: `TALLY_BENCH_EVENTS` (default 2000), `TALLY_BENCH_HOT_ORDERS`
//! (default 300), `TALLY_BENCH_SECONDS` for the ceiling (default 10).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::{Value, json};
use tally_app::{LedgerStep, Tally};
use tally_aws::handlers::update_stock;
use tally_aws::{DynamoStore, SqsQueue};
use tally_core::SourceName;
use tally_core::audit::Cause;
use tally_core::entity::Entity;
use tally_core::event::{Event, parse_event};
use tally_core::ledger::{LocationStock, StockRecord};
use tally_core::ports::{Expect, Put, Store, Transaction, queues};
use tally_core::{LocationId, Sku};
use tokio::task::JoinSet;

/// Concurrent writers, and concurrent Lambda invocations of the handler.
const WORKERS: usize = 8;
const SKUS: usize = 200;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let events = env_or("TALLY_BENCH_EVENTS", 2_000);
    let hot_orders = env_or("TALLY_BENCH_HOT_ORDERS", 300);
    let seconds = env_or("TALLY_BENCH_SECONDS", 10) as u64;

    let sdk = support::sdk().await;
    let (state, audit, suffix) = support::fresh_tables(&sdk, "bench").await;
    let urls =
        support::create_queue(&sdk, queues::STOCK, &format!("bench-stock-{suffix}"), 5).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        state,
        audit,
    ));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = Arc::new(SqsQueue::new(sqs.clone(), urls.clone()));
    let tally = Tally::new(store.clone(), queue).with_ledger_step(LedgerStep::Queued);
    for i in 0..SKUS {
        tally
            .put_product(&format!("BENCH-{i:04}"), &json!({"currency": "EUR"}))
            .await
            .unwrap();
    }
    let erp = SourceName::parse("erp").unwrap();

    eprintln!("aws bench: ceiling, {WORKERS} writers for {seconds} s");
    let ceiling = ceiling(store.clone(), Duration::from_secs(seconds)).await;

    eprintln!("aws bench: path, {events} adjustments through update-stock");
    let adjustments: Vec<Event> = (0..events)
        .map(|i| {
            event(json!({"id": format!("adj-{i}"), "type": "stock.adjusted", "occurred_at": chrono::Utc::now(),
                "data": {"sku": format!("BENCH-{:04}", i % SKUS), "location": "WH-1", "delta": 1, "reason": "bench"}}))
        })
        .collect();
    // What the emulators allow this path: the same messages through the
    // same pollers, each answered by one bare write of the ledger step's
    // shape instead of the handler.
    let bare: Vec<Event> = adjustments
        .iter()
        .map(|e| Event {
            id: format!("bare-{}", e.id),
            ..e.clone()
        })
        .collect();
    enqueue(&tally, &erp, &bare).await;
    let writes = Arc::new(AtomicUsize::new(0));
    let bare_s = drain(&sqs, &urls[queues::STOCK], events, move |e| {
        let (store, writes) = (store.clone(), writes.clone());
        async move {
            for _ in &e.records {
                let n = writes.fetch_add(1, Ordering::Relaxed);
                store
                    .commit(step_shape(&format!("BARE-{n}"), n, None))
                    .await
                    .unwrap();
            }
            SqsBatchResponse::default()
        }
    })
    .await;
    let emulators = events as f64 / bare_s;

    enqueue(&tally, &erp, &adjustments).await;
    let t = tally.clone();
    let path_s = drain(&sqs, &urls[queues::STOCK], events, move |e| {
        let t = t.clone();
        async move { update_stock::handle(&t, e).await }
    })
    .await;
    let path = events as f64 / path_s;

    let mut hot = BTreeMap::new();
    for batch in [10, 1] {
        let sku = format!("HOT-{batch}");
        eprintln!("aws bench: hot SKU {sku}, {hot_orders} orders, ledger batch {batch}");
        tally
            .put_product(&sku, &json!({"currency": "EUR"}))
            .await
            .unwrap();
        let units = hot_orders / 3;
        let count = event(
            json!({"id": format!("count-{sku}"), "type": "stock.counted",
            "occurred_at": chrono::Utc::now(), "data": {"sku": sku, "location": "WH-1", "on_hand": units}}),
        );
        tally.apply_to_ledger(&erp, &count).await.unwrap();
        let orders: Vec<Event> = (0..hot_orders)
            .map(|i| {
                event(json!({"id": format!("{sku}-o-{i}"), "type": "order.placed", "occurred_at": chrono::Utc::now(),
                    "data": {"order_id": format!("{sku}-{i}"), "channel": "web", "currency": "EUR",
                             "lines": [{"sku": sku, "qty": 1, "unit_price": "19.99"}]}}))
            })
            .collect();
        enqueue(&tally, &erp, &orders).await;
        let t = tally.clone().with_ledger_batch(batch);
        let secs = drain(&sqs, &urls[queues::STOCK], hot_orders, move |e| {
            let t = t.clone();
            async move { update_stock::handle(&t, e).await }
        })
        .await;
        let stock = tally.stock_view(&sku).await.unwrap();
        let reserved = stock["reserved"].as_u64().unwrap_or(0);
        hot.insert(
            format!("ledger_batch_{batch}"),
            json!({"orders": hot_orders, "units": units, "reserved": reserved,
                   "oversold": reserved.saturating_sub(stock["on_hand"].as_u64().unwrap_or(0)),
                   "orders_per_s": (hot_orders as f64 / secs).round()}),
        );
    }
    let speedup = hot["ledger_batch_10"]["orders_per_s"]
        .as_f64()
        .unwrap_or(0.0)
        / hot["ledger_batch_1"]["orders_per_s"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1e-9);

    let pct = |x: f64, of: f64| (x / of * 1000.0).round() / 10.0;
    let report = json!({
        "dynamodb_write_ceiling_tx_per_s": ceiling.round(),
        "emulators_path_ceiling_events_per_s": emulators.round(),
        "path_events_per_s": path.round(),
        "path_share_of_emulators_path_ceiling_pct": pct(path, emulators),
        "path_share_of_dynamodb_write_ceiling_pct": pct(path, ceiling),
        "hot_sku": hot,
        "hot_sku_batching_speedup": (speedup * 10.0).round() / 10.0,
    });
    println!("{report:#}");
}

fn event(v: Value) -> Event {
    parse_event(&v, chrono::Utc::now()).unwrap()
}

/// Queues `events` as validate would: FIFO by order (or SKU).
async fn enqueue(tally: &Tally, source: &SourceName, events: &[Event]) {
    let messages = events
        .iter()
        .map(|e| tally_app::pipeline::event_message(source, e).unwrap())
        .collect::<Vec<_>>();
    for chunk in messages.chunks(100) {
        tally
            .queue
            .send(queues::STOCK, chunk.to_vec())
            .await
            .unwrap();
    }
}

/// The ledger step's write for one stock record: its new state
/// (version-checked), one audit record and the event's marker.
fn step_shape(sku: &str, n: usize, version: Option<u64>) -> Transaction {
    let sku = Sku::parse(sku).unwrap();
    let mut record = StockRecord::new(sku.clone());
    record.locations.insert(
        LocationId::parse("WH-1").unwrap(),
        LocationStock {
            on_hand: n as u32,
            ..Default::default()
        },
    );
    let cause = Cause::system(format!("bench:{sku}-{n}"), chrono::Utc::now());
    Transaction {
        puts: vec![Put {
            entity: Entity::Stock(record),
            expect: version.map_or(Expect::Absent, Expect::Version),
        }],
        audit: vec![cause.record(
            0,
            format!("stock:{sku}@WH-1"),
            "stock.counted",
            Value::Null,
            json!({"on_hand": n}),
            Value::Null,
        )],
        applied: vec![cause.key.clone()],
        ..Default::default()
    }
}

/// The emulator's ceiling for the ledger step's write: each writer on its
/// own stock record, so nothing conflicts.
async fn ceiling(store: Arc<DynamoStore>, run: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WORKERS {
        let (store, done) = (store.clone(), done.clone());
        writers.spawn(async move {
            let mut version = None;
            while started.elapsed() < run {
                let n = done.fetch_add(1, Ordering::Relaxed);
                let tx = step_shape(&format!("CEIL-{w}"), n, version);
                store.commit(tx).await.unwrap();
                version = Some(version.map_or(1, |v| v + 1));
            }
        });
    }
    while writers.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `WORKERS` pollers as Lambda's SQS mapping would run them: receive up to
/// 10, invoke the handler, delete what succeeded, release the failures.
/// Returns the seconds until `expected` messages were done.
async fn drain<H, Fut>(sqs: &aws_sdk_sqs::Client, url: &str, expected: usize, handler: H) -> f64
where
    H: Fn(SqsEvent) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = SqsBatchResponse> + Send,
{
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut pollers = JoinSet::new();
    for _ in 0..WORKERS {
        let (sqs, url, handler, done) =
            (sqs.clone(), url.to_owned(), handler.clone(), done.clone());
        pollers.spawn(async move {
            while done.load(Ordering::Relaxed) < expected {
                assert!(
                    started.elapsed() < Duration::from_secs(1800),
                    "the queue never drained"
                );
                let (received, applied) = support::poll_once(&sqs, &url, &handler).await;
                done.fetch_add(applied, Ordering::Relaxed);
                if received == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
    while pollers.join_next().await.is_some() {}
    started.elapsed().as_secs_f64()
}
