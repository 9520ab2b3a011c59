//! tally-core: the domain of Tally, with no IO.
//!
//! # Layout
//!
//! - [`types`]: newtypes built only by parsing (`Sku`, `Quantity`, `Money`, ...).
//! - [`event`]: canonical events and their validation in transit.
//! - [`catalog`]: sources, locations and products as the merchant sets them.
//! - [`ledger`]: stock per SKU × location, reservations, the decision for
//!   each ledger event.
//! - [`pricing`]: guardrailed price decisions and the price record.
//! - [`action`]: proposals that wait for a person.
//! - [`audit`]: the record written with every change.
//! - [`quarantine`], [`inbound`]: bad input kept for replay; raw deliveries.
//! - [`drift`]: what a channel that is not authoritative for stock shows,
//!   against the ledger.
//! - [`entity`]: the records a store holds, under typed keys.
//! - [`ports`]: the traits adapters implement (`Store`, `Queue`,
//!   `ChangeFeed`, `Clock`).
//!
//! Every decision is a pure function of (state, event, policy, now); the
//! edges load, call and persist.

pub mod action;
pub mod audit;
pub mod catalog;
pub mod drift;
pub mod entity;
pub mod error;
pub mod event;
pub mod inbound;
pub mod ledger;
pub mod monitor;
pub mod orders;
pub mod ports;
pub mod pricing;
pub mod push;
pub mod quarantine;
pub mod types;

pub use error::{Error, Result};
pub use types::{
    Channel, Currency, LocationId, Money, OrderId, Quantity, Reasons, Sku, SourceName,
};
