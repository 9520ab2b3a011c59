//! tally-app: Tally's steps, written once over the ports, and the HTTP
//! surface. `tally serve` runs them on SQLite in one process; the Lambda
//! functions run the same code on DynamoDB and SQS.
//!
//! # Layout
//!
//! - [`ingest`]: verify a delivery and queue it durably (the only thing done
//!   before answering 202).
//! - [`pipeline`]: translate, check against the catalog, then quarantine,
//!   apply to the ledger, or forward to the next workflow's queue.
//! - [`ledger`]: apply a ledger event with the persistence primitive,
//!   retrying from a fresh read on conflict.
//! - [`admin`]: sources, locations, products, stock views, audit.
//! - [`pricing`]: the reprice step, price views and reverts.
//! - [`orders`]: recommended actions, approval, execution, expiry.
//! - [`quarantine`]: list, replay and discard what validation refused.
//! - [`push`]: tell the channels (stock, prices, order commands), and
//!   their sync status.
//! - [`monitor`]: anomaly alerts from the audit log.
//! - [`drift`]: non-authoritative channels' stock figures against the ledger.
//! - [`worker`]: the loop that drains a queue through a step (local mode).
//! - [`http`]: the one axum Router for webhooks, events and the admin API.

pub mod admin;
pub mod drift;
pub mod error;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub mod monitor;
pub mod orders;
pub mod pipeline;
pub mod pricing;
pub mod push;
pub mod quarantine;
pub mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tally_core::orders::OrderPolicy;
use tally_core::ports::{Clock, Queue, Store};

pub use error::AppError;

/// The wall clock, in UTC.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that says what it is told, only ever forward: a backtest
/// replays history in history's own time.
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(start))
    }

    pub fn advance_to(&self, t: DateTime<Utc>) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t > *now {
            *now = t;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the validate step sends a ledger event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStep {
    /// Apply it in this process (`tally serve`: one process, one queue hop).
    Inline,
    /// Queue it for the update-stock function (AWS).
    Queued,
}

/// The ports every step works through, built once per process.
#[derive(Clone)]
pub struct Tally {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub ledger: LedgerStep,
    pub orders: OrderPolicy,
    pub metrics: Arc<metrics::Metrics>,
    pub channels: Arc<push::Channels>,
    /// The anomaly monitor's thresholds.
    pub monitor: tally_core::monitor::MonitorPolicy,
    /// Ledger events decided together and committed as one transaction at
    /// most (1: one commit per event).
    pub ledger_batch: usize,
}

impl Tally {
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> Self {
        Self {
            store,
            queue,
            clock: Arc::new(SystemClock),
            ledger: LedgerStep::Inline,
            orders: OrderPolicy::default(),
            metrics: Arc::default(),
            channels: Arc::default(),
            monitor: Default::default(),
            ledger_batch: ledger::MAX_BATCH,
        }
    }

    pub fn with_ledger_batch(mut self, events: usize) -> Self {
        self.ledger_batch = events.clamp(1, ledger::MAX_BATCH);
        self
    }

    pub fn with_monitor_policy(mut self, policy: tally_core::monitor::MonitorPolicy) -> Self {
        self.monitor = policy;
        self
    }

    pub fn with_channels(mut self, channels: push::Channels) -> Self {
        self.channels = Arc::new(channels);
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_order_policy(mut self, policy: OrderPolicy) -> Self {
        self.orders = policy;
        self
    }

    pub fn with_ledger_step(mut self, step: LedgerStep) -> Self {
        self.ledger = step;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
