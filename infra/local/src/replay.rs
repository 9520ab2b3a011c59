//! `tally replay FILE`: feed canonical events (one JSON object per line)
//! into a running `tally serve` as a signed source would, one at a time,
//! waiting after each until the stack is idle, so the outcome does not
//! depend on timing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub fn run(file: PathBuf, url: String, source: String, secret: String) -> anyhow::Result<()> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let reader = BufReader::new(
        std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut sent = 0u64;
    for line in reader.lines() {
        let body = line?;
        if body.trim().is_empty() {
            continue;
        }
        let sig =
            tally_connectors::tally::sign(&secret, chrono::Utc::now().timestamp(), body.as_bytes());
        let resp = http
            .post(format!("{url}/events/{source}"))
            .header("X-Tally-Signature", sig)
            .body(body)
            .send()?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "event {} refused: {} {}",
                sent + 1,
                resp.status(),
                resp.text().unwrap_or_default()
            );
        }
        sent += 1;
        wait_idle(&http, &url)?;
        if sent.is_multiple_of(1000) {
            eprintln!("replay: {sent} events");
        }
    }
    eprintln!("replay: {sent} events sent and applied");
    Ok(())
}

fn wait_idle(http: &reqwest::blocking::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = http.get(format!("{url}/healthz")).send()?.json()?;
        if v["idle"] == true || (v.get("idle").is_none() && v["inbound_pending"] == 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the stack did not become idle: {v}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
