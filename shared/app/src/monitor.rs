//! The monitor step: anomaly alerts from the audit log
//! (`tally_core::monitor` decides; this loads, calls and commits).
//!
//! Locally it follows the audit table and sweeps every few seconds; in AWS
//! the monitor function runs it on the audit table's stream and on a
//! schedule. Either way the monitor's memory and the alerts it raises land
//! in one commit, marked with the batch it came from, so a redelivered
//! batch raises nothing twice.

use std::collections::BTreeSet;

use tally_core::audit::AuditRecord;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::monitor::{self, DriftSeen, MonitorPolicy, MonitorState};
use tally_core::ports::{Expect, Put, Transaction};
use tally_core::push::Alert;

use crate::{AppError, Tally};

/// Attempts at a commit that keeps meeting a concurrent monitor.
const ATTEMPTS: usize = 20;

impl Tally {
    /// Folds audit records into the monitor and raises what they show.
    /// Locally each record comes with its position in the audit log (a
    /// record at or before the state's position was observed already); in
    /// AWS the positions are 0 and `marker` names the stream batch, which
    /// is then observed once.
    pub async fn monitor_records(
        &self,
        records: &[(u64, AuditRecord)],
        marker: Option<String>,
    ) -> Result<Vec<Alert>, AppError> {
        if records.is_empty() {
            return Ok(vec![]);
        }
        let sources: BTreeSet<String> = self
            .store
            .list(Kind::Source)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_source())
            .map(|s| s.name.to_string())
            .collect();
        let policy = self.monitor.clone();
        self.monitor_commit(marker.map(|m| format!("monitor:{m}")), |state| {
            let mut alerts = vec![];
            for (seq, r) in records {
                if *seq != 0 && *seq <= state.audit_seq {
                    continue;
                }
                alerts.extend(monitor::observe(state, r, &sources, &policy));
                state.audit_seq = state.audit_seq.max(*seq);
            }
            alerts
        })
        .await
    }

    /// Raises what has not happened: sources gone silent, drift that lasts.
    pub async fn monitor_sweep(&self) -> Result<Vec<Alert>, AppError> {
        let drift = self.drift().await?;
        let seen: Vec<DriftSeen> = drift["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some(DriftSeen {
                    channel: d["channel"].as_str()?.to_owned(),
                    sku: d["sku"].as_str()?.to_owned(),
                    since: serde_json::from_value(d["since"].clone()).ok()?,
                    channel_figure: d["channel_figure"].as_i64()?,
                    ledger_figure: d["ledger_figure"].as_i64()?,
                })
            })
            .collect();
        let now = self.now();
        let policy = self.monitor.clone();
        self.monitor_commit(None, |state| monitor::sweep(state, now, &seen, &policy))
            .await
    }

    /// Loads the monitor's memory, lets `step` change it, and commits the
    /// memory with the alerts, retrying from a fresh read on conflict.
    async fn monitor_commit<F>(
        &self,
        marker: Option<String>,
        step: F,
    ) -> Result<Vec<Alert>, AppError>
    where
        F: Fn(&mut MonitorState) -> Vec<Alert>,
    {
        for _ in 0..ATTEMPTS {
            let loaded = self.store.get(&[Key::monitor()]).await?.pop().flatten();
            let (version, mut state) = match loaded {
                Some(Versioned { version, value }) => {
                    (Some(version), value.into_monitor().unwrap_or_default())
                }
                None => (None, MonitorState::default()),
            };
            let before = state.clone();
            let alerts = step(&mut state);
            if state == before && alerts.is_empty() && marker.is_none() {
                return Ok(vec![]);
            }
            // An alert raised before (by another monitor run) stays as it was.
            let keys: Vec<Key> = alerts.iter().map(|a| Key::alert(&a.id)).collect();
            let existing = self.store.get(&keys).await?;
            let fresh: Vec<Alert> = alerts
                .into_iter()
                .zip(existing)
                .filter(|(_, e)| e.is_none())
                .map(|(a, _)| a)
                .collect();
            let mut tx = Transaction {
                puts: vec![Put {
                    entity: Entity::Monitor(state),
                    expect: version.map_or(Expect::Absent, Expect::Version),
                }],
                applied: marker.clone().into_iter().collect(),
                ..Transaction::default()
            };
            for a in &fresh {
                crate::push::add_alert(&mut tx, a.clone());
            }
            match self.store.commit(tx).await {
                Ok(()) => {
                    for a in &fresh {
                        self.metrics
                            .inc("tally_alerts_total", &[("kind", a.kind.as_str())]);
                        tracing::warn!(alert = %a.id, kind = %a.kind, "{}", a.message);
                    }
                    return Ok(fresh);
                }
                Err(tally_core::Error::AlreadyApplied(_)) => return Ok(vec![]),
                Err(tally_core::Error::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(
            "the monitor's state kept changing; try again".into(),
        ))
    }
}

/// The thresholds, from the environment where set (`TALLY_ALERT_*`), else
/// the defaults of [`MonitorPolicy`].
pub fn policy_from_env() -> Result<MonitorPolicy, String> {
    policy_from(|k| std::env::var(k).ok())
}

pub fn policy_from(get: impl Fn(&str) -> Option<String>) -> Result<MonitorPolicy, String> {
    let mut p = MonitorPolicy::default();
    fn parse<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>, String> {
        v.map(|v| {
            v.parse()
                .map_err(|_| format!("{name} must be a number, not {v:?}"))
        })
        .transpose()
    }
    let secs = |s: i64| chrono::Duration::seconds(s);
    if let Some(v) = parse("TALLY_ALERT_STEP_RUN", get("TALLY_ALERT_STEP_RUN"))? {
        p.step_run = v;
    }
    if let Some(v) = parse(
        "TALLY_ALERT_STOCK_DROP_PCT",
        get("TALLY_ALERT_STOCK_DROP_PCT"),
    )? {
        p.stock_drop_pct = v;
    }
    if let Some(v) = parse(
        "TALLY_ALERT_STOCK_DROP_MIN",
        get("TALLY_ALERT_STOCK_DROP_MIN"),
    )? {
        p.stock_drop_min_units = v;
    }
    if let Some(v) = parse("TALLY_ALERT_DRIFT_S", get("TALLY_ALERT_DRIFT_S"))? {
        p.drift_after = secs(v);
    }
    if let Some(v) = parse(
        "TALLY_ALERT_SILENCE_FACTOR",
        get("TALLY_ALERT_SILENCE_FACTOR"),
    )? {
        p.silence_factor = v;
    }
    if let Some(v) = parse(
        "TALLY_ALERT_SILENCE_MIN_S",
        get("TALLY_ALERT_SILENCE_MIN_S"),
    )? {
        p.silence_min = secs(v);
    }
    if let Some(v) = parse(
        "TALLY_ALERT_QUARANTINE_BURST",
        get("TALLY_ALERT_QUARANTINE_BURST"),
    )? {
        p.quarantine_burst = v;
    }
    if let Some(v) = parse(
        "TALLY_ALERT_QUARANTINE_WINDOW_S",
        get("TALLY_ALERT_QUARANTINE_WINDOW_S"),
    )? {
        p.quarantine_window = secs(v);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_from_the_environment_and_bad_ones_are_named() {
        let p = policy_from(|k| (k == "TALLY_ALERT_DRIFT_S").then(|| "60".to_owned())).unwrap();
        assert_eq!(p.drift_after, chrono::Duration::seconds(60));
        assert_eq!(p.step_run, MonitorPolicy::default().step_run);
        let e =
            policy_from(|k| (k == "TALLY_ALERT_STEP_RUN").then(|| "many".to_owned())).unwrap_err();
        assert!(e.contains("TALLY_ALERT_STEP_RUN"), "{e}");
    }
}
