//! monitor: metrics from the audit log.
//!
//! - Trigger: the audit table's stream.
//! - Input: new audit records.
//! - Output: none (a record that cannot be read is logged, not retried:
//!   metrics must never hold up the stream).
//! - Side effects: one CloudWatch embedded-metric-format line per batch,
//!   counting audit records by kind (`stock.reserved`, `order.short`,
//!   `quarantine.created`, ...).

use std::collections::BTreeMap;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use serde_dynamo::AttributeValue;
use serde_json::{Value, json};

/// The EMF document for one batch's counts.
pub fn metrics(event: &StreamEvent, now_ms: i64) -> Option<Value> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in event.records.iter().filter(|r| r.event_name == "INSERT") {
        if let Some(AttributeValue::S(kind)) = r.change.new_image.get("kind") {
            *counts.entry(kind.clone()).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return None;
    }
    let mut doc = json!({"_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{
        "Namespace": "Tally",
        "Dimensions": [[]],
        "Metrics": counts.keys().map(|k| json!({"Name": k, "Unit": "Count"})).collect::<Vec<_>>(),
    }]}});
    for (k, v) in counts {
        doc[k] = json!(v);
    }
    Some(doc)
}

pub async fn handle(event: StreamEvent) {
    if let Some(doc) = metrics(&event, chrono::Utc::now().timestamp_millis()) {
        // EMF is read from stdout, one JSON document per line.
        println!("{doc}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_inserts_are_counted_by_kind_in_emf() {
        let e: StreamEvent = serde_json::from_str(include_str!(
            "../../../../tests/events/lambda/monitor-audit-insert.json"
        ))
        .unwrap();
        let doc = metrics(&e, 1).unwrap();
        assert_eq!(doc["stock.reserved"], 1);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Tally");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "stock.reserved"
        );
    }
}
