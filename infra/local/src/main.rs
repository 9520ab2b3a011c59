//! `tally`: every step of Tally in one process on an embedded SQLite file.
//!
//! - `tally serve [--addr 127.0.0.1:3000] [--data ./tally-data]`
//! - `tally demo [--serve] [--addr]`: a multi-channel day through the real stack.
//! - `tally sign --secret S [FILE]`: the `X-Tally-Signature` for a body.
//! - `tally backtest --events FILE --policy FILE [--sku SKU]... [--json]`
//! - `tally replay FILE [--url] [--source] [--secret]`
//! - `tally bench [--events] [--rate] [--seconds] [--hot-orders] [--json]`: the load script.

mod backtest;
mod bench;
mod demo;
mod replay;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "One honest stock count across every channel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook receiver, the admin API and every worker on SQLite.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Folder for the database file; created if missing.
        #[arg(long, default_value = "./tally-data")]
        data: PathBuf,
    },
    /// A realistic multi-channel day replayed through the real stack on a
    /// temporary database, with a summary of what each workflow decided.
    Demo {
        /// Keep serving the demo's data (and the console) afterwards.
        #[arg(long)]
        serve: bool,
        /// Where to listen; default 127.0.0.1:3000 with --serve, else any free port.
        #[arg(long)]
        addr: Option<String>,
    },
    /// Replay historical events through the real pricing code on a scratch
    /// database and report, per SKU, what pricing would have done.
    Backtest {
        /// Canonical events, one JSON object per line, oldest first.
        #[arg(long)]
        events: PathBuf,
        /// Products and their policies: {"defaults": {...}, "products": {"SKU": {...}}}.
        #[arg(long)]
        policy: PathBuf,
        /// Only these SKUs (repeatable); all by default.
        #[arg(long)]
        sku: Vec<String>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Feed canonical events (NDJSON) into a running `tally serve`, one at a
    /// time, each applied before the next.
    Replay {
        file: PathBuf,
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        #[arg(long, default_value = "erp")]
        source: String,
        #[arg(long, env = "TALLY_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// The load script: start `tally serve` on a fresh folder, drive it
    /// with signed events and report durable events/s, lag, hot-SKU
    /// oversells and peak memory.
    Bench(bench::Args),
    /// Print the X-Tally-Signature header value for a body (stdin if no FILE).
    Sign {
        #[arg(long, env = "TALLY_SECRET", hide_env_values = true)]
        secret: String,
        file: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { addr, data } => serve::run(addr, data),
        Command::Demo { serve, addr } => {
            let default = if serve {
                "127.0.0.1:3000"
            } else {
                "127.0.0.1:0"
            };
            demo::run(serve, addr.unwrap_or_else(|| default.to_owned()))
        }
        Command::Backtest {
            events,
            policy,
            sku,
            json,
        } => backtest::run(events, policy, sku, json),
        Command::Replay {
            file,
            url,
            source,
            secret,
        } => replay::run(file, url, source, secret),
        Command::Bench(args) => bench::run(args),
        Command::Sign { secret, file } => {
            let body = match file {
                Some(f) => std::fs::read(f)?,
                None => std::io::read_to_string(std::io::stdin())?.into_bytes(),
            };
            let t = chrono::Utc::now().timestamp();
            println!("{}", tally_connectors::tally::sign(&secret, t, &body));
            Ok(())
        }
    }
}
