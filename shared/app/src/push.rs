//! The push step: tell each channel what the ledger and pricing decided.
//!
//! Outbound messages say *that* a SKU changed for a channel; this step
//! reads the current figures when it pushes, compares them with what the
//! channel last confirmed (`pushed:<channel>/<sku>`) and sends only what
//! differs. A burst of changes therefore becomes one push of the final
//! figure, and a redelivered message pushes nothing.
//!
//! Every push and every failure is audited under `channel:<name>` and
//! counted in the channel's sync status. A batch that keeps failing is
//! given up on after [`MAX_PUSH_ATTEMPTS`] receives: it goes to the
//! dead-letter queue and raises an alert; `resync` pushes everything again
//! once the channel is back, so nothing is lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_connectors::push::{
    ChannelClient, CommandOutcome, PriceUpdate, PushError, StockUpdate, client_for,
};
use tally_core::audit::Cause;
use tally_core::catalog::{Product, Source};
use tally_core::drift::ledger_figure;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::ports::{Change, Expect, Message, Put, Received, Transaction, queues};
use tally_core::push::{Alert, ChannelCommand, ChannelSync, Outbound, PushedRecord};
use tally_core::{Channel, Sku};

use crate::{AppError, Tally};

/// Receives of one message before it is given up on; the same as the
/// outbound queue's `maxReceiveCount` in template.yaml.
pub const MAX_PUSH_ATTEMPTS: u32 = 5;

/// The platform clients, built once per source and kept while the
/// source's settings are unchanged (a Shopware token lives in its client).
pub struct Channels {
    http: reqwest::Client,
    /// First retry delay; doubles per attempt, with jitter.
    backoff: Duration,
    clients: Mutex<HashMap<String, CachedClient>>,
}

impl Default for Channels {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(1))
    }
}

impl Channels {
    /// `timeout`: longest wait for one platform call.
    pub fn new(timeout: Duration, backoff: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            backoff,
            clients: Mutex::default(),
        }
    }

    fn client(&self, source: &Source) -> Option<Arc<dyn ChannelClient>> {
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, c)) = cache.get(source.name.as_str())
            && *at == source.updated_at
        {
            return Some(c.clone());
        }
        let c = client_for(source, self.http.clone())?;
        cache.insert(source.name.to_string(), (source.updated_at, c.clone()));
        Some(c)
    }

    /// Exponential backoff with jitter (0.5×–1.5×), at most five minutes.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff.as_millis() as u64 * 2u64.pow(attempt.saturating_sub(1).min(12));
        let jitter = 500 + (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
        Duration::from_millis((base * jitter / 1000).min(300_000))
    }
}

/// A source's client and the `updated_at` of the settings it was built from.
type CachedClient = (DateTime<Utc>, Arc<dyn ChannelClient>);

/// What to do with one received outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Done,
    RetryAfter(Duration),
    /// Given up on: to the dead-letter queue (the alert is raised).
    DeadLetter,
}

/// A push that failed, and when to try again.
struct Failed {
    error: String,
    retry_after: Option<Duration>,
}

impl From<PushError> for Failed {
    fn from(e: PushError) -> Self {
        Failed {
            retry_after: e.retry_after(),
            error: e.to_string(),
        }
    }
}

impl From<AppError> for Failed {
    fn from(e: AppError) -> Self {
        Failed {
            retry_after: None,
            error: e.to_string(),
        }
    }
}

