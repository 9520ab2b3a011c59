//! `tally`: every step of Tally in one process on an embedded SQLite file.
//!
//! - `tally serve [--addr 127.0.0.1:3000] [--data ./tally-data]`
//! - `tally sign --secret S [FILE]`: the `X-Tally-Signature` for a body.

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
