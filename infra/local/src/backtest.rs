//! `tally backtest`: replay historical canonical events through the real
//! ledger and pricing code on a scratch database, in the events' own time,
//! and report per SKU what pricing would have done.
//!
//! The policy file sets up the products:
//! `{"defaults": {<policy>}, "products": {"SKU": {"currency", "unit_cost",
//! "price", "safety_stock", "policy": {<overrides>}}}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use tally_app::{ManualClock, Tally};
use tally_core::SourceName;
use tally_core::event::parse_event;
use tally_core::ports::ChangeFeed;
use tally_core::pricing::{Decision, Outcome};
use tally_embedded::Embedded;

#[derive(Debug, Default, Serialize)]
pub struct SkuReport {
    pub start_price: Option<Decimal>,
    pub end_price: Option<Decimal>,
    /// Each applied change: when, and the price it set.
    pub path: Vec<(DateTime<Utc>, Decimal)>,
    pub decisions: BTreeMap<String, u64>,
    /// How often each rule bound a decision.
    pub bound: BTreeMap<String, u64>,
    pub held_for_stale_stock: u64,
    pub units_sold: u64,
    /// Σ units × (price at sale − unit cost).
    pub margin_kept: Decimal,
    /// Σ units × (start price − price at sale), where the price was lower.
    pub margin_given_away: Decimal,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub events: u64,
    pub quarantined: u64,
    pub skus: BTreeMap<String, SkuReport>,
}

pub fn run(
    events: PathBuf,
    policy: PathBuf,
    skus: Vec<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(backtest(&events, &policy, &skus))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn backtest(events: &Path, policy: &Path, only: &[String]) -> anyhow::Result<Report> {
    let setup: Value = serde_json::from_str(
        &std::fs::read_to_string(policy)
            .with_context(|| format!("reading {}", policy.display()))?,
    )
    .with_context(|| format!("{} is not JSON", policy.display()))?;
    let dir = tempfile::tempdir()?;
    let db = Embedded::open(&dir.path().join("backtest.db"))?;
    let clock = Arc::new(ManualClock::new(DateTime::<Utc>::MIN_UTC));
    let tally = Tally::new(Arc::new(db.clone()), Arc::new(db.clone())).with_clock(clock.clone());
    let feed: &dyn ChangeFeed = &db;
    let source = SourceName::parse("backtest").map_err(anyhow::Error::msg)?;
    tally
        .put_source("backtest", &json!({"platform": "tally", "secret": "backtest-only-secret-0000", "authoritative_stock": true}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let file =
        std::fs::File::open(events).with_context(|| format!("opening {}", events.display()))?;
    let mut lines = BufReader::new(file).lines().peekable();
    // Products are set up as of the first event.
    let first: Option<Value> = match lines.peek() {
        Some(Ok(l)) => serde_json::from_str(l).ok(),
        _ => None,
    };
    if let Some(t) = first
        .as_ref()
        .and_then(|v| v["occurred_at"].as_str())
        .and_then(|t| t.parse().ok())
    {
        clock.advance_to(t);
    }
    let defaults = setup["defaults"].as_object().cloned().unwrap_or_default();
    let mut report = Report::default();
    let mut costs = BTreeMap::new();
    for (sku, product) in setup["products"].as_object().into_iter().flatten() {
        let mut body = product.clone();
        let mut policy = defaults.clone();
        policy.extend(product["policy"].as_object().cloned().unwrap_or_default());
        body["policy"] = Value::Object(policy);
        tally
            .put_product(sku, &body)
            .await
            .map_err(|e| anyhow::anyhow!("product {sku}: {e}"))?;
        let r = report.skus.entry(sku.clone()).or_default();
        r.start_price = product["price"].as_str().and_then(|p| p.parse().ok());
        r.end_price = r.start_price;
        costs.insert(
            sku.clone(),
            product["unit_cost"]
                .as_str()
                .and_then(|c| c.parse::<Decimal>().ok()),
        );
    }
    if report.skus.is_empty() {
        bail!("{} names no products", policy.display());
    }
    let wanted: BTreeSet<&str> = only.iter().map(String::as_str).collect();
    let mut cursor = feed.cursor("backtest").await?;
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if n > 0 && n.is_multiple_of(1000) {
            eprintln!("backtest: {n} events");
        }
        report.events += 1;
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            report.quarantined += 1;
            continue;
        };
        let event = match parse_event(&value, DateTime::<Utc>::MAX_UTC) {
            Ok(e) => e,
            Err(_) => {
                report.quarantined += 1;
                continue;
            }
        };
        if !wanted.is_empty()
            && !event
                .body
                .skus()
                .iter()
                .any(|s| wanted.contains(s.as_str()))
        {
            continue;
        }
        clock.advance_to(event.occurred_at);
        if !tally
            .check(&event)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_empty()
        {
            report.quarantined += 1;
            continue;
        }
        if event.body.touches_ledger() {
            tally
                .apply_to_ledger(&source, &event)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // What the change feed follower does in `tally serve`.
            for change in feed.changes_after(cursor, usize::MAX >> 1).await? {
                cursor = change.seq;
                if let Some(done) = tally
                    .reprice_on_change(&change)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    let sku = done.sku.to_string();
                    if let Some(r) = report.skus.get_mut(&sku) {
                        note_sale(r, done.units_sold, costs.get(&sku).copied().flatten());
                        if let Some(d) = done.decision {
                            note(r, &d);
                        }
                    }
                }
            }
        } else {
            let decision = tally
                .reprice_on_signal(&source, &event)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let sku = event.body.skus().first().map(|s| s.to_string());
            if let (Some(d), Some(r)) = (decision, sku.and_then(|s| report.skus.get_mut(&s))) {
                note(r, &d);
            }
        }
    }
    if !wanted.is_empty() {
        report.skus.retain(|k, _| wanted.contains(k.as_str()));
    }
    Ok(report)
}

