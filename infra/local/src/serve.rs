//! `tally serve`: open the database, start the workers, serve the Router,
//! and on SIGTERM or Ctrl-C stop taking requests, let the workers finish the
//! message in hand, and exit. Anything accepted but not yet applied is on
//! disk and is picked up at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tally_app::Tally;
use tally_app::http::{AppState, router};
use tally_core::orders::OrderPolicy;
use tally_core::ports::ChangeFeed;
use tally_embedded::Embedded;
use tokio::sync::{Notify, watch};

pub fn run(addr: SocketAddr, data: PathBuf) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, data))
}

async fn serve(addr: SocketAddr, data: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let db_path = data.join("tally.db");
    let db = Embedded::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let recovered = db.recover_in_flight().await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "picked up messages a previous run was processing"
        );
    }
    let feed: Arc<dyn ChangeFeed> = Arc::new(db.clone());
    let tally = Tally::new(Arc::new(db.clone()), Arc::new(db))
        .with_order_policy(order_policy()?)
        .with_channels(push_settings()?)
        .with_monitor_policy(tally_app::monitor::policy_from_env().map_err(anyhow::Error::msg)?)
        .with_ledger_batch(ledger_batch()?);
    let admin_token = admin_token();

    let wake = Arc::new(Notify::new());
    let (stop, stopped) = watch::channel(false);
    // The ingest route wakes the inbound worker; each inbound batch wakes
    // the signal worker and the change feed follower.
    let downstream = Arc::new(Notify::new());
    let workers = [
        tokio::spawn(tally_app::worker::run_inbound(
            tally.clone(),
            wake.clone(),
            downstream.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::run_signals(
            tally.clone(),
            downstream.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::run_orders(
            tally.clone(),
            downstream.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::sweep_actions(
            tally.clone(),
            std::time::Duration::from_secs(5),
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::run_outbound(
            tally.clone(),
            downstream.clone(),
            millis("TALLY_PUSH_QUIET_MS", 200)?,
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::follow_stock_changes(
            tally.clone(),
            feed.clone(),
            downstream.clone(),
            stopped.clone(),
        )),
        tokio::spawn(tally_app::worker::follow_audit(
            tally.clone(),
            feed.clone(),
            downstream,
            millis("TALLY_MONITOR_SWEEP_MS", 5_000)?,
            stopped,
        )),
    ];

    let app = router(AppState {
        tally,
        admin_token: admin_token.into(),
        wake: Some(wake),
        feed: Some(feed),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!(
        "tally listening on http://{local} (data in {})",
        data.display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    stop.send(true).ok();
    for w in workers {
        w.await.ok();
    }
    Ok(())
}

/// Starts `serve` (this binary, with the arguments and environment set on
/// `command`) as a child process, and waits for the address it prints.
/// Its stdout is drained afterwards so the child never blocks on it.
pub fn spawn_child(
    command: &mut std::process::Command,
) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting tally serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let Some(line) = lines.next() else {
            anyhow::bail!("tally serve exited before listening");
        };
        if let Some(rest) = line?.strip_prefix("tally listening on ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, base))
}

/// The admin token from `TALLY_ADMIN_TOKEN`, or a fresh one printed once.
fn admin_token() -> String {
    match std::env::var("TALLY_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let t = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            println!("TALLY_ADMIN_TOKEN not set; this run's admin token is: {t}");
            t
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Pushing to the channels: `TALLY_PUSH_TIMEOUT_MS` (longest wait for one
/// platform call; default 10 s) and `TALLY_PUSH_BACKOFF_MS` (first retry
/// delay after a failure, doubling per attempt; default 1 s).
fn push_settings() -> anyhow::Result<tally_app::push::Channels> {
    Ok(tally_app::push::Channels::new(
        millis("TALLY_PUSH_TIMEOUT_MS", 10_000)?,
        millis("TALLY_PUSH_BACKOFF_MS", 1_000)?,
    ))
}

/// `TALLY_LEDGER_BATCH`: ledger events committed together at most
/// (default 32; 1 commits each event alone, for comparison).
fn ledger_batch() -> anyhow::Result<usize> {
    match std::env::var("TALLY_LEDGER_BATCH") {
        Ok(v) => v
            .parse()
            .context("TALLY_LEDGER_BATCH must be a whole number of events"),
        Err(_) => Ok(tally_app::ledger::MAX_BATCH),
    }
}

fn millis(var: &str, default: u64) -> anyhow::Result<std::time::Duration> {
    let ms = match std::env::var(var) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{var} must be whole milliseconds"))?,
        Err(_) => default,
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// Order handling's policy, from the environment where set:
/// `TALLY_ACTION_TTL_S` (pending actions expire after it; default 72 h),
/// `TALLY_PAYMENT_GRACE_S` (a hold for a failed payment becomes a cancel
/// recommendation after it; default 24 h) and
/// `TALLY_AUTO_EXECUTE_REVERSIBLE` (`true` lets holds and reroutes run
/// without a person; default false) and `TALLY_AUTO_EXECUTE_MAX_TOTAL` (only
/// for orders worth at most this).
fn order_policy() -> anyhow::Result<OrderPolicy> {
    let mut p = OrderPolicy::default();
    if let Ok(ttl) = std::env::var("TALLY_ACTION_TTL_S") {
        let secs: i64 = ttl
            .parse()
            .context("TALLY_ACTION_TTL_S must be whole seconds")?;
        p.action_ttl = chrono::Duration::seconds(secs);
    }
    if let Ok(grace) = std::env::var("TALLY_PAYMENT_GRACE_S") {
        let secs: i64 = grace
            .parse()
            .context("TALLY_PAYMENT_GRACE_S must be whole seconds")?;
        p.payment_grace = chrono::Duration::seconds(secs);
    }
    if let Ok(limit) = std::env::var("TALLY_AUTO_EXECUTE_MAX_TOTAL") {
        p.auto_execute_max_total = Some(
            limit
                .parse()
                .context("TALLY_AUTO_EXECUTE_MAX_TOTAL must be a decimal amount")?,
        );
    }
    if let Ok(auto) = std::env::var("TALLY_AUTO_EXECUTE_REVERSIBLE") {
        p.auto_execute_reversible = auto
            .parse()
            .context("TALLY_AUTO_EXECUTE_REVERSIBLE must be true or false")?;
    }
    Ok(p)
}
