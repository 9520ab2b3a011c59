//! Pushing to the channels: one client per platform, over each platform's
//! documented admin API, behind one small trait.
//!
//! Clients do one attempt and say how it went; retrying (after a
//! platform's `Retry-After`, with backoff on outages) is the outbound
//! queue's job, so a retry survives a restart. What a client does do is
//! make a retry safe: stock writes are compare-and-set where the platform
//! offers it, and every order command first reads the order, so a command
//! the platform already carried out (say, before a timeout) is not sent
//! again.
//!
//! Credentials live in [`Credentials`], whose `Debug` shows no secret.

mod shopify;
mod shopware;
mod woocommerce;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::Value;
use tally_core::Sku;
use tally_core::catalog::{Platform, Source};
use tally_core::push::ChannelCommand;
use tally_core::types::Currency;

pub use shopify::ShopifyClient;
pub use shopware::ShopwareClient;
pub use woocommerce::WooClient;

/// A SKU's figure for one channel, with the platform's ids of the product.
#[derive(Debug, Clone)]
pub struct StockUpdate {
    pub sku: Sku,
    pub refs: BTreeMap<String, String>,
    pub available: u32,
    /// What Tally last pushed and the channel confirmed: the value a
    /// compare-and-set expects to find.
    pub last_pushed: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PriceUpdate {
    pub sku: Sku,
    pub refs: BTreeMap<String, String>,
    pub price: Decimal,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// The platform carried it out now.
    Done,
    /// The platform already showed it done; nothing was sent.
    AlreadyDone,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PushError {
    /// 429, or Shopify's cost-based throttle: try again after this long.
    #[error("rate limited by the channel; retry after {0:?}")]
    RateLimited(Duration),
    /// 5xx, a timeout or no connection: worth retrying with backoff.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// The platform refused the request itself (4xx, user errors).
    #[error("channel refused: {0}")]
    Refused(String),
    /// This platform's client cannot do it; a person has to.
    #[error("{0}")]
    Unsupported(String),
}

impl PushError {
    /// How long to wait before the next attempt, when the channel said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::RateLimited(d) => Some(*d),
            _ => None,
        }
    }
}

/// What Tally can tell one channel.
#[async_trait]
pub trait ChannelClient: Send + Sync {
    /// Sets available-to-sell, all of `items` or an error.
    async fn set_stock(&self, items: &[StockUpdate]) -> Result<(), PushError>;
    async fn set_prices(&self, items: &[PriceUpdate]) -> Result<(), PushError>;
    async fn run_command(&self, command: &ChannelCommand) -> Result<CommandOutcome, PushError>;
}

/// A secret from a source's `api` settings. Never printed.
#[derive(Clone)]
pub struct Credentials(String);

impl Credentials {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// The client for `source`'s channel, or `None` when the source has no
/// push credentials (it is receive-only) or its platform has no admin API.
pub fn client_for(source: &Source, http: reqwest::Client) -> Option<Arc<dyn ChannelClient>> {
    let text = |k: &str| source.api.get(k).and_then(Value::as_str).map(str::to_owned);
    let secret = |k: &str| text(k).map(Credentials);
    let base_url = text("base_url")?.trim_end_matches('/').to_owned();
    match source.platform {
        Platform::Shopify => Some(Arc::new(ShopifyClient {
            http,
            base_url,
            api_version: text("api_version").unwrap_or_else(|| "2025-07".into()),
            location_id: text("location_id"),
            token: secret("access_token")?,
        })),
        Platform::Woocommerce => Some(Arc::new(WooClient {
            http,
            base_url,
            key: secret("consumer_key")?,
            secret: secret("consumer_secret")?,
        })),
        Platform::Shopware => Some(Arc::new(ShopwareClient::new(
            http,
            base_url,
            secret("client_id")?,
            secret("client_secret")?,
            text("currency_id"),
        ))),
        Platform::Tally => None,
    }
}

/// A platform id this product needs for `what`, or why it can't be pushed.
fn product_ref<'a>(
    refs: &'a BTreeMap<String, String>,
    sku: &Sku,
    name: &str,
) -> Result<&'a str, PushError> {
    refs.get(name).map(String::as_str).ok_or_else(|| {
        PushError::Refused(format!(
            "product {sku} has no channel_refs.{name} for this channel"
        ))
    })
}

/// Sends a request and reads a JSON answer, sorting failures into what is
/// worth retrying and what is not.
async fn send_json(req: reqwest::RequestBuilder) -> Result<Value, PushError> {
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if status.as_u16() == 429 {
        return Err(PushError::RateLimited(retry_after(resp.headers())));
    }
    let body = resp.text().await.map_err(transport)?;
    if status.is_server_error() {
        return Err(PushError::Unavailable(format!(
            "{status}: {}",
            snippet(&body)
        )));
    }
    if !status.is_success() {
        return Err(PushError::Refused(format!("{status}: {}", snippet(&body))));
    }
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body)
        .map_err(|e| PushError::Unavailable(format!("unreadable answer ({e}): {}", snippet(&body))))
}

/// reqwest's errors name the URL but never headers: no credential leaks.
fn transport(e: reqwest::Error) -> PushError {
    if e.is_timeout() {
        PushError::Unavailable(format!("timed out: {e}"))
    } else {
        PushError::Unavailable(e.to_string())
    }
}

/// `Retry-After` as seconds or an HTTP date; one second if absent.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if let Ok(secs) = raw.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Duration::from_secs_f64(secs.min(3600.0));
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(raw) {
        let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        return wait.to_std().unwrap_or(Duration::ZERO);
    }
    Duration::from_secs(1)
}

fn snippet(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_falls_back_to_one() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Duration::from_secs(2));
        h.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h), Duration::from_millis(500));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        assert_eq!(retry_after(&HeaderMap::new()), Duration::from_secs(1));
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials("shpat_secret".into());
        assert_eq!(format!("{c:?}"), "Credentials(***)");
    }

    #[test]
    fn a_source_without_credentials_is_receive_only() {
        let now = chrono::Utc::now();
        let name = tally_core::SourceName::parse("shop").unwrap();
        let body = serde_json::json!({"platform": "shopify", "secret": "0123456789abcdef",
                                      "api": {"base_url": "https://x.myshopify.com"}});
        let s = Source::parse(&name, &body, None, now).unwrap();
        assert!(client_for(&s, reqwest::Client::new()).is_none());
        let body = serde_json::json!({"platform": "shopify", "secret": "0123456789abcdef",
                                      "api": {"base_url": "https://x.myshopify.com", "access_token": "t"}});
        let s = Source::parse(&name, &body, None, now).unwrap();
        assert!(client_for(&s, reqwest::Client::new()).is_some());
    }
}
