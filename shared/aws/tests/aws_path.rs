//! The AWS path end to end, on DynamoDB Local and moto: signed deliveries
//! into the ingest function's Router (as API Gateway hands them over), then
//! the real validate, update-stock and publish handlers driven from the
//! queues and the state table's stream exactly as Lambda's event-source
//! mappings would: receive, hand over Lambda-shaped JSON, delete what the
//! handler did not report as failed. The same deliveries go through the
//! embedded stack, and both must end in the same ledger.

#[path = "../../../tests/e2e/support/platforms.rs"]
mod platforms;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use axum::body::Body;
use serde_json::{Value, json};
use tally_app::Tally;
use tally_app::http::{AppState, router};
use tally_aws::handlers;
use tally_aws::{DynamoStore, SqsQueue};
use tally_core::ports::queues;
use tower::ServiceExt;

const TOKEN: &str = "aws-path-token";
const ERP_SECRET: &str = "erp-secret-0123456789";
const SHOP_SECRET: &str = "shopify-app-secret-0123456789";

struct AwsStack {
    tally: Tally,
    sqs: aws_sdk_sqs::Client,
    urls: BTreeMap<String, String>,
    pump: support::StreamPump,
}

impl AwsStack {
    async fn new() -> AwsStack {
        let sdk = support::sdk().await;
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let (state, audit) = (format!("state-{run}"), format!("audit-{run}"));
        support::create_tables(&sdk, &state, &audit).await;
        let mut urls = BTreeMap::new();
        for q in [
            queues::INBOUND,
            queues::STOCK,
            queues::ORDER,
            queues::SIGNAL,
            queues::OUTBOUND,
        ] {
            urls.extend(support::create_queue(&sdk, q, &format!("{q}-{run}"), 5).await);
        }
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), state.clone(), audit);
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), urls.clone());
        let tally = Tally::new(Arc::new(store), Arc::new(queue))
            .with_ledger_step(tally_app::LedgerStep::Queued);
        AwsStack {
            tally,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            pump: support::StreamPump::new(&sdk, &state).await,
            urls,
        }
    }

    /// One poll of a queue's event-source mapping: receive up to 10, invoke,
    /// delete what succeeded, make the failures visible again.
    async fn poll<F, Fut>(&self, queue: &str, handler: F) -> usize
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        support::poll_once(&self.sqs, &self.urls[queue], handler)
            .await
            .0
    }

    /// Runs the mappings until nothing moves: inbound → validate, stock →
    /// update-stock (several invocations at once, as Lambda scales out over
    /// FIFO groups), state stream → publish.
    async fn settle(&mut self) {
        for _ in 0..500 {
            let mut moved = self
                .poll(queues::INBOUND, |e| {
                    handlers::validate::handle(&self.tally, e)
                })
                .await;
            let update_stock = |e| handlers::update_stock::handle(&self.tally, e);
            let (a, b, c, d) = tokio::join!(
                self.poll(queues::STOCK, update_stock),
                self.poll(queues::STOCK, update_stock),
                self.poll(queues::STOCK, update_stock),
                self.poll(queues::STOCK, update_stock),
            );
            moved += a + b + c + d;
            let stream: aws_lambda_events::dynamodb::Event =
                serde_json::from_value(self.pump.next_event().await).unwrap();
            if !stream.records.is_empty() {
                moved += stream.records.len();
                let resp = handlers::publish::handle(&self.tally, stream).await;
                assert!(resp.batch_item_failures.is_empty(), "publish failed");
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the AWS path never settled");
    }

    /// Every message body on a queue, left in place.
    async fn peek_all(&self, queue: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut receipts = vec![];
        for _ in 0..20 {
            let resp = self
                .sqs
                .receive_message()
                .queue_url(&self.urls[queue])
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await
                .unwrap();
            if resp.messages().is_empty() {
                break;
            }
            for m in resp.messages() {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
                receipts.push(m.receipt_handle().unwrap().to_owned());
            }
        }
        for r in receipts {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.urls[queue])
                .receipt_handle(r)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        out
    }
}

struct LocalStack {
    tally: Tally,
    _dir: tempfile::TempDir,
}

impl LocalStack {
    fn new() -> LocalStack {
        let dir = tempfile::tempdir().unwrap();
        let db = tally_embedded::Embedded::open(&dir.path().join("tally.db")).unwrap();
        LocalStack {
            tally: Tally::new(Arc::new(db.clone()), Arc::new(db)),
            _dir: dir,
        }
    }

    async fn settle(&self) {
        loop {
            let batch = self
                .tally
                .queue
                .receive(queues::INBOUND, 10, Duration::from_secs(30))
                .await
                .unwrap();
            if batch.is_empty() {
                return;
            }
            for m in batch {
                let d = serde_json::from_str(&m.body).unwrap();
                self.tally.process_delivery(&d).await.unwrap();
                self.tally
                    .queue
                    .delete(queues::INBOUND, &m.receipt)
                    .await
                    .unwrap();
            }
        }
    }
}

/// An API Gateway HTTP API (payload 2.0) request, as Lambda hands it to the
/// ingest and api functions.
fn apigw(method: &str, path: &str, headers: &[(&str, String)], body: &str) -> lambda_http::Request {
    let mut h = serde_json::Map::new();
    h.insert("content-type".into(), json!("application/json"));
    for (k, v) in headers {
        h.insert(k.to_lowercase(), json!(v));
    }
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": h, "isBase64Encoded": false, "body": body,
        "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName": "local",
                           "domainPrefix": "local", "requestId": uuid::Uuid::new_v4().to_string(),
                           "routeKey": "$default", "stage": "$default", "time": "03/Dec/2026:10:00:00 +0000",
                           "timeEpoch": 0,
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "test"}}
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

