//! tally-embedded: the ports of tally-core on one SQLite file, so the whole
//! of Tally runs in one process with nothing but cargo.
//!
//! # Layout
//!
//! - [`db`]: opening the file (WAL, synchronous=FULL), the schema, and the
//!   one connection every call goes through.
//! - [`store`]: `Store` (version-checked transactions with audit records,
//!   idempotency markers and an outbox) and `ChangeFeed`.
//! - [`queue`]: `Queue` with visibility timeouts, FIFO groups,
//!   deduplication and a dead-letter queue after `max_receives`.
//!
//! Everything committed is on disk before the call returns, so an event
//! acknowledged after `Queue::send` survives `kill -9`.

pub mod db;
pub mod error;
pub mod queue;
pub mod store;

pub use db::Embedded;
pub use error::Error;
