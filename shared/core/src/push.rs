//! Telling the channels: what goes on the outbound queue, what each channel
//! was last told, and its sync status.
//!
//! The outbound queue carries *that* something changed (a SKU's stock or
//! price for a channel, a command, a resync), not the figure itself: the
//! push step reads the current figure when it pushes. So a burst of changes
//! coalesces into one push of the latest value, and an older value can
//! never be pushed after a newer one.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::action::ActionKind;
use crate::types::{Channel, OrderId, Sku};

/// One message on the outbound queue (FIFO group: the channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Outbound {
    /// The SKU's available-to-sell may have changed; push the current one.
    #[serde(rename = "stock.changed")]
    StockChanged {
        channel: Channel,
        sku: Sku,
        /// When the ledger changed (for the lag to confirmation).
        changed_at: DateTime<Utc>,
    },
    /// The SKU's price changed; push the current one.
    #[serde(rename = "price.changed")]
    PriceChanged {
        channel: Channel,
        sku: Sku,
        changed_at: DateTime<Utc>,
        /// The audit record of the change.
        cause: String,
    },
    /// An approved (or auto-executed) order action for the channel.
    #[serde(rename = "command")]
    Command(ChannelCommand),
    /// Push every SKU's current figures to the channel again.
    #[serde(rename = "resync")]
    Resync {
        channel: Channel,
        requested_at: DateTime<Utc>,
        actor: String,
    },
}

impl Outbound {
    pub fn channel(&self) -> &Channel {
        match self {
            Outbound::StockChanged { channel, .. }
            | Outbound::PriceChanged { channel, .. }
            | Outbound::Resync { channel, .. } => channel,
            Outbound::Command(c) => &c.channel,
        }
    }
}

/// What the channel is asked to do with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    CancelOrder,
    RefundOrder,
    HoldOrder,
    ReleaseHold,
    UpdateAddress,
}

impl CommandKind {
    /// The channel command an executed action needs, if any: reroutes and
    /// backorders are Tally's own bookkeeping, contacting a customer is a
    /// person's job.
    pub fn for_action(kind: ActionKind) -> Option<CommandKind> {
        match kind {
            ActionKind::Cancel => Some(CommandKind::CancelOrder),
            ActionKind::Refund => Some(CommandKind::RefundOrder),
            ActionKind::Hold => Some(CommandKind::HoldOrder),
            ActionKind::ChangeAddress => Some(CommandKind::UpdateAddress),
            ActionKind::PartialShipment
            | ActionKind::Reroute
            | ActionKind::Backorder
            | ActionKind::ContactCustomer
            | ActionKind::PriceChange => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::CancelOrder => "cancel_order",
            CommandKind::RefundOrder => "refund_order",
            CommandKind::HoldOrder => "hold_order",
            CommandKind::ReleaseHold => "release_hold",
            CommandKind::UpdateAddress => "update_address",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelCommand {
    pub command: CommandKind,
    pub action_id: String,
    /// Sent to the platform where it takes one, and checked before a retry:
    /// a command is carried out once however often it is delivered.
    pub idempotency_key: String,
    pub order_id: OrderId,
    pub channel: Channel,
    /// What the action proposed (`amount`/`refund` for refunds, `address`).
    #[serde(default)]
    pub proposal: Value,
    pub approved_by: String,
}

impl ChannelCommand {
    /// The amount to refund, when the proposal names one.
    pub fn amount(&self) -> Option<Decimal> {
        ["amount", "refund"].iter().find_map(|k| {
            let v = self.proposal.get(*k)?;
            serde_json::from_value::<Decimal>(v.clone()).ok()
        })
    }
}

/// What one channel last confirmed for one SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedRecord {
    pub channel: Channel,
    pub sku: Sku,
    #[serde(default)]
    pub available: Option<u32>,
    #[serde(default)]
    pub price: Option<Decimal>,
    pub confirmed_at: DateTime<Utc>,
}

/// A channel's sync status, as `GET /v1/channels` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSync {
    pub channel: Channel,
    #[serde(default)]
    pub last_push_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Failed attempts since the channel last confirmed a push.
    #[serde(default)]
    pub failures: u32,
    /// Failed attempts ever.
    #[serde(default)]
    pub failures_total: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// From the ledger change to the channel's confirmation, last push.
    #[serde(default)]
    pub lag_ms: Option<i64>,
    #[serde(default)]
    pub pushes: u64,
    /// Messages given up on (in the dead-letter queue).
    #[serde(default)]
    pub dead_lettered: u64,
}

impl ChannelSync {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            last_push_at: None,
            last_attempt_at: None,
            failures: 0,
            failures_total: 0,
            last_error: None,
            lag_ms: None,
            pushes: 0,
            dead_lettered: 0,
        }
    }

    pub fn confirmed(&mut self, at: DateTime<Utc>, lag_ms: Option<i64>) {
        self.last_push_at = Some(at);
        self.last_attempt_at = Some(at);
        self.failures = 0;
        self.last_error = None;
        self.pushes += 1;
        if lag_ms.is_some() {
            self.lag_ms = lag_ms;
        }
    }

    pub fn failed(&mut self, at: DateTime<Utc>, error: String) {
        self.last_attempt_at = Some(at);
        self.failures += 1;
        self.failures_total += 1;
        self.last_error = Some(error);
    }
}

/// An anomaly or failure a person should look at (`GET /v1/alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic for one cause, so a redelivered cause raises it once.
    pub id: String,
    /// `channel_push_failed`, `channel_command_manual`, ...
    pub kind: String,
    /// What it is about: `channel:shop`, `sku:TSHIRT-M`, `source:erp`.
    pub subject: String,
    pub message: String,
    pub raised_at: DateTime<Utc>,
    #[serde(default)]
    pub details: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outbound_messages_read_back_as_written() {
        let m = Outbound::StockChanged {
            channel: Channel::parse("shop").unwrap(),
            sku: Sku::parse("A").unwrap(),
            changed_at: "2026-12-03T10:00:00Z".parse().unwrap(),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""type":"stock.changed""#), "{text}");
        assert_eq!(serde_json::from_str::<Outbound>(&text).unwrap(), m);
        assert_eq!(m.channel().as_str(), "shop");
    }

    #[test]
    fn commands_use_the_channel_vocabulary() {
        assert_eq!(
            CommandKind::for_action(ActionKind::Cancel).map(CommandKind::as_str),
            Some("cancel_order")
        );
        assert_eq!(CommandKind::for_action(ActionKind::Reroute), None);
        let c: ChannelCommand = serde_json::from_value(json!({
            "command": "refund_order", "action_id": "a1", "idempotency_key": "a1",
            "order_id": "1001", "channel": "shop", "proposal": {"amount": "12.50"},
            "approved_by": "ops"}))
        .unwrap();
        assert_eq!(c.amount(), Some(Decimal::new(1250, 2)));
    }
}
