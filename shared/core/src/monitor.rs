//! Anomaly detection over the audit log: catch what automation or a feed is
//! doing wrong before it compounds across channels.
//!
//! Pure, like every decision here: [`observe`] folds audit records into the
//! [`MonitorState`] and returns the alerts they raise; [`sweep`] looks at
//! what has *not* happened (a source gone silent, drift that persists).
//! Each alert's id is derived from its cause, so a redelivered record or a
//! repeated sweep raises it once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditRecord;
use crate::push::Alert;

/// The thresholds; every one can be set from the environment (see
/// `tally serve --help` and template.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorPolicy {
    /// Price changes of one SKU in a row that the step limit bound.
    pub step_run: u32,
    /// A stock figure at a location falling by more than this share (%) in
    /// one event...
    pub stock_drop_pct: Decimal,
    /// ...from at least this many units (a count of 3 going to 0 is normal).
    pub stock_drop_min_units: u64,
    /// A channel showing another figure than the ledger for longer than this.
    pub drift_after: Duration,
    /// A source is silent when nothing came from it for this many times its
    /// usual gap...
    pub silence_factor: i32,
    /// ...and for at least this long.
    pub silence_min: Duration,
    /// Quarantined records within `quarantine_window` that make a burst.
    pub quarantine_burst: usize,
    pub quarantine_window: Duration,
}

impl Default for MonitorPolicy {
    fn default() -> Self {
        Self {
            step_run: 5,
            stock_drop_pct: Decimal::from(50),
            stock_drop_min_units: 10,
            drift_after: Duration::minutes(30),
            silence_factor: 10,
            silence_min: Duration::hours(1),
            quarantine_burst: 10,
            quarantine_window: Duration::minutes(5),
        }
    }
}

/// What the monitor remembers between records (one record, `monitor:state`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    /// Per SKU: price changes in a row that `max_step` bound.
    #[serde(default)]
    pub step_runs: BTreeMap<String, u32>,
    /// Times of recent quarantines, oldest first, within the window.
    #[serde(default)]
    pub quarantined: VecDeque<DateTime<Utc>>,
    /// While a burst lasts, it is not raised again.
    #[serde(default)]
    pub in_burst: bool,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceActivity>,
    /// Drift episodes already raised: `channel/sku@since`.
    #[serde(default)]
    pub drift_raised: BTreeSet<String>,
    /// Locally: the position in the audit log observed up to, so a record
    /// is observed once even if the follower's cursor lags behind.
    #[serde(default)]
    pub audit_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceActivity {
    pub last_seen: DateTime<Utc>,
    /// Events seen (a source needs a few before it has a "usual").
    pub seen: u64,
    /// Moving average of the gap between its events, in seconds.
    pub mean_gap_s: f64,
    /// `last_seen` of the silence already raised.
    #[serde(default)]
    pub silence_raised: Option<DateTime<Utc>>,
}

/// One channel figure that differs from the ledger (`GET /v1/drift`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSeen {
    pub channel: String,
    pub sku: String,
    pub since: DateTime<Utc>,
    pub channel_figure: i64,
    pub ledger_figure: i64,
}

/// Folds one audit record into the state. `sources` are the configured
/// source names: an event's cause is `<source>:<event id>`.
pub fn observe(
    state: &mut MonitorState,
    r: &AuditRecord,
    sources: &BTreeSet<String>,
    policy: &MonitorPolicy,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let Some((source, _)) = r.cause.split_once(':')
        && sources.contains(source)
        && (r.kind.starts_with("stock.")
            || r.kind.starts_with("order.")
            || r.kind.starts_with("quarantine.created")
            || r.kind.starts_with("price.competitor")
            || r.kind.starts_with("product.cost"))
    {
        seen_from(state, source, r.at);
    }
    match r.kind.as_str() {
        "price.changed" => {
            let sku = r.entity.trim_start_matches("price:").to_owned();
            let bound_by_step = r.inputs["reasons"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|x| x == "max_step"));
            if !bound_by_step {
                state.step_runs.remove(&sku);
            } else {
                let run = state.step_runs.entry(sku.clone()).or_default();
                *run += 1;
                if *run == policy.step_run {
                    alerts.push(Alert {
                        id: format!("price_step_run-{sku}-{}", r.id),
                        kind: "price_step_run".into(),
                        subject: format!("sku:{sku}"),
                        message: format!(
                            "{sku}: {run} price changes in a row each moved as far as the step limit allows (now {} from {}). A signal may be running away; check the competitor feed and the policy.",
                            r.after["price"], r.before["price"]
                        ),
                        raised_at: r.at,
                        details: json!({"sku": sku, "run": *run, "audit_id": r.id}),
                    });
                }
            }
        }
        "price.reverted" => {
            state
                .step_runs
                .remove(r.entity.trim_start_matches("price:"));
        }
        "stock.counted" | "stock.adjusted" => {
            let (before, after) = (on_hand(&r.before), on_hand(&r.after));
            if let (Some(b), Some(a)) = (before, after)
                && b >= policy.stock_drop_min_units
                && a < b
                && Decimal::from(b - a) * Decimal::ONE_HUNDRED
                    > policy.stock_drop_pct * Decimal::from(b)
            {
                let what = r.entity.trim_start_matches("stock:");
                alerts.push(Alert {
                    id: format!("stock_drop-{}", r.id),
                    kind: "stock_drop".into(),
                    subject: format!("stock:{what}"),
                    message: format!(
                        "{what}: on hand fell from {b} to {a} in one event ({}). Check the count before the channels sell from it.",
                        r.cause
                    ),
                    raised_at: r.at,
                    details: json!({"entity": r.entity, "from": b, "to": a, "cause": r.cause, "audit_id": r.id}),
                });
            }
        }
        "quarantine.created" => {
            state.quarantined.push_back(r.at);
            while state
                .quarantined
                .front()
                .is_some_and(|t| *t < r.at - policy.quarantine_window)
            {
                state.quarantined.pop_front();
            }
            if state.quarantined.len() >= policy.quarantine_burst {
                if !state.in_burst {
                    state.in_burst = true;
                    let n = state.quarantined.len();
                    alerts.push(Alert {
                        id: format!("quarantine_burst-{}", r.id),
                        kind: "quarantine_burst".into(),
                        subject: "quarantine".into(),
                        message: format!(
                            "{n} records quarantined within {} minutes; a source may have changed its format or its mapping. See the quarantine.",
                            policy.quarantine_window.num_minutes()
                        ),
                        raised_at: r.at,
                        details: json!({"count": n, "source": r.after["source"], "audit_id": r.id}),
                    });
                }
            } else if state.quarantined.len() * 2 <= policy.quarantine_burst {
                // The burst is over once the rate has halved.
                state.in_burst = false;
            }
        }
        _ => {}
    }
    alerts
}

