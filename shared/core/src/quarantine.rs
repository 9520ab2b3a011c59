//! Quarantine: well-signed input that could not be translated or failed
//! validation, kept with its raw payload and every reason so it can be
//! fixed and replayed, or discarded on purpose. Never dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Platform;
use crate::types::{Reasons, SourceName};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: String,
    pub source: SourceName,
    pub platform: Platform,
    pub received_at: DateTime<Utc>,
    pub reasons: Reasons,
    /// The raw payload as it arrived (or the one event of a batch that
    /// failed), replayable as is.
    pub payload: String,
    /// The platform headers that carry identity and topic.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl QuarantineEntry {
    /// Ids derive from the delivery and the position in it, so a retried
    /// delivery quarantines into the same entry instead of a second one.
    pub fn id_for(delivery_id: &str, index: usize) -> String {
        let mut h = Sha256::new();
        h.update(delivery_id.as_bytes());
        h.update(index.to_be_bytes());
        format!("q-{}", hex::encode(&h.finalize()[..10]))
    }
}
