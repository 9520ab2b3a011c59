//! `tally demo`: a realistic multi-channel day replayed through the real
//! stack (a `tally serve` child on a temporary database, driven over HTTP
//! with signed webhooks and feeds, exactly as the platforms would), then a
//! summary of what each workflow decided.
//!
//! The day: 36 SKUs in two warehouses; Shopify and WooCommerce webhooks in
//! their own formats and a marketplace (bol) on Tally's canonical feed; an
//! ERP count feed (with one count that arrives late, and one SKU whose
//! counts stopped days ago); a competitor price feed; a burst of duplicate
//! deliveries; a malformed payload and an unmapped SKU; a refund request;
//! and 40 shoppers racing for the last 20 units of a hot SKU.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use reqwest::blocking::Client;
use serde_json::{Value, json};

const ERP: &str = "erp-demo-secret-0123456789";
const BOL: &str = "bol-demo-secret-0123456789";
const PRICES: &str = "pricewatch-secret-0123456789";
const SHOPIFY: &str = "shopify-demo-secret-0123456789";
const WOO: &str = "woo-demo-secret-0123456789";

/// (SKU, name-ish, unit cost, price)
const CATALOG: &[(&str, &str, &str)] = &[
    ("TSHIRT-S", "6.20", "19.99"),
    ("TSHIRT-M", "6.20", "19.99"),
    ("TSHIRT-L", "6.20", "19.99"),
    ("TSHIRT-XL", "6.40", "21.99"),
    ("HOODIE-S", "14.00", "44.95"),
    ("HOODIE-M", "14.00", "44.95"),
    ("HOODIE-L", "14.00", "44.95"),
    ("HOODIE-HOT", "15.00", "59.00"),
    ("CAP-BLK", "3.10", "14.50"),
    ("CAP-NVY", "3.10", "14.50"),
    ("BEANIE-GRY", "2.80", "12.00"),
    ("SOCKS-3P", "2.10", "9.99"),
    ("SOCKS-6P", "3.90", "17.99"),
    ("JACKET-M", "38.00", "129.00"),
    ("JACKET-L", "38.00", "129.00"),
    ("SCARF-WOOL", "9.00", "34.00"),
    ("GLOVES-M", "5.50", "19.00"),
    ("GLOVES-L", "5.50", "19.00"),
    ("MUG-LOGO", "2.40", "11.95"),
    ("MUG-XL", "3.10", "14.95"),
    ("BOTTLE-05", "4.20", "18.00"),
    ("BOTTLE-10", "5.10", "22.00"),
    ("TOTE-CAN", "1.90", "9.50"),
    ("TOTE-LTH", "12.00", "49.00"),
    ("PIN-SET", "0.80", "6.00"),
    ("STICKER-10", "0.40", "4.50"),
    ("POSTER-A2", "1.50", "15.00"),
    ("POSTER-A1", "2.20", "22.00"),
    ("LAMP-OAK", "28.00", "89.00"),
    ("LAMP-STL", "24.00", "79.00"),
    ("CANDLE-L", "3.30", "16.00"),
    ("CANDLE-S", "1.90", "9.00"),
    ("NOTEBOOK-A5", "1.60", "8.50"),
    ("NOTEBOOK-A4", "2.10", "11.50"),
    ("PEN-STEEL", "3.00", "14.00"),
    ("UMBRELLA", "7.50", "29.00"),
];