impl Tally {
    /// The outbound messages a committed change calls for: a stock or
    /// product change may move each channel's figure (and price).
    pub async fn outbound_for_change(&self, change: &Change) -> Result<Vec<Message>, AppError> {
        let (sku, at, price_too) = match (&change.old, &change.new) {
            (old, Some(Entity::Stock(s))) => {
                let was = old
                    .as_ref()
                    .and_then(Entity::as_stock)
                    .map(|o| o.available());
                if was == Some(s.available()) {
                    return Ok(vec![]);
                }
                (s.sku.clone(), s.updated_at.unwrap_or(change.at), false)
            }
            (_, Some(Entity::Product(p))) => (p.sku.clone(), p.updated_at, true),
            _ => return Ok(vec![]),
        };
        let mut out = Vec::new();
        for channel in self.push_channels().await?.into_keys() {
            let mut add = |m: Outbound, what: &str| {
                out.push(Message {
                    body: serde_json::to_string(&m).unwrap_or_default(),
                    group: Some(channel.to_string()),
                    // The feed's sequence locally; in AWS (no sequence) the
                    // record's own change time tells changes apart.
                    dedup_id: Some(format!(
                        "{what}:{channel}:{sku}:{}:{}",
                        change.seq,
                        at.timestamp_micros()
                    )),
                });
            };
            add(
                Outbound::StockChanged {
                    channel: channel.clone(),
                    sku: sku.clone(),
                    changed_at: at,
                },
                "stock",
            );
            if price_too {
                add(
                    Outbound::PriceChanged {
                        channel: channel.clone(),
                        sku: sku.clone(),
                        changed_at: at,
                        cause: format!("product:{sku}"),
                    },
                    "price",
                );
            }
        }
        Ok(out)
    }

    /// Channels Tally can push to, each with the source that holds its
    /// credentials.
    pub async fn push_channels(&self) -> Result<BTreeMap<Channel, Source>, AppError> {
        let mut out = BTreeMap::new();
        for v in self.store.list(Kind::Source).await? {
            if let Some(s) = v.value.into_source()
                && self.channels.client(&s).is_some()
            {
                out.entry(s.channel.clone()).or_insert(s);
            }
        }
        Ok(out)
    }

