//! A delivery as received: verified, not yet translated. This is what the
//! ingest step queues durably before it answers 202.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Platform;
use crate::event::Event;
use crate::types::SourceName;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique per receipt; quarantine ids derive from it.
    pub id: String,
    pub source: SourceName,
    pub platform: Platform,
    pub received_at: DateTime<Utc>,
    /// Lower-cased names of the headers the translator needs.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// A validated event on its way between steps (the stock, order and signal
/// queues): the source travels with it because idempotency is per source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcedEvent {
    pub source: SourceName,
    pub event: Event,
}
