//! The ports: what Tally needs from the outside world, as small traits.
//! tally-embedded implements them on SQLite, tally-aws on DynamoDB and SQS;
//! both pass the same conformance suite (tests/conformance).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::AuditRecord;
use crate::entity::{Entity, Key, Kind, Versioned};
use crate::error::Result;

/// What a put expects to find, checked inside the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist yet.
    Absent,
    /// The key must be at exactly this version.
    Version(u64),
}

impl Expect {
    pub fn from_loaded<T>(loaded: Option<&Versioned<T>>) -> Expect {
        loaded.map_or(Expect::Absent, |v| Expect::Version(v.version))
    }
}

#[derive(Debug, Clone)]
pub struct Put {
    pub entity: Entity,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub struct Delete {
    pub key: Key,
    pub version: u64,
}

/// A message to send to a queue as part of a commit (a transactional
/// outbox: it is sent if and only if the commit lands).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub queue: String,
    pub message: Message,
}

/// The one persistence primitive (design rule 2): every put and delete is
/// version-checked, and all of them land together with the audit records and
/// the idempotency marker of the causing event, or none does.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub puts: Vec<Put>,
    pub deletes: Vec<Delete>,
    pub audit: Vec<AuditRecord>,
    /// `source:event-id` of each causing event (several when one commit
    /// applies a batch); a commit naming a key already applied fails with
    /// `Error::AlreadyApplied(key)` and writes nothing.
    pub applied: Vec<String>,
    pub outbox: Vec<OutboxMessage>,
}

impl Transaction {
    /// How many items the store writes: DynamoDB takes at most 100 in one
    /// transaction.
    pub fn items(&self) -> usize {
        self.puts.len()
            + self.deletes.len()
            + self.audit.len()
            + self.applied.len()
            + self.outbox.len()
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.audit.is_empty()
            && self.applied.is_empty()
            && self.outbox.is_empty()
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The records under `keys`, in the same order; `None` where absent.
    async fn get(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Entity>>>>;
    /// Every record of one kind, ordered by key.
    async fn list(&self, kind: Kind) -> Result<Vec<Versioned<Entity>>>;
    /// Commits all of `tx` or nothing: `Error::Conflict` if a version check
    /// fails, `Error::AlreadyApplied` if the idempotency marker exists.
    async fn commit(&self, tx: Transaction) -> Result<()>;
    async fn was_applied(&self, idempotency_key: &str) -> Result<bool>;
    /// An entity's audit records, newest first.
    async fn audit_for(&self, entity: &str, limit: usize) -> Result<Vec<AuditRecord>>;
    async fn audit_record(&self, id: &str) -> Result<Option<AuditRecord>>;
    /// The newest audit records of every entity, newest first: the
    /// activity feed of what automation and people changed.
    async fn recent_audit(&self, limit: usize) -> Result<Vec<AuditRecord>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    /// FIFO group (SKU or order id): one group is delivered in order, one
    /// message at a time.
    pub group: Option<String>,
    /// Same id within the deduplication window: delivered once.
    pub dedup_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub receipt: String,
    pub body: String,
    pub group: Option<String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, queue: &str, messages: Vec<Message>) -> Result<()>;
    /// Up to `max` messages, hidden from other receivers for `visibility`.
    async fn receive(&self, queue: &str, max: usize, visibility: Duration)
    -> Result<Vec<Received>>;
    /// Done with a message: it will not come back.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<()>;
    /// Done with several messages at once (one write where the backend can).
    async fn delete_many(&self, queue: &str, receipts: &[String]) -> Result<()> {
        for r in receipts {
            self.delete(queue, r).await?;
        }
        Ok(())
    }
    /// Not done: visible again after `delay`.
    async fn retry_after(&self, queue: &str, receipt: &str, delay: Duration) -> Result<()>;
    /// Messages waiting or in flight (approximate on SQS).
    async fn depth(&self, queue: &str) -> Result<u64>;
}

/// A committed change to one record, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub key: Key,
    pub old: Option<Entity>,
    pub new: Option<Entity>,
    pub at: DateTime<Utc>,
}

/// The stream of committed changes (DynamoDB Streams in AWS, a table
/// locally) that reprice and publish follow.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Changes after `after`, oldest first.
    async fn changes_after(&self, after: u64, max: usize) -> Result<Vec<Change>>;
    /// How far `consumer` has read (0 if never).
    async fn cursor(&self, consumer: &str) -> Result<u64>;
    async fn save_cursor(&self, consumer: &str, seq: u64) -> Result<()>;
    /// Audit records written after `after`, oldest first, with their
    /// positions (what the monitor follows locally; the audit table's
    /// stream in AWS).
    async fn audit_after(&self, after: u64, max: usize) -> Result<Vec<(u64, AuditRecord)>>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The queues between steps (SQS queue names in AWS; DLQs add `-dlq`).
pub mod queues {
    /// Verified raw deliveries, before translation.
    pub const INBOUND: &str = "inbound";
    /// Validated ledger events, FIFO by order (or SKU), for update-stock.
    pub const STOCK: &str = "stock";
    /// Follow-up and order-handling events (`order.short`, payment failures).
    pub const ORDER: &str = "order";
    /// Pricing signals (competitor prices, cost changes).
    pub const SIGNAL: &str = "signal";
    /// Commands and values for the channels.
    pub const OUTBOUND: &str = "outbound";

    pub fn dead_letter(queue: &str) -> String {
        format!("{queue}-dlq")
    }
}
