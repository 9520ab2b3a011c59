//! Actions: what automation proposes but a person decides (or, for the
//! reversible ones a policy allows, executes itself). A price move larger
//! than `approval_step_pct` is one; order handling adds its own kinds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::types::{OrderId, Sku};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    PriceChange,
    /// Reserve a short order at locations that can now serve it.
    Reroute,
    /// Keep a short order open until stock arrives.
    Backorder,
    /// Ship what is there, cancel and refund the rest.
    PartialShipment,
    /// Stop fulfilment (payment failed, risk); released by rejecting.
    Hold,
    Cancel,
    Refund,
    ChangeAddress,
    ContactCustomer,
}

impl ActionKind {
    /// What cannot be undone once the channel has done it.
    pub fn reversible(self) -> bool {
        !matches!(
            self,
            ActionKind::Cancel | ActionKind::Refund | ActionKind::PartialShipment
        )
    }
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Pending,
    Approved,
    Rejected,
    Executed,
    Expired,
}

impl ActionStatus {
    pub fn parse(raw: &str) -> Option<ActionStatus> {
        serde_json::from_value(json!(raw)).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub kind: ActionKind,
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    pub reversible: bool,
    pub requires_approval: bool,
    /// Why, in words a person can check.
    pub rationale: String,
    /// What the recommendation was based on.
    pub evidence: Value,
    /// What approving it does (for a price: `from`, `to`, `currency`).
    pub proposal: Value,
    pub created_at: DateTime<Utc>,
    /// A pending action not decided by then expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Action {
    /// The status as of `now`: a pending action past `expires_at` is expired
    /// whether or not anyone has written that down yet.
    pub fn status_at(&self, now: DateTime<Utc>) -> ActionStatus {
        match self.expires_at {
            Some(t) if self.status == ActionStatus::Pending && now >= t => ActionStatus::Expired,
            _ => self.status,
        }
    }

    /// Ids derive from what caused the action, so a retried decision
    /// proposes the same action rather than a second one.
    pub fn id_for(cause: &str) -> String {
        format!(
            "act-{}",
            hex::encode(&Sha256::digest(cause.as_bytes())[..10])
        )
    }
}
