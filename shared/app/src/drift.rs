//! Channel views and drift: what a non-authoritative channel reports about
//! its own stock, and where that differs from what the ledger says it
//! should show.

use std::time::Duration;

use serde_json::{Value, json};
use tally_core::audit::Cause;
use tally_core::catalog::Source;
use tally_core::drift::{ChannelView, ledger_figure};
use tally_core::entity::{Entity, Key, Kind};
use tally_core::event::{Event, EventBody};
use tally_core::ports::{Expect, Put, Transaction};

use crate::pipeline::{Outcome, idempotency_key};
use crate::{AppError, Tally};

impl Tally {
    /// Records a stock report from a source that is not authoritative for
    /// stock. A count becomes the channel's view at that location; an
    /// adjustment is only audited (a delta means nothing without the
    /// channel's base figure).
    pub async fn record_channel_view(
        &self,
        source: &Source,
        event: &Event,
    ) -> Result<Outcome, AppError> {
        let idem = idempotency_key(&source.name, event);
        for attempt in 0..20u64 {
            if self.store.was_applied(&idem).await? {
                return Ok(Outcome::Duplicate);
            }
            let cause = Cause::system(idem.clone(), self.now());
            let tx = match &event.body {
                EventBody::StockCounted { sku, location, on_hand } => {
                    let keys = [
                        Key::channel_view(&source.channel, sku),
                        Key::stock(sku),
                        Key::product(sku),
                    ];
                    let mut got = self.store.get(&keys).await?.into_iter();
                    let (view, stock, product) = (got.next().flatten(), got.next().flatten(), got.next().flatten());
                    let mut v = view
                        .as_ref()
                        .and_then(|v| v.value.as_channel_view().cloned())
                        .unwrap_or_else(|| ChannelView::new(source.channel.clone(), sku.clone(), source.name.clone()));
                    let before = view.as_ref().map_or(Value::Null, |_| json!({"figure": v.figure()}));
                    v.observe(location.clone(), i64::from(on_hand.get()), event.occurred_at);
                    let ledger = ledger_figure(
                stock.as_ref().and_then(|s| s.value.as_stock()),
                product.as_ref().and_then(|p| p.value.as_product()),
                &source.channel,
            );
                    v.compare(ledger, cause.at);
                    let after = json!({"figure": v.figure(), "ledger": ledger, "differs_since": v.differs_since});
                    Transaction {
                        audit: vec![cause.record(
                            0,
                            format!("channel_view:{}/{sku}", source.channel),
                            "channel.stock_reported",
                            before,
                            after,
                            json!({"event_id": event.id, "location": location, "on_hand": on_hand}),
                        )],
                        puts: vec![Put {
                            expect: Expect::from_loaded(view.as_ref()),
                            entity: Entity::ChannelView(v),
                        }],
                        applied: vec![idem.clone()],
                        ..Default::default()
                    }
                }
                EventBody::StockAdjusted { sku, location, delta, reason } => Transaction {
                    audit: vec![cause.record(
                        0,
                        format!("stock:{sku}@{location}"),
                        "stock.channel_adjustment_ignored",
                        Value::Null,
                        Value::Null,
                        json!({"event_id": event.id, "delta": delta, "reason": reason,
                               "why": format!("source {} is not authoritative for stock", source.name)}),
                    )],
                    applied: vec![idem.clone()],
                    ..Default::default()
                },
                _ => return Err(AppError::Internal("not a stock report".into())),
            };
            match self.store.commit(tx).await {
                Ok(()) => return Ok(Outcome::ChannelView),
                Err(tally_core::Error::AlreadyApplied(_)) => return Ok(Outcome::Duplicate),
                Err(tally_core::Error::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(attempt)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "{idem}: channel view kept changing"
        )))
    }

    /// `GET /v1/drift`: every channel view that differs from the ledger now.
    pub async fn drift(&self) -> Result<Value, AppError> {
        let views: Vec<ChannelView> = self
            .store
            .list(Kind::ChannelView)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_channel_view())
            .collect();
        let mut items = vec![];
        for v in views {
            let mut got = self
                .store
                .get(&[Key::stock(&v.sku), Key::product(&v.sku)])
                .await?
                .into_iter();
            let (stock, product) = (got.next().flatten(), got.next().flatten());
            let ledger = ledger_figure(
                stock.as_ref().and_then(|s| s.value.as_stock()),
                product.as_ref().and_then(|p| p.value.as_product()),
                &v.channel,
            );
            if v.figure() != i64::from(ledger) {
                let last = v.locations.values().map(|f| f.as_of).max();
                items.push(json!({
                    "sku": v.sku, "channel": v.channel, "source": v.source,
                    "channel_figure": v.figure(), "ledger_figure": ledger,
                    "since": v.differs_since.or(last),
                    "locations": v.locations,
                }));
            }
        }
        Ok(json!({"items": items}))
    }
}
