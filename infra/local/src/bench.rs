//! `tally bench`: the load script. It starts `tally serve` (this very
//! binary) on a fresh data folder, drives it over HTTP with signed canonical
//! events as a merchant's ERP would, and reports what it measured:
//!
//! - **max**: events sent as fast as `--concurrency` connections go; durable
//!   events/s (a 202 means the delivery is on disk) and applied events/s.
//! - **rate**: an open-loop `--rate` events/s for `--seconds`; lag from the
//!   moment a request is sent to the moment its ledger change is committed,
//!   read from the audit feed of the database (the commit's own record, not
//!   a poll of the API), as p50 / p99 / max.
//! - **hot SKU**: `--hot-orders` concurrent single-unit orders on one SKU
//!   with `--hot-units` in stock: reservations/s and oversells (must be 0).
//! - the server's peak RSS (`VmHWM`) over the whole run.
//!
//! Run it on a release build: `cargo run --release -p tally -- bench`.

use std::collections::HashMap;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tally_core::ports::ChangeFeed;
use tally_embedded::Embedded;

const TOKEN: &str = "bench-admin-token";
const SECRET: &str = "bench-secret-0123456789";
const SOURCE: &str = "bench";
const SKUS: usize = 200;
const LOCATION: &str = "WH-1";
const HOT_SKU: &str = "HOT-1";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Events in the as-fast-as-it-goes run.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Connections sending at once in the max and hot-SKU runs.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Events per second in the fixed-rate run.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// How long the fixed-rate run lasts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Single-unit orders on the hot SKU.
    #[arg(long, default_value_t = 2_000)]
    pub hot_orders: u64,
    /// Units of the hot SKU in stock.
    #[arg(long, default_value_t = 500)]
    pub hot_units: u64,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = Server::start(&data, &[])?;
    let client = Client::new(server.base.clone())?;
    client.configure().await?;
    let feed = Applied::follow(&data.join("tally.db"))?;

    let mut report = json!({});
    eprintln!(
        "bench: max run, {} events over {} connections",
        args.events, args.concurrency
    );
    report["max"] = max_run(&client, &feed, &args).await?;
    eprintln!(
        "bench: fixed rate, {} events/s for {} s",
        args.rate, args.seconds
    );
    report["rate"] = rate_run(&client, &feed, &args).await?;
    eprintln!(
        "bench: hot SKU, {} orders on {} units",
        args.hot_orders, args.hot_units
    );
    report["hot_sku"] = hot_run(&client, &feed, &args).await?;
    report["server_peak_rss_mb"] = json!(server.peak_rss_mb());
    drop(server);

    // The same hot-SKU run with one commit per order, for comparison.
    let data = dir.path().join("unbatched");
    let server = Server::start(&data, &[("TALLY_LEDGER_BATCH", "1")])?;
    let client = Client::new(server.base.clone())?;
    client.configure().await?;
    let feed = Applied::follow(&data.join("tally.db"))?;
    eprintln!("bench: hot SKU again, one commit per order");
    report["hot_sku_unbatched"] = hot_run(&client, &feed, &args).await?;
    let (batched, single) = (
        report["hot_sku"]["orders_per_s"].as_f64().unwrap_or(0.0),
        report["hot_sku_unbatched"]["orders_per_s"]
            .as_f64()
            .unwrap_or(0.0),
    );
    report["hot_sku_batching_speedup"] = json!((batched / single.max(1e-9) * 10.0).round() / 10.0);

    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(())
}

/// As fast as it goes: `concurrency` connections, one event per request.
async fn max_run(client: &Client, feed: &Applied, args: &Args) -> anyhow::Result<Value> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Utc::now();
    let t0 = Instant::now();
    let mut tasks = vec![];
    for _ in 0..args.concurrency {
        let (client, next, total) = (client.clone(), next.clone(), args.events);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let sku = format!("BENCH-{:04}", i as usize % SKUS);
                client.send(&adjustment(&format!("max-{i}"), &sku)).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let acked = t0.elapsed();
    let ids: Vec<String> = (0..args.events).map(|i| format!("max-{i}")).collect();
    let last = feed.wait_for(&ids, Duration::from_secs(600)).await?;
    let applied = (last - started).to_std().unwrap_or_default();
    Ok(json!({
        "events": args.events,
        "durable_per_s": per_s(args.events, acked),
        "applied_per_s": per_s(args.events, applied),
    }))
}

