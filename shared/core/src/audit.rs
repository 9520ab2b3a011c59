//! Audit records: what changed, when, why, by whom and from which input.
//! Every state change is committed together with its records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub at: DateTime<Utc>,
    /// `stock:SKU@LOCATION`, `price:SKU`, `product:SKU`, `order:ID`, ...
    pub entity: String,
    pub kind: String,
    /// `system` for automation, the admin or approver otherwise.
    pub actor: String,
    /// The idempotency key of the causing event, or the admin request.
    pub cause: String,
    pub before: Value,
    pub after: Value,
    #[serde(default)]
    pub inputs: Value,
}

/// Who and what caused a change; shared by all the records of one commit.
#[derive(Debug, Clone)]
pub struct Cause {
    pub key: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl Cause {
    pub fn system(key: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self {
            key: key.into(),
            actor: "system".into(),
            at,
        }
    }

    /// A record of this cause. Its id is derived from the cause (its key
    /// and time), entity, kind and position, so the same decision writes
    /// the very same ids. The time comes first: the ids of one moment sort
    /// together, and a store's index of them grows at its end rather than
    /// at a random page per record (on SQLite, a page written per record).
    pub fn record(
        &self,
        index: usize,
        entity: String,
        kind: &str,
        before: Value,
        after: Value,
        inputs: Value,
    ) -> AuditRecord {
        let mut h = Sha256::new();
        for part in [self.key.as_str(), entity.as_str(), kind] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(index.to_be_bytes());
        let micros = self.at.timestamp_micros().max(0);
        let id = format!("{micros:014x}{}", hex::encode(&h.finalize()[..5]));
        AuditRecord {
            id,
            at: self.at,
            entity,
            kind: kind.to_owned(),
            actor: self.actor.clone(),
            cause: self.key.clone(),
            before,
            after,
            inputs,
        }
    }
}

/// Collects the records of one decision, numbering them as they come.
#[derive(Debug)]
pub struct AuditLog<'c> {
    cause: &'c Cause,
    pub records: Vec<AuditRecord>,
}

impl<'c> AuditLog<'c> {
    pub fn new(cause: &'c Cause) -> Self {
        Self {
            cause,
            records: Vec::new(),
        }
    }
    pub fn at(&self) -> DateTime<Utc> {
        self.cause.at
    }
    pub fn push(&mut self, entity: String, kind: &str, before: Value, after: Value, inputs: Value) {
        let r = self
            .cause
            .record(self.records.len(), entity, kind, before, after, inputs);
        self.records.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cause_yields_the_same_ids_and_different_entities_differ() {
        let c = Cause::system("wms:1", Utc::now());
        let a = c.record(
            0,
            "stock:A@W".into(),
            "k",
            Value::Null,
            Value::Null,
            Value::Null,
        );
        let b = c.record(
            0,
            "stock:A@W".into(),
            "k",
            Value::Null,
            Value::Null,
            Value::Null,
        );
        let d = c.record(
            0,
            "stock:B@W".into(),
            "k",
            Value::Null,
            Value::Null,
            Value::Null,
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, d.id);
        assert_eq!(a.id.len(), 24);
    }

    #[test]
    fn ids_sort_by_the_time_of_their_cause() {
        let at = Utc::now();
        let id = |key: &str, micros: i64| {
            Cause::system(key, at + chrono::Duration::microseconds(micros))
                .record(
                    0,
                    "stock:A@W".into(),
                    "k",
                    Value::Null,
                    Value::Null,
                    Value::Null,
                )
                .id
        };
        // Whatever the key (the hash part), a later cause sorts after.
        let ids = [id("z", 0), id("a", 1), id("m", 2), id("b", 1_000_000)];
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
}
