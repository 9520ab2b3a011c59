//! Counters and the lag distribution, as Prometheus text (`GET /metrics`).
//! The same names go out as CloudWatch EMF in Lambda.
//!
//! A handful of counters and one histogram do not need a metrics crate: a
//! mutex-guarded map is plenty at Tally's rates.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the lag buckets, in seconds.
const LAG_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Histogram {
    buckets: [u64; LAG_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), u64>,
    lag: BTreeMap<&'static str, Histogram>,
}

#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

/// What each counter means, for `# HELP`.
const HELP: &[(&str, &str)] = &[
    (
        "tally_events_accepted_total",
        "Events accepted (durably queued) by source",
    ),
    (
        "tally_events_quarantined_total",
        "Events quarantined by source",
    ),
    (
        "tally_events_applied_total",
        "Ledger events applied, by type",
    ),
    (
        "tally_events_duplicate_total",
        "Events seen again and applied no second time",
    ),
    (
        "tally_oversells_prevented_total",
        "Orders that would have oversold and reserved nothing",
    ),
    (
        "tally_price_decisions_total",
        "Price decisions by outcome and the rule that bound them",
    ),
    (
        "tally_channel_pushes_total",
        "Values and commands the channels confirmed, and pushes that failed or were given up on",
    ),
    (
        "tally_alerts_total",
        "Anomaly alerts raised by the monitor, by kind",
    ),
    (
        "tally_actions_total",
        "Order and price actions by kind and what became of them",
    ),
];

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], n: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.counters.entry((name, labels)).or_default() += n;
    }

    /// One lag observation: `from` is `receipt` (received → applied) or
    /// `event` (the platform's event time → applied).
    pub fn observe_lag(&self, from: &'static str, seconds: f64) {
        let seconds = seconds.max(0.0);
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let h = m.lag.entry(from).or_default();
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, labels), v) in m.counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {v}", render_labels(labels));
            }
        }
        let _ = writeln!(
            out,
            "# HELP tally_lag_seconds Time from receipt (or the event's own time) to applied\n# TYPE tally_lag_seconds histogram"
        );
        for (from, h) in &m.lag {
            for (bound, n) in LAG_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "tally_lag_seconds_bucket{{from=\"{from}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "tally_lag_seconds_bucket{{from=\"{from}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "tally_lag_seconds_sum{{from=\"{from}\"}} {}", h.sum);
            let _ = writeln!(
                out,
                "tally_lag_seconds_count{{from=\"{from}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_the_histogram_render_as_prometheus_text() {
        let m = Metrics::default();
        m.inc("tally_events_applied_total", &[("type", "stock.counted")]);
        m.add(
            "tally_events_applied_total",
            &[("type", "stock.counted")],
            2,
        );
        m.observe_lag("receipt", 0.003);
        m.observe_lag("receipt", 0.2);
        let text = m.render();
        assert!(
            text.contains("tally_events_applied_total{type=\"stock.counted\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("tally_lag_seconds_bucket{from=\"receipt\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tally_lag_seconds_bucket{from=\"receipt\",le=\"0.25\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tally_lag_seconds_count{from=\"receipt\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.inc("tally_events_accepted_total", &[("source", "a\"b")]);
        assert!(m.render().contains("source=\"a\\\"b\""));
    }
}
