//! What the end-to-end suites share: the real `tally serve` binary on a
//! temporary SQLite file, and an HTTP client that speaks to it as a
//! merchant's systems would.
#![allow(dead_code)]

pub mod platforms;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

pub const TOKEN: &str = "e2e-admin-token";
pub const SECRET: &str = "erp-secret-0123456789";

pub struct Server {
    child: Child,
    pub base: String,
    pub http: Client,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("TALLY_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("tally starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("tally prints its address").unwrap();
            if let Some(rest) = line.strip_prefix("tally listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on unix
        self.child.wait().unwrap();
    }

    pub fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// GETs an admin route with `token` instead of the right one.
    pub fn admin_with_token(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .unwrap();
        let status = resp.status();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn put(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(reqwest::Method::PUT, path, Some(body));
        assert_eq!(status, StatusCode::OK, "PUT {path}: {v}");
        v
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.admin(reqwest::Method::GET, path, None);
        assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
        v
    }

    pub fn send_raw(&self, source: &str, body: &str, signature: Option<String>) -> StatusCode {
        let mut req = self
            .http
            .post(format!("{}/events/{source}", self.base))
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("X-Tally-Signature", sig);
        }
        req.send()
            .map(|r| r.status())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// Signs `events` as `source` now and posts them.
    pub fn send(&self, source: &str, events: &Value) -> StatusCode {
        let body = events.to_string();
        self.send_raw(source, &body, Some(sign(&body, 0)))
    }

    /// Waits until every accepted delivery has been processed.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = self
                .http
                .get(format!("{}/healthz", self.base))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if v["idle"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the inbound queue never drained: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stock(&self, sku: &str) -> Value {
        self.settle();
        self.get(&format!("/v1/stock/{sku}"))
    }

    pub fn configure(&self, safety_stock: u32) {
        self.put(
            "/v1/sources/erp",
            json!({"platform": "tally", "secret": SECRET, "channel": "erp"}),
        );
        self.put(
            "/v1/sources/webshop",
            json!({"platform": "tally", "secret": "shop-secret-0123456789", "channel": "webshop", "authoritative_stock": false}),
        );
        self.put(
            "/v1/products/TSHIRT-M",
            json!({"currency": "EUR", "unit_cost": "10.00", "price": "19.99",
                   "safety_stock": safety_stock, "channel_buffers": {"webshop": 3}}),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub fn sign(body: &str, seconds_ago: i64) -> String {
    tally_connectors::tally::sign(
        SECRET,
        chrono::Utc::now().timestamp() - seconds_ago,
        body.as_bytes(),
    )
}

pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (dir, data)
}

impl Server {
    /// POSTs `body` to a webhook route with the given headers.
    pub fn webhook(
        &self,
        platform: &str,
        source: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> StatusCode {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{platform}/{source}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send()
            .map(|r| r.status())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    }

    pub fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin(reqwest::Method::POST, path, Some(body))
    }
}

/// A fixture from tests/events/.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/events")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}