async fn call(tally: &Tally, req: lambda_http::Request) -> (u16, Value) {
    let app = router(AppState {
        tally: tally.clone(),
        admin_token: TOKEN.into(),
        wake: None,
        feed: None,
    });
    let (parts, body) = req.into_parts();
    let req = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn admin(tally: &Tally, method: &str, path: &str, body: Value) -> Value {
    let (status, v) = call(
        tally,
        apigw(
            method,
            path,
            &[("authorization", format!("Bearer {TOKEN}"))],
            &body.to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

async fn events(tally: &Tally, events: Value) -> u16 {
    let body = events.to_string();
    let sig =
        tally_connectors::tally::sign(ERP_SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
    call(
        tally,
        apigw("POST", "/events/erp", &[("x-tally-signature", sig)], &body),
    )
    .await
    .0
}

async fn shopify(tally: &Tally, topic: &str, id: &str, body: &[u8]) -> u16 {
    let sig = tally_connectors::shopify::sign(SHOP_SECRET, body);
    let headers = [
        ("x-shopify-topic", topic.to_owned()),
        ("x-shopify-hmac-sha256", sig),
        ("x-shopify-webhook-id", id.to_owned()),
    ];
    call(
        tally,
        apigw(
            "POST",
            "/webhooks/shopify/shop",
            &headers,
            std::str::from_utf8(body).unwrap(),
        ),
    )
    .await
    .0
}

fn count(id: &str, sku: &str, location: &str, n: u32, at: &str) -> Value {
    json!({"id": id, "type": "stock.counted", "occurred_at": at, "data": {"sku": sku, "location": location, "on_hand": n}})
}

fn order(id: &str, sku: &str, qty: u32) -> Value {
    json!({"id": id, "type": "order.placed", "occurred_at": "2026-12-03T10:05:00Z",
           "data": {"order_id": id, "channel": "erp", "currency": "USD", "lines": [{"sku": sku, "qty": qty, "unit_price": "9.99"}]}})
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/events")
            .join(path),
    )
    .unwrap()
}

/// The same merchant day, phase by phase, through one stack.
/// `shop_api`: the Shopify source's push settings.
async fn run_day(tally: &Tally, shop_api: Value, mut settle: impl AsyncFnMut()) {
    admin(
        tally,
        "PUT",
        "/v1/sources/erp",
        json!({"platform": "tally", "secret": ERP_SECRET}),
    )
    .await;
    admin(
        tally,
        "PUT",
        "/v1/sources/shop",
        json!({"platform": "shopify", "secret": SHOP_SECRET, "channel": "shopify", "api": shop_api}),
    )
    .await;
    admin(
        tally,
        "PUT",
        "/v1/locations/WH-AMS",
        json!({"aliases": ["shopify:71234567890"]}),
    )
    .await;
    for (n, sku) in ["TSHIRT-M", "MUG-BLK", "HOT-1"].iter().enumerate() {
        admin(
            tally,
            "PUT",
            &format!("/v1/products/{sku}"),
            json!({"currency": "USD", "channel_buffers": {"shopify": 1},
                   "channel_refs": {"shopify": {"inventory_item_id": format!("{}", 1001 + n)}}}),
        )
        .await;
    }
    // Counts, one stale, one duplicated.
    assert_eq!(
        events(
            tally,
            json!([
                count("c1", "TSHIRT-M", "WH-AMS", 10, "2026-12-03T09:00:00Z"),
                count("c2", "TSHIRT-M", "WH-RTM", 3, "2026-12-03T09:00:00Z"),
                count("c3", "MUG-BLK", "WH-AMS", 10, "2026-12-03T09:00:00Z"),
                count("c4", "HOT-1", "WH-AMS", 10, "2026-12-03T09:00:00Z"),
                count("c0", "MUG-BLK", "WH-AMS", 99, "2026-12-03T08:00:00Z"),
            ])
        )
        .await,
        202
    );
    events(
        tally,
        json!(count(
            "c1",
            "TSHIRT-M",
            "WH-AMS",
            10,
            "2026-12-03T09:00:00Z"
        )),
    )
    .await;
    settle().await;
    // A Shopify order, then an order too large for what is left, an
    // adjustment.
    assert_eq!(
        shopify(
            tally,
            "orders/create",
            "wh-1",
            &fixture("shopify/orders_create.json")
        )
        .await,
        202
    );
    // Orders of different order ids are different FIFO groups, which SQS
    // may deliver in either order: settle so both stacks see the same one.
    settle().await;
    events(tally, json!(order("big-1", "TSHIRT-M", 12))).await;
    events(tally, json!({"id": "adj-1", "type": "stock.adjusted", "occurred_at": "2026-12-03T10:06:00Z",
                         "data": {"sku": "MUG-BLK", "location": "WH-AMS", "delta": -2, "reason": "broken"}})).await;
    settle().await;
    // The Shopify order is cancelled; a burst of single-unit orders on the
    // hot SKU, three times what is there.
    shopify(
        tally,
        "orders/cancelled",
        "wh-2",
        &fixture("shopify/orders_cancelled.json"),
    )
    .await;
    for n in 0..30 {
        assert_eq!(
            events(tally, json!(order(&format!("hot-{n}"), "HOT-1", 1))).await,
            202
        );
    }
    settle().await;
}

async fn ledger(tally: &Tally) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for sku in ["TSHIRT-M", "MUG-BLK", "HOT-1"] {
        let mut v = admin(tally, "GET", &format!("/v1/stock/{sku}"), Value::Null).await;
        v.as_object_mut().unwrap().remove("updated_at");
        out.insert(sku.to_owned(), v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn the_aws_path_and_the_embedded_stack_agree_and_never_oversell() {
    let mut aws = AwsStack::new().await;
    let local = LocalStack::new();

    let aws_tally = aws.tally.clone();
    let aws_ref = &mut aws;
    let shop = platforms::Fake::start(platforms::Platform::Shopify);
    let shop_api = json!({"base_url": shop.base, "access_token": platforms::SHOPIFY_TOKEN, "location_id": "71234567890"});
    run_day(&aws_tally, shop_api.clone(), async || {
        aws_ref.settle().await
    })
    .await;
    // The embedded stack runs no push worker here: it only decides.
    run_day(&local.tally, shop_api, async || local.settle().await).await;

    let (on_aws, on_sqlite) = (ledger(&aws.tally).await, ledger(&local.tally).await);
    assert_eq!(on_aws, on_sqlite, "the two backends disagree");

    let hot = &on_aws["HOT-1"];
    assert_eq!(
        (
            hot["on_hand"].as_u64(),
            hot["reserved"].as_u64(),
            hot["available"].as_u64()
        ),
        (Some(10), Some(10), Some(0))
    );
    assert_eq!(
        on_aws["TSHIRT-M"]["reserved"], 0,
        "the big order was short and the Shopify one cancelled"
    );
    assert_eq!(
        on_aws["MUG-BLK"]["on_hand"], 8,
        "stale count ignored, adjustment applied"
    );
    assert_eq!(on_aws["MUG-BLK"]["channels"]["shopify"], 7);

    // order.short follow-ups went out through the outbox: 20 hot-SKU
    // orders and the big one.
    let shorts: Vec<Value> = aws
        .peek_all(queues::ORDER)
        .await
        .into_iter()
        .filter(|m| m["event"]["type"] == "order.short")
        .collect();
    assert_eq!(shorts.len(), 21, "{shorts:?}");
    // The state stream told the channels' queue about every stock change
    // (the figures are read when pushing, so the messages carry none); the
    // push function, driven as its SQS mapping would, ends each channel at
    // the ledger's figure less its buffer, in a few coalesced writes.
    let seen = std::sync::Mutex::new(Vec::<Value>::new());
    for _ in 0..50 {
        let moved = aws
            .poll(queues::OUTBOUND, |e| {
                for r in &e.records {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_str(r.body.as_deref().unwrap()).unwrap());
                }
                handlers::push::handle(&aws.tally, e)
            })
            .await;
        if moved == 0 {
            break;
        }
    }
    let outbound = seen.into_inner().unwrap();
    let hot_changes = outbound
        .iter()
        .filter(|m| {
            m["type"] == "stock.changed" && m["sku"] == "HOT-1" && m["channel"] == "shopify"
        })
        .count();
    // One per committed change of HOT-1: its count, and its reservations,
    // which update-stock commits a batch at a time.
    assert!(hot_changes >= 2, "one per change of HOT-1: {outbound:?}");
    for (n, sku) in ["TSHIRT-M", "MUG-BLK", "HOT-1"].iter().enumerate() {
        let item = format!("gid://shopify/InventoryItem/{}", 1001 + n);
        assert_eq!(
            shop.stock_of(&item),
            on_aws[*sku]["channels"]["shopify"].as_i64(),
            "{sku} at Shopify"
        );
    }
    let writes = shop.calls("inventorySetQuantities").len();
    assert!(
        writes <= 6 && writes < outbound.len() / 3,
        "{writes} writes for {} changes: not coalesced",
        outbound.len()
    );
    let channels = admin(&aws.tally, "GET", "/v1/channels", Value::Null).await;
    let shopify = channels["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "shopify")
        .unwrap()
        .clone();
    assert_eq!(
        (shopify["pending"].as_u64(), shopify["failures"].as_u64()),
        (Some(0), Some(0)),
        "{shopify}"
    );
}
