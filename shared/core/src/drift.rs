//! Channel views and drift.
//!
//! A channel that is not authoritative for stock still reports its own
//! figure (a Shopify inventory level, a WooCommerce stock quantity). That
//! figure never changes the ledger; it is kept as the channel's view, and a
//! difference from what the ledger says the channel should show is drift.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::ledger::StockRecord;
use crate::types::{Channel, LocationId, Sku, SourceName};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    pub channel: Channel,
    pub sku: Sku,
    pub source: SourceName,
    /// The channel's figure per location, as last reported.
    pub locations: BTreeMap<LocationId, ViewedFigure>,
    /// When the channel's figure was first seen to differ from the ledger's,
    /// if it still did at the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differs_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewedFigure {
    pub figure: i64,
    /// `occurred_at` of the report: an older report does not overwrite.
    pub as_of: DateTime<Utc>,
}

impl ChannelView {
    pub fn new(channel: Channel, sku: Sku, source: SourceName) -> Self {
        Self {
            channel,
            sku,
            source,
            locations: BTreeMap::new(),
            differs_since: None,
        }
    }

    /// What the channel shows in all: the sum over its locations.
    pub fn figure(&self) -> i64 {
        self.locations.values().map(|f| f.figure).sum()
    }

    /// Takes a report in; `false` if it is older than what is known.
    pub fn observe(&mut self, location: LocationId, figure: i64, as_of: DateTime<Utc>) -> bool {
        if self
            .locations
            .get(&location)
            .is_some_and(|f| f.as_of >= as_of)
        {
            return false;
        }
        self.locations
            .insert(location, ViewedFigure { figure, as_of });
        true
    }

    /// Compares with the ledger and keeps `differs_since` right.
    pub fn compare(&mut self, ledger_figure: u32, now: DateTime<Utc>) {
        if self.figure() == i64::from(ledger_figure) {
            self.differs_since = None;
        } else if self.differs_since.is_none() {
            self.differs_since = Some(now);
        }
    }
}

/// What the ledger says `channel` should show for this SKU: available to
/// sell less the product's buffer for that channel.
pub fn ledger_figure(
    stock: Option<&StockRecord>,
    product: Option<&Product>,
    channel: &Channel,
) -> u32 {
    let buffer = product
        .and_then(|p| p.channel_buffers.get(channel))
        .copied()
        .unwrap_or(0);
    stock.map_or(0, |s| s.available_for_channel(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_report_does_not_overwrite_and_difference_is_timed() {
        let t0: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
        let mut v = ChannelView::new(
            Channel::parse("shop").unwrap(),
            Sku::parse("A").unwrap(),
            SourceName::parse("shop").unwrap(),
        );
        let wh = LocationId::parse("WH").unwrap();
        assert!(v.observe(wh.clone(), 7, t0));
        assert!(!v.observe(wh.clone(), 9, t0 - chrono::Duration::minutes(1)));
        assert_eq!(v.figure(), 7);
        v.compare(5, t0);
        assert_eq!(v.differs_since, Some(t0));
        v.compare(5, t0 + chrono::Duration::minutes(5));
        assert_eq!(
            v.differs_since,
            Some(t0),
            "the first time it differed stays"
        );
        v.compare(7, t0);
        assert_eq!(v.differs_since, None);
    }
}
