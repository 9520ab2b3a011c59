//! tally-connectors: every platform's way of signing and shaping a delivery,
//! turned into canonical events.
//!
//! # Layout
//!
//! - [`tally`]: `X-Tally-Signature` and canonical JSON (ERP, WMS, feeds).
//!
//! Each platform module offers `verify` (over the raw body, in constant
//! time) and `translate` (pure: a delivery in, canonical events or reasons
//! out). Nothing here does IO.

pub mod error;
pub mod tally;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tally_core::Reasons;
use tally_core::catalog::Platform;
use tally_core::event::Event;
use tally_core::inbound::Delivery;

pub use error::Error;

/// Request headers by lower-cased name.
pub type Headers = BTreeMap<String, String>;

/// One event out of a delivery, or why it could not be one.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The part of the delivery this came from, kept for quarantine.
    pub payload: String,
    pub result: Result<Event, Reasons>,
}

impl Translated {
    fn unreadable(body: &str, e: impl std::fmt::Display) -> Self {
        let mut r = Reasons::new();
        r.push("body", format!("is not valid JSON: {e}"));
        Translated {
            payload: body.to_owned(),
            result: Err(r),
        }
    }
}

/// The headers a platform's translator needs; the rest are not kept.
pub fn kept_headers(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Tally => &[],
        _ => &[],
    }
}

pub fn verify(
    platform: Platform,
    secret: &str,
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    match platform {
        Platform::Tally => tally::verify(secret, headers, body, now),
        _ => Err(Error::BadSignature),
    }
}

/// How many events a verified body carries, for the 202 answer.
pub fn count_events(platform: Platform, body: &[u8]) -> usize {
    match platform {
        Platform::Tally => tally::count_events(body),
        _ => 1,
    }
}

pub fn translate(delivery: &Delivery, now: DateTime<Utc>) -> Vec<Translated> {
    match delivery.platform {
        Platform::Tally => tally::translate(delivery, now),
        _ => vec![],
    }
}