/// An open-loop fixed rate: each event is sent on its schedule whether or
/// not earlier ones were answered, so a slow server shows as lag.
async fn rate_run(client: &Client, feed: &Applied, args: &Args) -> anyhow::Result<Value> {
    let total = args.rate * args.seconds;
    let sent_at: Arc<Mutex<HashMap<String, DateTime<Utc>>>> = Arc::default();
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / args.rate as f64)).await;
        let (client, sent_at) = (client.clone(), sent_at.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("rate-{i}");
            let body = adjustment(&id, &format!("BENCH-{:04}", i as usize % SKUS));
            sent_at.lock().unwrap().insert(id, Utc::now());
            client.send(&body).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ids: Vec<String> = (0..total).map(|i| format!("rate-{i}")).collect();
    feed.wait_for(&ids, Duration::from_secs(600)).await?;
    let sent_at = sent_at.lock().unwrap();
    let mut lags: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let sent = sent_at.get(id)?;
            let applied = feed.applied_at(id)?;
            Some((applied - *sent).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    Ok(json!({
        "events": total,
        "rate_per_s": args.rate,
        "lag_ms": {
            "p50": percentile(&lags, 0.50),
            "p99": percentile(&lags, 0.99),
            "max": lags.last().copied().unwrap_or(0.0),
        },
    }))
}

/// Many concurrent orders on one SKU: exactly the stock is reserved, the
/// rest is short, and nothing is oversold.
async fn hot_run(client: &Client, feed: &Applied, args: &Args) -> anyhow::Result<Value> {
    let count = json!({"id": "hot-count", "type": "stock.counted", "occurred_at": Utc::now(),
        "data": {"sku": HOT_SKU, "location": LOCATION, "on_hand": args.hot_units}});
    client.send(&count.to_string()).await?;
    feed.wait_for(&["hot-count".to_owned()], Duration::from_secs(60))
        .await?;

    let next = Arc::new(AtomicU64::new(0));
    let started = Utc::now();
    let mut tasks = vec![];
    for _ in 0..args.concurrency {
        let (client, next, total) = (client.clone(), next.clone(), args.hot_orders);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let channel = ["webshop", "marketplace", "pos"][i as usize % 3];
                let order = json!({"id": format!("hot-{i}"), "type": "order.placed",
                    "occurred_at": Utc::now(),
                    "data": {"order_id": format!("HOT-ORDER-{i}"), "channel": channel, "currency": "EUR",
                             "lines": [{"sku": HOT_SKU, "qty": 1, "unit_price": "19.99"}]}});
                client.send(&order.to_string()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ids: Vec<String> = (0..args.hot_orders).map(|i| format!("hot-{i}")).collect();
    let last = feed.wait_for(&ids, Duration::from_secs(600)).await?;
    let elapsed = (last - started).to_std().unwrap_or_default();
    let stock = client.get(&format!("/v1/stock/{HOT_SKU}")).await?;
    let reserved = stock["reserved"].as_u64().unwrap_or(0);
    let on_hand = stock["on_hand"].as_u64().unwrap_or(0);
    Ok(json!({
        "orders": args.hot_orders,
        "units": args.hot_units,
        "reserved": reserved,
        "short": args.hot_orders.saturating_sub(reserved),
        "oversold": reserved.saturating_sub(on_hand),
        "orders_per_s": per_s(args.hot_orders, elapsed),
    }))
}

fn adjustment(id: &str, sku: &str) -> String {
    json!({"id": id, "type": "stock.adjusted", "occurred_at": Utc::now(),
           "data": {"sku": sku, "location": LOCATION, "delta": 1, "reason": "bench"}})
    .to_string()
}

fn per_s(n: u64, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[i] * 100.0).round() / 100.0
}

fn print_report(r: &Value) {
    println!("tally bench (tally serve on SQLite, one event per request)");
    println!(
        "  max:      {} events  durable {} events/s  applied {} events/s",
        r["max"]["events"], r["max"]["durable_per_s"], r["max"]["applied_per_s"]
    );
    println!(
        "  rate:     {} events at {}/s  lag p50 {} ms  p99 {} ms  max {} ms",
        r["rate"]["events"],
        r["rate"]["rate_per_s"],
        r["rate"]["lag_ms"]["p50"],
        r["rate"]["lag_ms"]["p99"],
        r["rate"]["lag_ms"]["max"]
    );
    let h = &r["hot_sku"];
    println!(
        "  hot SKU:  {} orders on {} units  reserved {}  short {}  oversold {}  {} orders/s",
        h["orders"], h["units"], h["reserved"], h["short"], h["oversold"], h["orders_per_s"]
    );
    let u = &r["hot_sku_unbatched"];
    println!(
        "  hot SKU, one commit per order: reserved {}  oversold {}  {} orders/s  (batching: {}x)",
        u["reserved"], u["oversold"], u["orders_per_s"], r["hot_sku_batching_speedup"]
    );
    println!("  server peak RSS: {} MB", r["server_peak_rss_mb"]);
}

/// `tally serve` as a child process on `data`.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let log = std::fs::File::create(data.with_extension("log"))?;
        let (child, base) = crate::serve::spawn_child(
            Command::new(std::env::current_exe()?)
                .args(["serve", "--addr", "127.0.0.1:0", "--data"])
                .arg(data)
                .env("TALLY_ADMIN_TOKEN", TOKEN)
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stderr(log),
        )?;
        Ok(Server { child, base })
    }

    /// The child's high-water mark of resident memory, from /proc.
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some((kb / 1024.0 * 10.0).round() / 10.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: String) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Client { http, base })
    }

    async fn send(&self, body: &str) -> anyhow::Result<()> {
        let sig = tally_connectors::tally::sign(SECRET, Utc::now().timestamp(), body.as_bytes());
        let resp = self
            .http
            .post(format!("{}/events/{SOURCE}", self.base))
            .header("X-Tally-Signature", sig)
            .body(body.to_owned())
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "refused: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "PUT {path}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?)
    }

    async fn configure(&self) -> anyhow::Result<()> {
        self.put(
            &format!("/v1/sources/{SOURCE}"),
            json!({"platform": "tally", "secret": SECRET, "channel": "erp", "authoritative_stock": true}),
        )
        .await?;
        let skus = (0..SKUS).map(|i| format!("BENCH-{i:04}"));
        for sku in skus.chain([HOT_SKU.to_owned()]) {
            self.put(
                &format!("/v1/products/{sku}"),
                json!({"currency": "EUR", "unit_cost": "10.00", "price": "19.99", "safety_stock": 0}),
            )
            .await?;
        }
        Ok(())
    }
}

