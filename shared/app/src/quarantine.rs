//! Quarantine from the operator's side: list what was kept and why, replay
//! it through the current aliases and validation once the cause is fixed,
//! or discard it on purpose. Replays and discards are audited with the
//! person who did them.

use serde_json::{Value, json};
use tally_core::Reasons;
use tally_core::audit::Cause;
use tally_core::entity::{Key, Kind};
use tally_core::inbound::Delivery;
use tally_core::ports::{Delete, Transaction};
use tally_core::quarantine::QuarantineEntry;

use crate::{AppError, Tally};

/// Who asked, from an optional `{"actor": "...", "note": "..."}` body.
pub fn actor_and_note(body: &Value) -> (String, Option<String>) {
    let actor = body
        .get("actor")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty())
        .unwrap_or(crate::admin::ADMIN_ACTOR)
        .to_owned();
    let note = body.get("note").and_then(Value::as_str).map(str::to_owned);
    (actor, note)
}

fn view(q: &QuarantineEntry) -> Value {
    json!({"id": q.id, "source": q.source, "platform": q.platform, "received_at": q.received_at,
           "reasons": q.reasons, "payload": q.payload, "headers": q.headers})
}

impl Tally {
    pub async fn quarantine_list(&self) -> Result<Value, AppError> {
        let mut items: Vec<QuarantineEntry> = self
            .store
            .list(Kind::Quarantine)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_quarantine())
            .collect();
        items.sort_by_key(|q| std::cmp::Reverse(q.received_at));
        Ok(json!({"items": items.iter().map(view).collect::<Vec<_>>()}))
    }

    async fn quarantined(&self, id: &str) -> Result<(u64, QuarantineEntry), AppError> {
        let found = self
            .store
            .get(&[Key::quarantine(id)])
            .await?
            .pop()
            .flatten();
        found
            .and_then(|v| v.value.into_quarantine().map(|q| (v.version, q)))
            .ok_or_else(|| AppError::NotFound(format!("quarantine entry {id:?}")))
    }

    /// Runs a quarantined payload through today's aliases and validation.
    /// Still invalid: 422 with every reason, and the entry stays. Valid: each
    /// event is applied (once, by its idempotency key) and the entry leaves
    /// quarantine.
    pub async fn replay_quarantined(&self, id: &str, body: &Value) -> Result<Value, AppError> {
        let (actor, note) = actor_and_note(body);
        let (version, entry) = self.quarantined(id).await?;
        let delivery = Delivery {
            id: format!("replay:{id}"),
            source: entry.source.clone(),
            platform: entry.platform,
            received_at: entry.received_at,
            headers: entry.headers.clone(),
            body: entry.payload.clone(),
        };
        let Some(source) = self.source(&entry.source).await? else {
            let mut r = Reasons::new();
            r.push(
                "source",
                format!("{} is no longer configured", entry.source),
            );
            return Err(AppError::Invalid(r));
        };
        let mut events = vec![];
        let mut reasons = Reasons::new();
        for t in self.translate(&delivery, &source).await? {
            match t.result {
                Ok(e) => {
                    let r = self.check(&e).await?;
                    if r.is_empty() {
                        events.push(e);
                    } else {
                        reasons.0.extend(r.0);
                    }
                }
                Err(r) => reasons.0.extend(r.0),
            }
        }
        if !reasons.is_empty() {
            return Err(AppError::Invalid(reasons));
        }
        let mut outcomes = vec![];
        for e in &events {
            outcomes.push(format!("{}: {:?}", e.id, self.route(&source, e).await?));
        }
        let cause = Cause {
            key: format!("replay:{id}"),
            actor,
            at: self.now(),
        };
        let audit = cause.record(
            0,
            format!("quarantine:{id}"),
            "quarantine.replayed",
            view(&entry),
            Value::Null,
            json!({"note": note, "events": events.iter().map(|e| e.id.clone()).collect::<Vec<_>>()}),
        );
        self.remove_quarantined(id, version, audit).await?;
        Ok(json!({"replayed": id, "outcomes": outcomes}))
    }

    /// Discards a quarantined record on purpose; the audit log keeps it.
    pub async fn discard_quarantined(&self, id: &str, body: &Value) -> Result<Value, AppError> {
        let (actor, note) = actor_and_note(body);
        let (version, entry) = self.quarantined(id).await?;
        let cause = Cause {
            key: format!("discard:{id}:{}", uuid::Uuid::now_v7()),
            actor,
            at: self.now(),
        };
        let audit = cause.record(
            0,
            format!("quarantine:{id}"),
            "quarantine.discarded",
            view(&entry),
            Value::Null,
            json!({"note": note}),
        );
        self.remove_quarantined(id, version, audit).await?;
        Ok(json!({"discarded": id}))
    }

    async fn remove_quarantined(
        &self,
        id: &str,
        version: u64,
        audit: tally_core::audit::AuditRecord,
    ) -> Result<(), AppError> {
        let tx = Transaction {
            deletes: vec![Delete {
                key: Key::quarantine(id),
                version,
            }],
            audit: vec![audit],
            ..Default::default()
        };
        match self.store.commit(tx).await {
            Ok(()) => Ok(()),
            Err(tally_core::Error::Conflict(_)) => Err(AppError::Conflict(format!(
                "quarantine entry {id} was replayed or discarded meanwhile"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