fn note(r: &mut SkuReport, d: &Decision) {
    let outcome = serde_json::to_value(d.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    *r.decisions.entry(outcome).or_default() += 1;
    for reason in &d.reasons {
        *r.bound.entry(reason.clone()).or_default() += 1;
    }
    if d.reasons.iter().any(|x| x == "stale_stock") {
        r.held_for_stale_stock += 1;
    }
    if d.outcome == Outcome::Changed {
        r.path.push((d.at, d.to));
        r.end_price = Some(d.to);
    }
}

fn note_sale(r: &mut SkuReport, units: u32, cost: Option<Decimal>) {
    if units == 0 {
        return;
    }
    let (Some(price), Some(start)) = (r.end_price, r.start_price) else {
        return;
    };
    let units_d = Decimal::from(units);
    r.units_sold += u64::from(units);
    if let Some(c) = cost {
        r.margin_kept += units_d * (price - c);
    }
    if price < start {
        r.margin_given_away += units_d * (start - price);
    }
}

fn print_report(report: &Report) {
    println!(
        "{} events replayed, {} refused as invalid\n",
        report.events, report.quarantined
    );
    for (sku, r) in &report.skus {
        println!("{sku}");
        println!(
            "  price        {} -> {}  ({} changes)",
            r.start_price.map_or("-".into(), |p| p.to_string()),
            r.end_price.map_or("-".into(), |p| p.to_string()),
            r.path.len()
        );
        let path: Vec<String> = r
            .path
            .iter()
            .map(|(t, p)| format!("{} {p}", t.format("%m-%d %H:%M")))
            .collect();
        if !path.is_empty() {
            println!("  path         {}", path.join(", "));
        }
        println!("  decisions    {:?}", r.decisions);
        println!("  rules bound  {:?}", r.bound);
        println!("  stale holds  {}", r.held_for_stale_stock);
        println!(
            "  sold {} units: margin kept {}, given away {}\n",
            r.units_sold,
            r.margin_kept.round_dp(2),
            r.margin_given_away.round_dp(2)
        );
    }
}