/// When each bench event's ledger change was committed: the time of the
/// first audit record it caused, read from the database's audit feed in
/// this process (SQLite in WAL mode lets a second process read).
#[derive(Clone)]
struct Applied {
    at: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl Applied {
    fn follow(db: &Path) -> anyhow::Result<Applied> {
        let feed = Embedded::open(db).context("opening the server's database to follow it")?;
        let at: Arc<Mutex<HashMap<String, DateTime<Utc>>>> = Arc::default();
        let seen = at.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let records = feed.audit_after(after, 5_000).await.unwrap_or_default();
                if records.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let mut seen = seen.lock().unwrap();
                for (seq, r) in records {
                    after = seq;
                    if let Some(id) = r.cause.strip_prefix("bench:") {
                        seen.entry(id.to_owned()).or_insert(r.at);
                    }
                }
            }
        });
        Ok(Applied { at })
    }

    fn applied_at(&self, id: &str) -> Option<DateTime<Utc>> {
        self.at.lock().unwrap().get(id).copied()
    }

    /// Waits until every event in `ids` is applied; the latest time.
    async fn wait_for(&self, ids: &[String], timeout: Duration) -> anyhow::Result<DateTime<Utc>> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = {
                let at = self.at.lock().unwrap();
                ids.iter().filter(|id| !at.contains_key(*id)).count()
            };
            if missing == 0 {
                let at = self.at.lock().unwrap();
                return Ok(ids
                    .iter()
                    .filter_map(|id| at.get(id))
                    .max()
                    .copied()
                    .unwrap_or_else(Utc::now));
            }
            if Instant::now() > deadline {
                bail!("{missing} of {} events were never applied", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
