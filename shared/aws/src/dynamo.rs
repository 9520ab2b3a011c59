//! `Store` on DynamoDB: the persistence primitive as one TransactWriteItems.
//!
//! Two tables:
//! - state (`pk`): records (`kind`, `version`, `doc` = the record as JSON,
//!   decimals as strings so nothing is rounded), idempotency markers
//!   (`applied:<source>:<event id>`, expiring by TTL), and outbox items
//!   (`outbox:<uuid>`) that the publish function relays to SQS. GSI
//!   `by-kind` (`kind`, `pk`) lists one kind. Stream: NEW_AND_OLD_IMAGES.
//! - audit (`entity`, `sk` = time#position#id): newest first per entity by
//!   querying backwards; GSI `by-id` finds one record. Stream feeds monitor.
//!
//! A transaction holds at most 100 items (DynamoDB's limit): puts, deletes,
//! audit records, the markers and the outbox together.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};
use tally_core::audit::AuditRecord;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::ports::{Expect, OutboxMessage, Store, Transaction};

use crate::error::Error;

/// How long an idempotency marker is kept: far longer than any platform
/// retries (Shopify: 4 hours) or any queue keeps a message (SQS: 14 days).
pub const MARKER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// DynamoDB's limit on items in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    state_table: String,
    audit_table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn attr_u64(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn decode_record(item: &Item) -> Result<Versioned<Entity>, Error> {
    let key = attr_s(item, "pk").unwrap_or("?").to_owned();
    let bad = |detail: String| Error::Decode {
        key: key.clone(),
        detail,
    };
    let version = attr_u64(item, "version").ok_or_else(|| bad("no version".into()))?;
    let doc = attr_s(item, "doc").ok_or_else(|| bad("no doc".into()))?;
    let value = serde_json::from_str(doc).map_err(|e| bad(e.to_string()))?;
    Ok(Versioned { version, value })
}

fn decode_audit(item: &Item) -> Result<AuditRecord, Error> {
    let doc = attr_s(item, "doc").unwrap_or("");
    serde_json::from_str(doc).map_err(|e| Error::Decode {
        key: format!("audit:{}", attr_s(item, "id").unwrap_or("?")),
        detail: e.to_string(),
    })
}

/// The partition of the `by-day` index: the activity feed reads today's
/// records first, then the days before.
fn audit_day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// How many days back the activity feed looks for records.
const FEED_DAYS: i64 = 31;

/// The audit sort key: time, then position in its commit, so a query
/// backwards is newest first even within one commit.
fn audit_sort_key(at: DateTime<Utc>, position: usize, id: &str) -> String {
    format!(
        "{}#{position:04}#{id}",
        at.to_rfc3339_opts(SecondsFormat::Nanos, true)
    )
}

impl DynamoStore {
    pub fn new(
        client: Client,
        state_table: impl Into<String>,
        audit_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            state_table: state_table.into(),
            audit_table: audit_table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn state(&self) -> Result<&str, Error> {
        if self.state_table.is_empty() {
            return Err(Error::Config(
                "STATE_TABLE (this function is not given the state table)".into(),
            ));
        }
        Ok(&self.state_table)
    }

    fn audit(&self) -> Result<&str, Error> {
        if self.audit_table.is_empty() {
            return Err(Error::Config(
                "AUDIT_TABLE (this function is not given the audit table)".into(),
            ));
        }
        Ok(&self.audit_table)
    }

    /// The TransactWriteItems of `tx`, and the key each item concerns (to
    /// name it in a conflict). Public for the encoding benchmark.
    pub fn encode(&self, tx: &Transaction) -> Result<(Vec<TransactWriteItem>, Vec<String>), Error> {
        self.state()?;
        if !tx.audit.is_empty() {
            self.audit()?;
        }
        // Which key each item concerns, to name it in a conflict.
        let mut keys = vec![];
        let mut items = vec![];
        let now = Utc::now();
        let put = |item: Item,
                   condition: Option<(&str, Option<(String, AttributeValue)>)>,
                   table: &str| {
            let mut p = Put::builder().table_name(table).set_item(Some(item));
            if let Some((expr, value)) = condition {
                p = p.condition_expression(expr);
                if let Some((name, v)) = value {
                    p = p.expression_attribute_values(name, v);
                }
            }
            p.build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| Error::sdk("dynamodb", e))
        };
        // The markers go first: a cancellation on item i < markers means
        // "event i was applied already".
        for marker in &tx.applied {
            let expires = now.timestamp() + MARKER_TTL.as_secs() as i64;
            let item = HashMap::from([
                ("pk".to_owned(), s(format!("applied:{marker}"))),
                ("kind".to_owned(), s("applied")),
                ("expires_at".to_owned(), n(expires)),
            ]);
            items.push(put(
                item,
                Some(("attribute_not_exists(pk)", None)),
                &self.state_table,
            )?);
            keys.push(format!("applied:{marker}"));
        }
        for p in &tx.puts {
            let key = p.entity.key();
            let (version, condition) = match p.expect {
                Expect::Absent => (1, ("attribute_not_exists(pk)", None)),
                Expect::Version(v) => (v + 1, ("version = :v", Some((":v".to_owned(), n(v))))),
            };
            let item = HashMap::from([
                ("pk".to_owned(), s(key.as_str())),
                ("kind".to_owned(), s(p.entity.kind().as_str())),
                ("version".to_owned(), n(version)),
                ("doc".to_owned(), s(serde_json::to_string(&p.entity)?)),
            ]);
            items.push(put(item, Some(condition), &self.state_table)?);
            keys.push(key.to_string());
        }
        for d in &tx.deletes {
            let del = Delete::builder()
                .table_name(&self.state_table)
                .key("pk", s(d.key.as_str()))
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(d.version))
                .build()
                .map_err(|e| Error::sdk("dynamodb", e))?;
            items.push(TransactWriteItem::builder().delete(del).build());
            keys.push(d.key.to_string());
        }
        for (i, a) in tx.audit.iter().enumerate() {
            let item = HashMap::from([
                ("entity".to_owned(), s(&a.entity)),
                ("sk".to_owned(), s(audit_sort_key(a.at, i, &a.id))),
                ("id".to_owned(), s(&a.id)),
                ("kind".to_owned(), s(&a.kind)),
                ("day".to_owned(), s(audit_day(a.at))),
                ("doc".to_owned(), s(serde_json::to_string(a)?)),
            ]);
            items.push(put(
                item,
                Some(("attribute_not_exists(sk)", None)),
                &self.audit_table,
            )?);
            keys.push(format!("audit {}", a.id));
        }
        for OutboxMessage { queue, message } in &tx.outbox {
            let mut item = HashMap::from([
                (
                    "pk".to_owned(),
                    s(format!("outbox:{}", uuid::Uuid::now_v7())),
                ),
                ("kind".to_owned(), s("outbox")),
                ("queue".to_owned(), s(queue)),
                ("body".to_owned(), s(&message.body)),
                ("expires_at".to_owned(), n(now.timestamp() + 7 * 24 * 3600)),
            ]);
            if let Some(g) = &message.group {
                item.insert("group".into(), s(g));
            }
            if let Some(d) = &message.dedup_id {
                item.insert("dedup".into(), s(d));
            }
            items.push(put(item, None, &self.state_table)?);
            keys.push("outbox".into());
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            let mut r = tally_core::Reasons::new();
            r.push(
                "transaction",
                format!(
                    "{} items exceed DynamoDB's {MAX_TRANSACTION_ITEMS}",
                    items.len()
                ),
            );
            return Err(tally_core::Error::Invalid(r).into());
        }
        Ok((items, keys))
    }

    async fn query_all(
        &self,
        build: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, Error> {
        let mut out = vec![];
        let mut start: Option<Item> = None;
        loop {
            let resp = build()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Error::sdk("dynamodb query", e))?;
            out.extend(resp.items().iter().cloned());
            if limit.is_some_and(|l| out.len() >= l) {
                out.truncate(limit.unwrap_or(usize::MAX));
                return Ok(out);
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, keys: &[Key]) -> tally_core::Result<Vec<Option<Versioned<Entity>>>> {
        self.state()?;
        let mut found: HashMap<String, Versioned<Entity>> = HashMap::new();
        let mut unique: Vec<&str> = keys.iter().map(Key::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(
                        chunk
                            .iter()
                            .map(|k| HashMap::from([("pk".to_owned(), s(*k))]))
                            .collect(),
                    ))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::sdk("dynamodb", e))?,
            );
            let mut attempt = 0u32;
            while let Some(req) = request.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.state_table, req)
                    .send()
                    .await
                    .map_err(|e| Error::sdk("dynamodb batch_get_item", e))?;
                for item in resp
                    .responses()
                    .and_then(|r| r.get(&self.state_table))
                    .into_iter()
                    .flatten()
                {
                    let key = attr_s(item, "pk").unwrap_or_default().to_owned();
                    found.insert(key, decode_record(item)?);
                }
                // Throttled keys come back unprocessed: ask again, gently.
                if let Some(rest) = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.state_table))
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(10))))
                        .await;
                    request = Some(rest.clone());
                }
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_str()).cloned())
            .collect())
    }

    async fn list(&self, kind: Kind) -> tally_core::Result<Vec<Versioned<Entity>>> {
        self.state()?;
        let items = self
            .query_all(
                || {
                    self.client
                        .query()
                        .table_name(&self.state_table)
                        .index_name("by-kind")
                        .key_condition_expression("#k = :k")
                        .expression_attribute_names("#k", "kind")
                        .expression_attribute_values(":k", s(kind.as_str()))
                },
                None,
            )
            .await?;
        Ok(items.iter().map(decode_record).collect::<Result<_, _>>()?)
    }

    async fn commit(&self, tx: Transaction) -> tally_core::Result<()> {
        if tx.is_empty() {
            return Ok(());
        }
        let (items, keys) = self.encode(&tx)?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let reasons = c.cancellation_reasons();
                    let failed = reasons
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    Err(match failed {
                        Some(i) if i < tx.applied.len() => {
                            tally_core::Error::AlreadyApplied(tx.applied[i].clone())
                        }
                        Some(i) => {
                            tally_core::Error::Conflict(keys.get(i).cloned().unwrap_or_default())
                        }
                        // TransactionConflict, throttling inside the
                        // transaction: someone else was writing; retry.
                        None => tally_core::Error::Conflict(format!(
                            "transaction cancelled: {:?}",
                            reasons.iter().filter_map(|r| r.code()).collect::<Vec<_>>()
                        )),
                    })
                }
                other => Err(Error::sdk("dynamodb transact_write_items", other).into()),
            },
            Err(other) => Err(Error::sdk("dynamodb transact_write_items", other).into()),
        }
    }

    async fn was_applied(&self, key: &str) -> tally_core::Result<bool> {
        self.state()?;
        let resp = self
            .client
            .get_item()
            .table_name(&self.state_table)
            .key("pk", s(format!("applied:{key}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::sdk("dynamodb get_item", e))?;
        Ok(resp.item().is_some())
    }

    async fn audit_for(&self, entity: &str, limit: usize) -> tally_core::Result<Vec<AuditRecord>> {
        self.audit()?;
        let items = self
            .query_all(
                || {
                    self.client
                        .query()
                        .table_name(&self.audit_table)
                        .key_condition_expression("entity = :e")
                        .expression_attribute_values(":e", s(entity))
                        .scan_index_forward(false)
                        .limit(limit.clamp(1, 1000) as i32)
                },
                Some(limit),
            )
            .await?;
        Ok(items.iter().map(decode_audit).collect::<Result<_, _>>()?)
    }

    async fn recent_audit(&self, limit: usize) -> tally_core::Result<Vec<AuditRecord>> {
        self.audit()?;
        let limit = limit.clamp(1, 1000);
        let today = Utc::now();
        let mut out = Vec::new();
        for back in 0..FEED_DAYS {
            let day = audit_day(today - chrono::Duration::days(back));
            let items = self
                .query_all(
                    || {
                        self.client
                            .query()
                            .table_name(&self.audit_table)
                            .index_name("by-day")
                            .key_condition_expression("#d = :d")
                            .expression_attribute_names("#d", "day")
                            .expression_attribute_values(":d", s(&day))
                            .scan_index_forward(false)
                            .limit((limit - out.len()) as i32)
                    },
                    Some(limit - out.len()),
                )
                .await?;
            for item in &items {
                out.push(decode_audit(item)?);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn audit_record(&self, id: &str) -> tally_core::Result<Option<AuditRecord>> {
        self.audit()?;
        let items = self
            .query_all(
                || {
                    self.client
                        .query()
                        .table_name(&self.audit_table)
                        .index_name("by-id")
                        .key_condition_expression("id = :i")
                        .expression_attribute_values(":i", s(id))
                },
                Some(1),
            )
            .await?;
        Ok(items.first().map(decode_audit).transpose()?)
    }
}