    /// Pushes one batch from the outbound queue; one settlement per
    /// message, in order.
    pub async fn push_batch(&self, batch: &[Received]) -> Vec<Settle> {
        let mut settle = vec![Settle::Done; batch.len()];
        let mut by_channel: BTreeMap<Channel, Vec<(usize, Outbound)>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            match serde_json::from_str::<Outbound>(&m.body) {
                Ok(o) => by_channel
                    .entry(o.channel().clone())
                    .or_default()
                    .push((i, o)),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable outbound message; to the dead-letter queue");
                    settle[i] = Settle::DeadLetter;
                }
            }
        }
        let sources = match self.push_channels().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the sources; retrying the batch");
                return vec![Settle::RetryAfter(self.channels.backoff(1)); batch.len()];
            }
        };
        for (channel, messages) in by_channel {
            let attempt = messages
                .iter()
                .map(|(i, _)| batch[*i].receive_count)
                .max()
                .unwrap_or(1);
            let Some(source) = sources.get(&channel) else {
                // Receive-only: there is nobody to tell. Commands need a person.
                for (i, m) in &messages {
                    if let Outbound::Command(c) = m {
                        settle[*i] = self
                            .command_not_sent(c, "the channel has no push credentials")
                            .await;
                    }
                }
                continue;
            };
            let Some(client) = self.channels.client(source) else {
                continue;
            };
            let (commands, values): (Vec<_>, Vec<_>) = messages
                .into_iter()
                .partition(|(_, m)| matches!(m, Outbound::Command(_)));
            for (i, m) in commands {
                let Outbound::Command(c) = m else { continue };
                settle[i] = match self.run_command(client.as_ref(), &c).await {
                    Ok(()) => Settle::Done,
                    Err(f) => self.push_failed(&channel, f, batch[i].receive_count).await,
                };
            }
            if values.is_empty() {
                continue;
            }
            let outcome = match self.push_values(&channel, client.as_ref(), &values).await {
                Ok(()) => Settle::Done,
                Err(f) => self.push_failed(&channel, f, attempt).await,
            };
            for (i, _) in values {
                settle[i] = outcome.clone();
            }
        }
        settle
    }

    /// Pushes the current stock figure and price of every SKU the messages
    /// name (every mapped SKU on a resync) that the channel does not
    /// already show.
    async fn push_values(
        &self,
        channel: &Channel,
        client: &dyn ChannelClient,
        messages: &[(usize, Outbound)],
    ) -> Result<(), Failed> {
        let resync = messages
            .iter()
            .any(|(_, m)| matches!(m, Outbound::Resync { .. }));
        // The earliest ledger change each SKU waits on, for the lag.
        let mut since: BTreeMap<Sku, DateTime<Utc>> = BTreeMap::new();
        for (_, m) in messages {
            if let Outbound::StockChanged {
                sku, changed_at, ..
            }
            | Outbound::PriceChanged {
                sku, changed_at, ..
            } = m
            {
                let e = since.entry(sku.clone()).or_insert(*changed_at);
                *e = (*e).min(*changed_at);
            }
        }
        let skus: Vec<Sku> = if resync {
            self.store
                .list(Kind::Product)
                .await
                .map_err(AppError::from)?
                .into_iter()
                .filter_map(|v| v.value.into_product())
                .filter(|p| p.channel_refs.contains_key(channel))
                .map(|p| p.sku)
                .collect()
        } else {
            since.keys().cloned().collect()
        };
        let state = self.push_state(channel, &skus).await?;
        let (mut stock, mut prices) = (Vec::new(), Vec::new());
        for s in &state {
            let Some(refs) = s.product.channel_refs.get(channel) else {
                continue; // not sold there
            };
            let shown = s.pushed.as_ref().map(|p| &p.value);
            if resync || shown.and_then(|p| p.available) != Some(s.available) {
                stock.push(StockUpdate {
                    sku: s.product.sku.clone(),
                    refs: refs.clone(),
                    available: s.available,
                    last_pushed: shown.and_then(|p| p.available),
                });
            }
            if let Some(price) = s.price
                && (resync || shown.and_then(|p| p.price) != Some(price))
            {
                prices.push(PriceUpdate {
                    sku: s.product.sku.clone(),
                    refs: refs.clone(),
                    price,
                    currency: s.product.currency,
                });
            }
        }
        if stock.is_empty() && prices.is_empty() && !resync {
            return Ok(()); // the channel already shows all of it
        }
        client.set_stock(&stock).await?;
        client.set_prices(&prices).await?;
        let now = self.now();
        let lag_ms = since
            .iter()
            .filter(|(sku, _)| {
                stock.iter().any(|u| &u.sku == *sku) || prices.iter().any(|u| &u.sku == *sku)
            })
            .map(|(_, at)| (now - *at).num_milliseconds().max(0))
            .max();
        self.record_push(channel, &state, &stock, &prices, now, lag_ms, resync)
            .await?;
        self.metrics.add(
            "tally_channel_pushes_total",
            &[("channel", channel.as_str()), ("outcome", "confirmed")],
            (stock.len() + prices.len()) as u64,
        );
        Ok(())
    }

    async fn push_state(&self, channel: &Channel, skus: &[Sku]) -> Result<Vec<SkuState>, AppError> {
        let mut keys = Vec::with_capacity(skus.len() * 4);
        for sku in skus {
            keys.extend([
                Key::product(sku),
                Key::stock(sku),
                Key::price(sku),
                Key::pushed(channel, sku),
            ]);
        }
        let got = self.store.get(&keys).await?;
        let mut out = Vec::new();
        for row in got.chunks(4) {
            let [product, stock, price, pushed] = row else {
                continue;
            };
            let Some(product) = product.as_ref().and_then(|v| v.value.as_product()).cloned() else {
                continue;
            };
            let stock = stock.as_ref().and_then(|v| v.value.as_stock());
            let available = ledger_figure(stock, Some(&product), channel);
            let price = price
                .as_ref()
                .and_then(|v| v.value.as_price())
                .map(|p| p.price)
                .or(product.price);
            let pushed = pushed.as_ref().and_then(|v| {
                Some(Versioned {
                    version: v.version,
                    value: v.value.as_pushed()?.clone(),
                })
            });
            out.push(SkuState {
                product,
                available,
                price,
                pushed,
            });
        }
        Ok(out)
    }

    /// Writes what the channel now shows, its sync status and the audit
    /// record, in one commit.
    #[allow(clippy::too_many_arguments)]
    async fn record_push(
        &self,
        channel: &Channel,
        state: &[SkuState],
        stock: &[StockUpdate],
        prices: &[PriceUpdate],
        now: DateTime<Utc>,
        lag_ms: Option<i64>,
        resync: bool,
    ) -> Result<(), AppError> {
        let (sync_v, mut sync) = self.channel_sync(channel).await?;
        let previous = sync.last_push_at;
        sync.confirmed(now, lag_ms);
        let cause = Cause::system(format!("push:{channel}:{}", uuid::Uuid::now_v7()), now);
        let mut tx = Transaction::default();
        for s in state {
            let sku = &s.product.sku;
            let new_stock = stock.iter().find(|u| &u.sku == sku).map(|u| u.available);
            let new_price = prices.iter().find(|u| &u.sku == sku).map(|u| u.price);
            if new_stock.is_none() && new_price.is_none() {
                continue;
            }
            let before = s.pushed.as_ref().map(|p| p.value.clone());
            let record = PushedRecord {
                channel: channel.clone(),
                sku: sku.clone(),
                available: new_stock.or(before.as_ref().and_then(|p| p.available)),
                price: new_price.or(before.as_ref().and_then(|p| p.price)),
                confirmed_at: now,
            };
            tx.puts.push(Put {
                entity: Entity::Pushed(record),
                expect: Expect::from_loaded(s.pushed.as_ref()),
            });
        }
        let figures: BTreeMap<&str, u32> = stock
            .iter()
            .map(|u| (u.sku.as_str(), u.available))
            .collect();
        let priced: BTreeMap<&str, Decimal> =
            prices.iter().map(|u| (u.sku.as_str(), u.price)).collect();
        tx.audit.push(cause.record(
            0,
            format!("channel:{channel}"),
            if resync {
                "channel.resynced"
            } else {
                "channel.pushed"
            },
            json!({"last_push_at": previous}),
            json!({"available": figures, "prices": priced}),
            json!({"lag_ms": lag_ms}),
        ));
        tx.puts.push(Put {
            entity: Entity::ChannelSync(sync),
            expect: Expect::from_loaded(sync_v.as_ref()),
        });
        self.store.commit(tx).await?;
        Ok(())
    }

    async fn channel_sync(
        &self,
        channel: &Channel,
    ) -> Result<(Option<Versioned<()>>, ChannelSync), AppError> {
        let got = self.store.get(&[Key::channel_sync(channel)]).await?;
        Ok(match got.into_iter().next().flatten() {
            Some(v) => (
                Some(Versioned {
                    version: v.version,
                    value: (),
                }),
                v.value
                    .into_channel_sync()
                    .unwrap_or_else(|| ChannelSync::new(channel.clone())),
            ),
            None => (None, ChannelSync::new(channel.clone())),
        })
    }

    /// One order command, at most once: a command already confirmed is not
    /// sent again, and the client reads the order before acting.
    async fn run_command(
        &self,
        client: &dyn ChannelClient,
        c: &ChannelCommand,
    ) -> Result<(), Failed> {
        let marker = format!("command:{}", c.idempotency_key);
        if self
            .store
            .was_applied(&marker)
            .await
            .map_err(AppError::from)?
        {
            return Ok(());
        }
        let outcome = match client.run_command(c).await {
            Ok(o) => o,
            Err(PushError::Unsupported(why)) => {
                self.command_not_sent(c, &why).await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        let cause = Cause::system(marker.clone(), now);
        let (sync_v, mut sync) = self.channel_sync(&c.channel).await?;
        sync.confirmed(now, None);
        let tx = Transaction {
            audit: vec![cause.record(
                0,
                format!("channel:{}", c.channel),
                "channel.command",
                Value::Null,
                json!({"command": c.command.as_str(), "order_id": c.order_id,
                       "outcome": match outcome { CommandOutcome::Done => "done", CommandOutcome::AlreadyDone => "already_done" }}),
                json!({"action_id": c.action_id, "approved_by": c.approved_by}),
            )],
            puts: vec![Put {
                entity: Entity::ChannelSync(sync),
                expect: Expect::from_loaded(sync_v.as_ref()),
            }],
            applied: vec![marker],
            ..Transaction::default()
        };
        match self.store.commit(tx).await {
            Ok(()) | Err(tally_core::Error::AlreadyApplied(_)) => {}
            Err(e) => return Err(AppError::from(e).into()),
        }
        self.metrics.inc(
            "tally_channel_pushes_total",
            &[("channel", c.channel.as_str()), ("outcome", "command")],
        );
        Ok(())
    }

    /// A command no client can carry out: audited, and an alert asks a
    /// person to do it at the channel.
    async fn command_not_sent(&self, c: &ChannelCommand, why: &str) -> Settle {
        let alert = Alert {
            id: format!("command-manual-{}", c.action_id),
            kind: "channel_command_manual".into(),
            subject: format!("channel:{}", c.channel),
            message: format!(
                "{} for order {} was approved but must be done at {} by hand: {why}",
                c.command.as_str(),
                c.order_id,
                c.channel
            ),
            raised_at: self.now(),
            details: json!({"action_id": c.action_id, "order_id": c.order_id, "command": c.command.as_str()}),
        };
        match self.raise_alert(alert).await {
            Ok(()) => Settle::Done,
            Err(e) => {
                tracing::warn!(error = %e, "could not record an alert; retrying");
                Settle::RetryAfter(self.channels.backoff(1))
            }
        }
    }

    /// Counts a failed attempt; on the last one, gives up loudly.
    async fn push_failed(&self, channel: &Channel, f: Failed, attempt: u32) -> Settle {
        let now = self.now();
        let last = attempt >= MAX_PUSH_ATTEMPTS;
        tracing::warn!(%channel, attempt, error = %f.error, "push failed");
        self.metrics.inc(
            "tally_channel_pushes_total",
            &[
                ("channel", channel.as_str()),
                ("outcome", if last { "dead_lettered" } else { "failed" }),
            ],
        );
        let recorded = async {
            let (sync_v, mut sync) = self.channel_sync(channel).await?;
            sync.failed(now, f.error.clone());
            if last {
                sync.dead_lettered += 1;
            }
            let cause = Cause::system(format!("push-failed:{channel}:{}", uuid::Uuid::now_v7()), now);
            let tx = Transaction {
                audit: vec![cause.record(
                    0,
                    format!("channel:{channel}"),
                    if last { "channel.dead_lettered" } else { "channel.push_failed" },
                    Value::Null,
                    json!({"error": f.error, "attempt": attempt}),
                    Value::Null,
                )],
                puts: vec![Put {
                    entity: Entity::ChannelSync(sync),
                    expect: Expect::from_loaded(sync_v.as_ref()),
                }],
                ..Transaction::default()
            };
            self.store.commit(tx).await?;
            if last {
                self.raise_alert(Alert {
                    id: format!("push-failed-{channel}-{}", now.timestamp_millis()),
                    kind: "channel_push_failed".into(),
                    subject: format!("channel:{channel}"),
                    message: format!(
                        "pushing to {channel} failed {attempt} times ({}); the messages are in the dead-letter queue. Resync the channel once it is back.",
                        f.error
                    ),
                    raised_at: now,
                    details: json!({"error": f.error, "attempts": attempt}),
                })
                .await?;
            }
            Ok::<(), AppError>(())
        }
        .await;
        if let Err(e) = recorded {
            tracing::warn!(%channel, error = %e, "could not record the failed push");
        }
        if last {
            Settle::DeadLetter
        } else {
            Settle::RetryAfter(
                f.retry_after
                    .unwrap_or_else(|| self.channels.backoff(attempt)),
            )
        }
    }

    /// Stores an alert once (its id says what caused it).
    pub async fn raise_alert(&self, alert: Alert) -> Result<(), AppError> {
        let mut tx = Transaction::default();
        add_alert(&mut tx, alert);
        match self.store.commit(tx).await {
            // Already raised by an earlier attempt.
            Ok(()) | Err(tally_core::Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /v1/alerts`, newest first.
    pub async fn alerts(&self) -> Result<Value, AppError> {
        let mut items: Vec<Alert> = self
            .store
            .list(Kind::Alert)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_alert())
            .collect();
        items.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
        Ok(json!({"items": items}))
    }

    /// `GET /v1/channels`: every channel of a configured source, with what
    /// it does not show yet (`pending`).
    pub async fn channels_view(&self) -> Result<Value, AppError> {
        let push = self.push_channels().await?;
        let all: BTreeSet<Channel> = self.channels().await?;
        let products: Vec<Product> = self
            .store
            .list(Kind::Product)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_product())
            .collect();
        let mut items = Vec::new();
        for channel in all {
            let (_, sync) = self.channel_sync(&channel).await?;
            let skus: Vec<Sku> = products
                .iter()
                .filter(|p| p.channel_refs.contains_key(&channel))
                .map(|p| p.sku.clone())
                .collect();
            let pending = if push.contains_key(&channel) {
                self.push_state(&channel, &skus)
                    .await?
                    .iter()
                    .filter(|s| {
                        let shown = s.pushed.as_ref().map(|p| &p.value);
                        shown.and_then(|p| p.available) != Some(s.available)
                            || (s.price.is_some() && shown.and_then(|p| p.price) != s.price)
                    })
                    .count()
            } else {
                0
            };
            items.push(json!({
                "channel": channel,
                "push": if push.contains_key(&channel) { "enabled" } else { "receive_only" },
                "last_push_at": sync.last_push_at,
                "last_attempt_at": sync.last_attempt_at,
                "pending": pending,
                "failures": sync.failures,
                "failures_total": sync.failures_total,
                "dead_lettered": sync.dead_lettered,
                "last_error": sync.last_error,
                "lag_ms": sync.lag_ms,
                "pushes": sync.pushes,
                "skus": skus.len(),
            }));
        }
        Ok(json!({"items": items}))
    }

    /// `POST /v1/channels/{channel}/resync`: queue a full push.
    pub async fn resync(&self, channel: &str, body: &Value) -> Result<Value, AppError> {
        let channel = Channel::parse(channel).map_err(AppError::BadRequest)?;
        if !self.channels().await?.contains(&channel) {
            return Err(AppError::NotFound(format!("channel {channel}")));
        }
        if !self.push_channels().await?.contains_key(&channel) {
            return Err(AppError::Conflict(format!(
                "channel {channel} is receive-only: its source has no push credentials"
            )));
        }
        let (actor, _) = crate::quarantine::actor_and_note(body);
        let m = Outbound::Resync {
            channel: channel.clone(),
            requested_at: self.now(),
            actor,
        };
        self.queue
            .send(
                queues::OUTBOUND,
                vec![Message {
                    body: serde_json::to_string(&m)
                        .map_err(|e| AppError::Internal(e.to_string()))?,
                    group: Some(channel.to_string()),
                    dedup_id: None,
                }],
            )
            .await?;
        Ok(json!({"channel": channel, "resync": "queued"}))
    }
}

/// Adds an alert and its `alert.raised` audit record to a commit.
pub fn add_alert(tx: &mut Transaction, alert: Alert) {
    let cause = Cause::system(format!("alert:{}", alert.id), alert.raised_at);
    tx.audit.push(cause.record(
        tx.audit.len(),
        alert.subject.clone(),
        "alert.raised",
        Value::Null,
        json!({"alert": alert.id, "kind": alert.kind, "message": alert.message}),
        alert.details.clone(),
    ));
    tx.puts.push(Put {
        entity: Entity::Alert(alert),
        expect: Expect::Absent,
    });
}

struct SkuState {
    product: Product,
    available: u32,
    price: Option<Decimal>,
    pushed: Option<Versioned<PushedRecord>>,
}