/// Looks at what has not happened by `now`: sources gone silent, channels
/// drifting for too long. `drift` is what `GET /v1/drift` lists now.
pub fn sweep(
    state: &mut MonitorState,
    now: DateTime<Utc>,
    drift: &[DriftSeen],
    policy: &MonitorPolicy,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for (name, s) in &mut state.sources {
        if s.seen < 3 || s.silence_raised == Some(s.last_seen) {
            continue;
        }
        let usual = Duration::milliseconds((s.mean_gap_s * 1000.0) as i64);
        let limit = (usual * policy.silence_factor).max(policy.silence_min);
        if now - s.last_seen > limit {
            s.silence_raised = Some(s.last_seen);
            alerts.push(Alert {
                id: format!("source_silent-{name}-{}", s.last_seen.timestamp_millis()),
                kind: "source_silent".into(),
                subject: format!("source:{name}"),
                message: format!(
                    "{name} has sent nothing since {} (usually every {}s). Its webhooks or feed may have stopped; stock from it is getting stale.",
                    s.last_seen.to_rfc3339(),
                    s.mean_gap_s.round()
                ),
                raised_at: now,
                details: json!({"source": name, "last_seen": s.last_seen, "usual_gap_s": s.mean_gap_s.round()}),
            });
        }
    }
    let current: BTreeSet<String> = drift
        .iter()
        .map(|d| format!("{}/{}@{}", d.channel, d.sku, d.since.timestamp_millis()))
        .collect();
    // Forget episodes that ended, so the memory stays small.
    state.drift_raised.retain(|k| current.contains(k));
    for d in drift {
        let key = format!("{}/{}@{}", d.channel, d.sku, d.since.timestamp_millis());
        if now - d.since > policy.drift_after && !state.drift_raised.contains(&key) {
            state.drift_raised.insert(key.clone());
            alerts.push(Alert {
                id: format!("channel_drift-{}", key.replace(['/', '@'], "-")),
                kind: "channel_drift".into(),
                subject: format!("channel:{}", d.channel),
                message: format!(
                    "{} shows {} for {} while the ledger says {}, since {}. Resync the channel or check its stock settings.",
                    d.channel,
                    d.channel_figure,
                    d.sku,
                    d.ledger_figure,
                    d.since.to_rfc3339()
                ),
                raised_at: now,
                details: json!({"channel": d.channel, "sku": d.sku, "since": d.since,
                    "channel_figure": d.channel_figure, "ledger_figure": d.ledger_figure}),
            });
        }
    }
    alerts
}

fn seen_from(state: &mut MonitorState, source: &str, at: DateTime<Utc>) {
    match state.sources.get_mut(source) {
        Some(s) if at > s.last_seen => {
            let gap = (at - s.last_seen).num_milliseconds() as f64 / 1000.0;
            // The first gap sets the average; later ones move it a fifth.
            s.mean_gap_s = if s.seen < 2 {
                gap
            } else {
                s.mean_gap_s * 0.8 + gap * 0.2
            };
            s.seen += 1;
            s.last_seen = at;
        }
        Some(_) => {}
        None => {
            state.sources.insert(
                source.to_owned(),
                SourceActivity {
                    last_seen: at,
                    seen: 1,
                    mean_gap_s: 0.0,
                    silence_raised: None,
                },
            );
        }
    }
}

