//! monitor: metrics and anomaly alerts from the audit log.
//!
//! - Triggers: the audit table's stream, and a schedule (every 5 minutes)
//!   for what shows by its absence (a silent source, lasting drift).
//! - Input: new audit records, or the scheduled event.
//! - Output: on the stream, a batch item failure at the first record when
//!   the monitor could not commit (the batch is retried; it is marked by
//!   its first and last event ids, so a retried batch raises nothing twice).
//! - Side effects: one CloudWatch EMF line per batch (counts by audit kind);
//!   the monitor's state and any alerts it raises (in the state table);
//!   each `alert.raised` record, whoever raised it, published to the
//!   `ALERT_TOPIC_ARN` SNS topic.

use std::collections::BTreeMap;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::AttributeValue;
use serde_json::{Value, json};
use tally_app::Tally;
use tally_core::audit::AuditRecord;

/// Where alerts go in AWS: an SNS topic (e-mail, chat, paging).
pub struct AlertTopic {
    pub client: aws_sdk_sns::Client,
    pub arn: String,
}

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

/// The audit records of a stream batch (inserts only; TTL expiries are
/// removals and say nothing new).
pub fn audit_records(event: &StreamEvent) -> Vec<AuditRecord> {
    event
        .records
        .iter()
        .filter(|r| r.event_name == "INSERT")
        .filter_map(|r| match r.change.new_image.get("doc") {
            Some(AttributeValue::S(doc)) => match serde_json::from_str(doc) {
                Ok(rec) => Some(rec),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable audit record; skipped");
                    None
                }
            },
            _ => None,
        })
        .collect()
}

pub async fn handle(
    tally: &Tally,
    topic: Option<&AlertTopic>,
    event: Value,
) -> Result<Value, lambda_runtime::Error> {
    if event.get("Records").is_none() {
        // The schedule: look for what has not happened.
        let raised = tally.monitor_sweep().await?;
        return Ok(json!({"raised": raised.len()}));
    }
    let stream: StreamEvent = serde_json::from_value(event)?;
    if let Some(doc) = metrics(&stream, chrono::Utc::now().timestamp_millis()) {
        // EMF is read from stdout, one JSON document per line.
        println!("{doc}");
    }
    let records = audit_records(&stream);
    let mut resp = DynamoDbEventResponse::default();
    let marker = match (stream.records.first(), stream.records.last()) {
        (Some(a), Some(b)) => format!("{}..{}", a.event_id, b.event_id),
        _ => return Ok(serde_json::to_value(resp)?),
    };
    let positioned: Vec<(u64, AuditRecord)> = records.iter().cloned().map(|r| (0, r)).collect();
    if let Err(e) = tally.monitor_records(&positioned, Some(marker)).await {
        tracing::warn!(error = %e, "monitor failed; the batch is retried");
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = stream.records[0].change.sequence_number.clone();
        resp.batch_item_failures.push(f);
        return Ok(serde_json::to_value(resp)?);
    }
    if let Some(topic) = topic {
        for r in records.iter().filter(|r| r.kind == "alert.raised") {
            publish(topic, r).await;
        }
    }
    Ok(serde_json::to_value(resp)?)
}

/// One alert to the topic. A failure is logged, not retried: the alert is
/// stored and listed either way, and the stream must not stall on it.
async fn publish(topic: &AlertTopic, r: &AuditRecord) {
    let kind = r.after["kind"].as_str().unwrap_or("alert");
    let message = json!({
        "alert": r.after["alert"], "kind": kind, "subject": r.entity,
        "message": r.after["message"], "details": r.inputs, "raised_at": r.at,
    });
    let subject: String = format!("Tally: {kind} on {}", r.entity)
        .chars()
        .take(100)
        .collect();
    if let Err(e) = topic
        .client
        .publish()
        .topic_arn(&topic.arn)
        .subject(subject)
        .message(message.to_string())
        .send()
        .await
    {
        tracing::warn!(error = %aws_sdk_sns::error::DisplayErrorContext(&e), "publishing an alert failed");
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
        let recs = audit_records(&e);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].cause, "erp:o-1");
    }
}