pub fn run(serve_after: bool, addr: String) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let mut server = Server::start(dir.path(), &addr, &token)?;
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let t = Tally {
        http,
        base: server.base.clone(),
        token: token.clone(),
    };
    let mut bar = Progress::new(9);

    bar.step("configuring sources, warehouses and 36 products");
    t.setup()?;

    bar.step("morning ERP counts for both warehouses");
    let now = Utc::now();
    let morning = now - chrono::Duration::hours(6);
    let mut counts = vec![];
    for (i, (sku, _, _)) in CATALOG.iter().enumerate() {
        let (ams, ber) = match *sku {
            // 20 to sell once the safety stock of 1 is held back.
            "HOODIE-HOT" => (21, 0),
            _ => (30 + (i as u32 * 7) % 50, 10 + (i as u32 * 5) % 30),
        };
        // LAMP-OAK's counts stopped three days ago: its stock is stale.
        let at = if *sku == "LAMP-OAK" {
            now - chrono::Duration::days(3)
        } else {
            morning
        };
        for (loc, n) in [("WH-AMS", ams), ("WH-BER", ber)] {
            counts.push(
                json!({"id": format!("count-{sku}-{loc}"), "type": "stock.counted",
                "occurred_at": at, "data": {"sku": sku, "location": loc, "on_hand": n}}),
            );
        }
    }
    t.events("erp", ERP, &json!(counts))?;
    t.idle()?;

    bar.step("a day of Shopify, WooCommerce and bol orders");
    for n in 0..60u32 {
        let (sku, _, price) = CATALOG[(n as usize * 7) % CATALOG.len()];
        if sku == "HOODIE-HOT" || sku == "LAMP-OAK" {
            continue;
        }
        let at = morning + chrono::Duration::minutes(5 * n as i64);
        t.shopify_order(5_000 + n, at, sku, 1 + n % 3, price)?;
    }
    for n in 0..40u32 {
        let (sku, _, price) = CATALOG[(n as usize * 11 + 3) % CATALOG.len()];
        if sku == "HOODIE-HOT" || sku == "LAMP-OAK" {
            continue;
        }
        let at = morning + chrono::Duration::minutes(7 * n as i64);
        t.woo_order(900 + n, at, sku, 1 + n % 2, price)?;
    }
    let bol: Vec<Value> = (0..30u32)
        .filter_map(|n| {
            let (sku, _, price) = CATALOG[(n as usize * 5 + 1) % CATALOG.len()];
            (sku != "HOODIE-HOT" && sku != "LAMP-OAK").then(|| {
                json!({"id": format!("bol-{n}"), "type": "order.placed",
                    "occurred_at": morning + chrono::Duration::minutes(9 * n as i64),
                    "data": {"order_id": format!("BOL-{n}"), "channel": "bol", "currency": "EUR",
                             "lines": [{"sku": sku, "qty": 1, "unit_price": price}]}})
            })
        })
        .collect();
    t.events("bol", BOL, &json!(bol))?;
    t.idle()?;

    bar.step("a burst of duplicate deliveries (Shopify retries one webhook 6 times)");
    for _ in 0..6 {
        t.shopify_order(5_000, morning, CATALOG[0].0, 1, CATALOG[0].2)?;
    }
    t.idle()?;

    bar.step("a late count, a miscount, a malformed payload and an unmapped SKU");
    // Counted before this morning's count, delivered now: stale, ignored.
    t.events(
        "erp",
        ERP,
        &json!({"id": "count-late-TSHIRT-M", "type": "stock.counted",
            "occurred_at": morning - chrono::Duration::hours(12),
            "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": 3}}),
    )?;
    // A miscount: SCARF-WOOL "drops" to 2 in one count (the monitor flags it).
    t.events(
        "erp",
        ERP,
        &json!({"id": "count-scarf-recount", "type": "stock.counted", "occurred_at": now,
            "data": {"sku": "SCARF-WOOL", "location": "WH-AMS", "on_hand": 2}}),
    )?;
    t.webhook(
        "woocommerce",
        "woo",
        &[
            ("x-wc-webhook-topic", "order.created".into()),
            ("x-wc-webhook-id", "77".into()),
        ],
        br#"{"id": 1999, "status": "processing", "line_items": [{"sku": "TSHIRT-M", "quantity": "#,
        WOO,
    )?;
    t.events(
        "bol",
        BOL,
        &json!({"id": "bol-ghost", "type": "order.placed", "occurred_at": now,
            "data": {"order_id": "BOL-GHOST", "channel": "bol", "currency": "EUR",
                     "lines": [{"sku": "MUG-GOLD", "qty": 2, "unit_price": "24.00"}]}}),
    )?;
    t.idle()?;

    bar.step("competitor prices (one SKU on stale stock, one big move)");
    let mut observed = vec![];
    for (i, (sku, _, price)) in CATALOG.iter().enumerate().step_by(3) {
        let p: rust_decimal::Decimal = price.parse()?;
        let theirs = (p * rust_decimal::Decimal::new(96, 2)).round_dp(2);
        observed.push(
            json!({"id": format!("comp-{i}"), "type": "price.competitor_observed",
            "occurred_at": now, "data": {"sku": sku, "competitor": "rival.example",
            "price": theirs, "currency": "EUR"}}),
        );
    }
    // UMBRELLA's rival halves its price: more than a person must approve.
    observed.push(
        json!({"id": "comp-umbrella", "type": "price.competitor_observed",
        "occurred_at": now, "data": {"sku": "UMBRELLA", "competitor": "rival.example",
        "price": "18.00", "currency": "EUR"}}),
    );
    observed.push(
        json!({"id": "comp-lamp", "type": "price.competitor_observed",
        "occurred_at": now, "data": {"sku": "LAMP-OAK", "competitor": "rival.example",
        "price": "79.00", "currency": "EUR"}}),
    );
    t.events("pricewatch", PRICES, &json!(observed))?;
    t.idle()?;

    bar.step("a refund request");
    t.events(
        "bol",
        BOL,
        &json!({"id": "bol-refund-3", "type": "order.refund_requested", "occurred_at": now,
            "data": {"order_id": "BOL-3", "amount": CATALOG[16].2, "reason": "changed my mind"}}),
    )?;
    t.idle()?;

    bar.step("40 shoppers race for the last 20 HOODIE-HOT");
    std::thread::scope(|scope| {
        for n in 0..40u32 {
            let t = &t;
            scope.spawn(move || {
                let e = json!({"id": format!("hot-{n}"), "type": "order.placed", "occurred_at": Utc::now(),
                    "data": {"order_id": format!("HOT-{n}"), "channel": "bol", "currency": "EUR",
                             "lines": [{"sku": "HOODIE-HOT", "qty": 1, "unit_price": "59.00"}]}});
                t.events("bol", BOL, &e)
            });
        }
    });
    t.idle()?;

    bar.step("waiting for pricing, order handling and the monitor to catch up");
    t.idle()?;
    std::thread::sleep(Duration::from_millis(800));
    bar.done();

    let summary = t.summary()?;
    println!("{summary}");
    println!(
        "Replayed in {:.1} s on {}.",
        started.elapsed().as_secs_f64(),
        dir.path().display()
    );
    if serve_after {
        println!(
            "\nThe console, with the demo's data: {}/  (admin token: {token})\nCtrl-C to stop.",
            server.base
        );
        server.wait()?;
    } else {
        println!("Run `tally demo --serve` to keep it running and open the console.");
    }
    Ok(())
}