fn on_hand(v: &Value) -> Option<u64> {
    v.get("on_hand").and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Cause;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_000_000 + s, 0).unwrap()
    }

    fn rec(
        at: i64,
        cause: &str,
        entity: &str,
        kind: &str,
        before: Value,
        after: Value,
        inputs: Value,
    ) -> AuditRecord {
        Cause::system(cause, t(at)).record(0, entity.into(), kind, before, after, inputs)
    }

    fn sources() -> BTreeSet<String> {
        ["erp".to_owned()].into()
    }

    fn price_change(at: i64, reasons: &[&str]) -> AuditRecord {
        rec(
            at,
            &format!("comp:{at}"),
            "price:A",
            "price.changed",
            json!({"price": "10.00"}),
            json!({"price": "9.50"}),
            json!({"reasons": reasons}),
        )
    }

    #[test]
    fn a_run_of_step_bound_moves_raises_one_alert() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        let mut alerts = vec![];
        for i in 0..8 {
            alerts.extend(observe(
                &mut s,
                &price_change(i, &["competitor", "max_step"]),
                &sources(),
                &p,
            ));
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, "price_step_run");
        assert_eq!(alerts[0].subject, "sku:A");
    }

    #[test]
    fn a_move_the_step_did_not_bind_breaks_the_run() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        let mut alerts = vec![];
        for i in 0..8 {
            let reasons: &[&str] = if i == 3 {
                &["competitor"]
            } else {
                &["max_step"]
            };
            alerts.extend(observe(&mut s, &price_change(i, reasons), &sources(), &p));
        }
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    fn count(at: i64, from: u64, to: u64) -> AuditRecord {
        rec(
            at,
            &format!("erp:c{at}"),
            "stock:A@WH",
            "stock.counted",
            json!({"on_hand": from}),
            json!({"on_hand": to}),
            json!({}),
        )
    }

    #[test]
    fn a_large_drop_in_one_event_raises_one_alert_and_small_ones_none() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        assert!(observe(&mut s, &count(0, 100, 60), &sources(), &p).is_empty());
        assert!(observe(&mut s, &count(1, 4, 0), &sources(), &p).is_empty());
        let a = observe(&mut s, &count(2, 100, 20), &sources(), &p);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, "stock_drop");
        assert_eq!(a[0].details["to"], 20);
    }

    #[test]
    fn a_quarantine_burst_is_raised_once_while_it_lasts() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        let q = |at: i64| {
            rec(
                at,
                &format!("delivery:{at}:0"),
                &format!("quarantine:{at}"),
                "quarantine.created",
                Value::Null,
                json!({"source": "shop"}),
                json!({}),
            )
        };
        let mut alerts = vec![];
        for i in 0..25 {
            alerts.extend(observe(&mut s, &q(i), &sources(), &p));
        }
        assert_eq!(alerts.len(), 1);
        // A few stragglers later are no burst.
        assert!(observe(&mut s, &q(3600), &sources(), &p).is_empty());
        assert!(!s.in_burst);
    }

    #[test]
    fn a_source_silent_for_much_longer_than_usual_is_raised_once() {
        let p = MonitorPolicy {
            silence_min: Duration::minutes(10),
            ..Default::default()
        };
        let mut s = MonitorState::default();
        for i in 0..10 {
            observe(&mut s, &count(i * 60, 5, 5), &sources(), &p);
        }
        let last = 9 * 60;
        assert!(
            sweep(&mut s, t(last + 300), &[], &p).is_empty(),
            "5 gaps is not silence yet"
        );
        let a = sweep(&mut s, t(last + 700), &[], &p);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].kind, "source_silent");
        assert!(
            sweep(&mut s, t(last + 900), &[], &p).is_empty(),
            "raised once"
        );
        // It speaks again, then falls silent again: a new episode.
        observe(&mut s, &count(last + 1000, 5, 5), &sources(), &p);
        assert_eq!(sweep(&mut s, t(last + 100_000), &[], &p).len(), 1);
    }

    #[test]
    fn events_from_unknown_causes_are_no_source_activity() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        observe(&mut s, &price_change(0, &[]), &sources(), &p);
        assert!(s.sources.is_empty());
    }

    #[test]
    fn drift_longer_than_allowed_is_raised_once_per_episode() {
        let (mut s, p) = (MonitorState::default(), MonitorPolicy::default());
        let d = DriftSeen {
            channel: "shop".into(),
            sku: "A".into(),
            since: t(0),
            channel_figure: 12,
            ledger_figure: 7,
        };
        assert!(sweep(&mut s, t(60), std::slice::from_ref(&d), &p).is_empty());
        assert_eq!(
            sweep(&mut s, t(3600), std::slice::from_ref(&d), &p).len(),
            1
        );
        assert!(sweep(&mut s, t(7200), std::slice::from_ref(&d), &p).is_empty());
        // Resolved, then a new episode.
        assert!(sweep(&mut s, t(7300), &[], &p).is_empty());
        let again = DriftSeen {
            since: t(8000),
            ..d
        };
        assert_eq!(sweep(&mut s, t(8000 + 3600), &[again], &p).len(), 1);
    }
}
