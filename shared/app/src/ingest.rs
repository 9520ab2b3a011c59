//! The front door: a delivery is verified against its source's secret and
//! queued durably, and only then acknowledged. Nothing else happens here, so
//! the answer is fast and never a 5xx for a well-signed payload unless the
//! queue itself is down (design rules 6 and 7).

use std::collections::BTreeMap;

use tally_connectors::Headers;
use tally_core::SourceName;
use tally_core::catalog::{Platform, Source};
use tally_core::entity::Key;
use tally_core::inbound::Delivery;
use tally_core::ports::{Message, queues};

use crate::{AppError, Tally};

/// Largest body accepted (413 above it).
pub const MAX_BODY: usize = 1 << 20;

/// What the front door did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Durably queued, holding this many events.
    Queued(usize),
    /// A platform's data-less URL check, answered and not kept.
    Ping,
}

impl Tally {
    /// Verifies and queues one delivery. `platform` is the one the route
    /// names (`Tally` for `/events`).
    pub async fn ingest(
        &self,
        platform: Platform,
        source: &str,
        headers: &Headers,
        body: &[u8],
    ) -> Result<Ingested, AppError> {
        let unknown = || AppError::NotFound(format!("{} source {source:?}", platform.as_str()));
        let name = SourceName::parse(source).map_err(|_| unknown())?;
        let src = self.source(&name).await?.ok_or_else(unknown)?;
        if src.platform != platform {
            return Err(unknown());
        }
        if tally_connectors::is_ping(platform, headers, body) {
            tracing::info!(source = %name, "answered a platform's ping");
            return Ok(Ingested::Ping);
        }
        let now = self.now();
        tally_connectors::verify(platform, &src.secret, headers, body, now).map_err(|e| {
            tracing::warn!(source = %name, reason = %e, "refused a delivery");
            AppError::Unauthorized(e.to_string())
        })?;
        let accepted = tally_connectors::count_events(platform, body);
        let kept: BTreeMap<String, String> = tally_connectors::kept_headers(platform)
            .iter()
            .filter_map(|h| headers.get(*h).map(|v| ((*h).to_owned(), v.clone())))
            .collect();
        let delivery = Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            source: name,
            platform,
            received_at: now,
            headers: kept,
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let body =
            serde_json::to_string(&delivery).map_err(|e| AppError::Internal(e.to_string()))?;
        self.queue
            .send(
                queues::INBOUND,
                vec![Message {
                    body,
                    group: Some(delivery.source.to_string()),
                    dedup_id: Some(delivery.id.clone()),
                }],
            )
            .await?;
        tracing::debug!(source = %delivery.source, delivery = %delivery.id, events = accepted, bytes = delivery.body.len(), "verified and queued");
        self.metrics.add(
            "tally_events_accepted_total",
            &[
                ("source", delivery.source.as_str()),
                ("platform", platform.as_str()),
            ],
            accepted as u64,
        );
        Ok(Ingested::Queued(accepted))
    }

    pub async fn source(&self, name: &SourceName) -> Result<Option<Source>, AppError> {
        let got = self.store.get(&[Key::source(name)]).await?;
        Ok(got
            .into_iter()
            .next()
            .flatten()
            .and_then(|v| v.value.into_source()))
    }
}