struct Tally {
    http: Client,
    base: String,
    token: String,
}

impl Tally {
    fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send()?;
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.admin(reqwest::Method::PUT, path, Some(body))
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.admin(reqwest::Method::GET, path, None)
    }

    fn setup(&self) -> anyhow::Result<()> {
        self.put(
            "/v1/sources/erp",
            json!({"platform": "tally", "secret": ERP, "channel": "erp"}),
        )?;
        self.put(
            "/v1/sources/pricewatch",
            json!({"platform": "tally", "secret": PRICES, "channel": "pricewatch", "authoritative_stock": false}),
        )?;
        self.put(
            "/v1/sources/bol",
            json!({"platform": "tally", "secret": BOL, "channel": "bol", "authoritative_stock": false}),
        )?;
        self.put(
            "/v1/sources/shopify",
            json!({"platform": "shopify", "secret": SHOPIFY, "channel": "shopify", "default_location": "WH-AMS"}),
        )?;
        self.put(
            "/v1/sources/woo",
            json!({"platform": "woocommerce", "secret": WOO, "channel": "woocommerce", "default_location": "WH-BER"}),
        )?;
        self.put(
            "/v1/locations/WH-AMS",
            json!({"aliases": ["shopify:655441491"]}),
        )?;
        self.put("/v1/locations/WH-BER", json!({"aliases": []}))?;
        for (sku, cost, price) in CATALOG {
            self.put(
                &format!("/v1/products/{sku}"),
                json!({"currency": "EUR", "unit_cost": cost, "price": price, "safety_stock": 1,
                       "channel_buffers": {"bol": 2},
                       "policy": {"min_margin_pct": "30", "max_step_pct": "5", "min_interval_s": 0,
                                  "competitor_strategy": "undercut", "undercut_by": "0.05",
                                  "max_stock_age_s": 86400, "approval_step_pct": "4.9"}}),
            )?;
        }
        Ok(())
    }

    fn events(&self, source: &str, secret: &str, events: &Value) -> anyhow::Result<()> {
        let body = events.to_string();
        let sig = tally_connectors::tally::sign(secret, Utc::now().timestamp(), body.as_bytes());
        let resp = self
            .http
            .post(format!("{}/events/{source}", self.base))
            .header("X-Tally-Signature", sig)
            .body(body)
            .send()?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!("/events/{source}: {}", resp.status());
        }
        Ok(())
    }

    fn webhook(
        &self,
        platform: &str,
        source: &str,
        headers: &[(&str, String)],
        body: &[u8],
        secret: &str,
    ) -> anyhow::Result<()> {
        let sig = match platform {
            "shopify" => (
                "x-shopify-hmac-sha256",
                tally_connectors::shopify::sign(secret, body),
            ),
            _ => (
                "x-wc-webhook-signature",
                tally_connectors::woocommerce::sign(secret, body),
            ),
        };
        let mut req = self
            .http
            .post(format!("{}/webhooks/{platform}/{source}", self.base))
            .header(sig.0, sig.1)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send()?;
        if !resp.status().is_success() {
            bail!("/webhooks/{platform}/{source}: {}", resp.status());
        }
        Ok(())
    }

    fn shopify_order(
        &self,
        id: u32,
        at: DateTime<Utc>,
        sku: &str,
        qty: u32,
        price: &str,
    ) -> anyhow::Result<()> {
        let body = json!({"id": 820_982_911_946_154_000u64 + id as u64, "name": format!("#{id}"),
            "created_at": at, "currency": "EUR", "total_price": price,
            "line_items": [{"id": 466_157_049u64 + id as u64, "sku": sku, "quantity": qty, "price": price}]});
        self.webhook(
            "shopify",
            "shopify",
            &[
                ("x-shopify-topic", "orders/create".into()),
                ("x-shopify-event-id", format!("demo-evt-{id}")),
                ("x-shopify-triggered-at", at.to_rfc3339()),
            ],
            body.to_string().as_bytes(),
            SHOPIFY,
        )
    }

    fn woo_order(
        &self,
        id: u32,
        at: DateTime<Utc>,
        sku: &str,
        qty: u32,
        price: &str,
    ) -> anyhow::Result<()> {
        let gmt = at.format("%Y-%m-%dT%H:%M:%S").to_string();
        let body = json!({"id": id, "status": "processing", "currency": "EUR", "total": price,
            "date_created_gmt": gmt, "date_modified_gmt": gmt,
            "line_items": [{"id": id * 10, "sku": sku, "quantity": qty, "price": price}]});
        self.webhook(
            "woocommerce",
            "woo",
            &[
                ("x-wc-webhook-topic", "order.created".into()),
                ("x-wc-webhook-id", "77".into()),
                ("x-wc-webhook-delivery-id", uuid::Uuid::new_v4().to_string()),
            ],
            body.to_string().as_bytes(),
            WOO,
        )
    }

    /// Waits until every accepted delivery and signal has been processed.
    fn idle(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v: Value = self
                .http
                .get(format!("{}/healthz", self.base))
                .send()?
                .json()?;
            if v["idle"] == true {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the stack did not catch up: {v}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()?
            .text()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect())
    }

    fn summary(&self) -> anyhow::Result<String> {
        let m = self.metrics()?;
        let sum = |prefix: &str, needle: &str| -> u64 {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix) && k.contains(needle))
                .map(|(_, v)| v)
                .sum()
        };
        let hot = self.get("/v1/stock/HOODIE-HOT")?;
        let quarantine = self.get("/v1/quarantine")?;
        let q_items = quarantine["items"].as_array().cloned().unwrap_or_default();
        let pending = self.get("/v1/actions?status=pending")?;
        let pending = pending["actions"].as_array().cloned().unwrap_or_default();
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for a in &pending {
            *by_kind
                .entry(a["kind"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let lamp = self.get("/v1/prices/LAMP-OAK")?;
        let alerts = self.get("/v1/alerts")?;
        let alerts = alerts["items"].as_array().cloned().unwrap_or_default();
        let stale_counts = self.get("/v1/audit?entity=stock:TSHIRT-M@WH-AMS&limit=50")?;
        let stale = stale_counts["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == "stock.count_stale")
            .count();
        let mut out = String::new();
        let w = &mut out;
        use std::fmt::Write as _;
        writeln!(
            w,
            "\nTally demo: one day, five sources, 36 SKUs, two warehouses\n"
        )?;
        writeln!(w, "Inventory")?;
        writeln!(
            w,
            "  events accepted            {}",
            sum("tally_events_accepted_total", "")
        )?;
        writeln!(
            w,
            "  ledger events applied      {}",
            sum("tally_events_applied_total", "")
        )?;
        writeln!(
            w,
            "  duplicates ignored         {}",
            sum("tally_events_duplicate_total", "")
        )?;
        writeln!(
            w,
            "  late counts ignored        {stale} (recorded as stale, changed nothing)"
        )?;
        writeln!(
            w,
            "  oversells prevented        {}  (HOODIE-HOT: 40 orders for 20 units; reserved {}, available {})",
            sum("tally_oversells_prevented_total", ""),
            hot["reserved"],
            hot["available"]
        )?;
        writeln!(w, "\nQuarantine")?;
        writeln!(w, "  records held               {}", q_items.len())?;
        for q in &q_items {
            let reasons: Vec<String> = q["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned))
                .collect();
            writeln!(
                w,
                "    from {:<10} {}",
                q["source"].as_str().unwrap_or("?"),
                reasons.join("; ")
            )?;
        }
        writeln!(w, "\nPricing")?;
        writeln!(
            w,
            "  prices changed             {}",
            sum(
                "tally_price_decisions_total",
                "outcome=\"changed\",reason=\"competitor\""
            )
        )?;
        writeln!(
            w,
            "  decisions held, stale stock {} (LAMP-OAK: {})",
            sum("tally_price_decisions_total", "reason=\"stale_stock\""),
            lamp["last_decision"]["reasons"]
        )?;
        writeln!(
            w,
            "  waiting for approval       {}",
            by_kind.get("price_change").copied().unwrap_or(0)
        )?;
        writeln!(w, "\nOrder handling")?;
        writeln!(w, "  pending approvals          {}", pending.len())?;
        for (kind, n) in &by_kind {
            writeln!(w, "    {kind:<24} {n}")?;
        }
        writeln!(w, "\nAlerts                       {}", alerts.len())?;
        for a in alerts.iter().take(5) {
            writeln!(
                w,
                "    {:<20} {}",
                a["kind"].as_str().unwrap_or("?"),
                a["message"].as_str().unwrap_or("")
            )?;
        }
        Ok(out)
    }
}

/// The `tally serve` child the demo drives.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &std::path::Path, addr: &str, token: &str) -> anyhow::Result<Server> {
        let (child, base) = crate::serve::spawn_child(
            Command::new(std::env::current_exe()?)
                .args(["serve", "--addr", addr, "--data"])
                .arg(data.join("db"))
                .env("TALLY_ADMIN_TOKEN", token)
                .env("TALLY_PUSH_QUIET_MS", "50")
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
                )
                .stderr(Stdio::inherit()),
        )?;
        Ok(Server { child, base })
    }

    fn wait(&mut self) -> anyhow::Result<()> {
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A one-line progress bar on stderr.
struct Progress {
    total: usize,
    done: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self { total, done: 0 }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        let filled = self.done * 24 / self.total;
        eprint!(
            "\r\x1b[2K[{}{}] {}/{} {what}",
            "#".repeat(filled),
            ".".repeat(24 - filled),
            self.done,
            self.total
        );
        std::io::stderr().flush().ok();
    }

    fn done(&self) {
        eprintln!("\r\x1b[2K[{}] done", "#".repeat(24));
    }
}
