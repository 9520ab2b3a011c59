//! `Store` and `ChangeFeed` on SQLite: one SQLite transaction per commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use tally_core::audit::AuditRecord;
use tally_core::entity::{Entity, Key, Kind, Versioned};
use tally_core::ports::{Change, ChangeFeed, Expect, Store, Transaction};

use crate::db::Embedded;
use crate::error::Error;
use crate::queue::insert_message;

fn decode<T: serde::de::DeserializeOwned>(key: &str, doc: &str) -> Result<T, Error> {
    serde_json::from_str(doc).map_err(|source| Error::Decode {
        key: key.to_owned(),
        source,
    })
}

/// Audit records from a statement selecting `id, doc`, in its order.
fn audit_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditRecord>, Error> {
    let rows = stmt.query_map(params, |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (id, doc) = row?;
        decode(&format!("audit:{id}"), &doc)
    })
    .collect()
}

fn current(tx: &rusqlite::Connection, key: &str) -> Result<Option<(u64, String)>, Error> {
    Ok(tx
        .prepare_cached("SELECT version, doc FROM entities WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

fn check(key: &str, expect: Expect, found: Option<u64>) -> Result<(), Error> {
    let ok = match (expect, found) {
        (Expect::Absent, None) => true,
        (Expect::Version(v), Some(f)) => v == f,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(tally_core::Error::Conflict(key.to_owned()).into())
    }
}

/// Runs inside the writer's savepoint: an error anywhere undoes all of it.
fn commit(t: &rusqlite::Connection, tx: Transaction) -> Result<(), Error> {
    let now = Utc::now().to_rfc3339();
    for key in &tx.applied {
        let inserted = t
            .prepare_cached("INSERT OR IGNORE INTO applied (key, at) VALUES (?1, ?2)")?
            .execute(params![key, now])?;
        if inserted == 0 {
            return Err(tally_core::Error::AlreadyApplied(key.clone()).into());
        }
    }
    for put in &tx.puts {
        let key = put.entity.key();
        let found = current(t, key.as_str())?;
        check(key.as_str(), put.expect, found.as_ref().map(|(v, _)| *v))?;
        let version = found.as_ref().map_or(1, |(v, _)| v + 1);
        let doc = serde_json::to_string(&put.entity)?;
        t.prepare_cached(
            "INSERT INTO entities (key, kind, version, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET version = excluded.version, doc = excluded.doc",
        )?
        .execute(params![
            key.as_str(),
            put.entity.kind().as_str(),
            version as i64,
            doc
        ])?;
        t.prepare_cached("INSERT INTO changes (key, old, new, at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![key.as_str(), found.map(|(_, d)| d), doc, now])?;
    }
    for del in &tx.deletes {
        let found = current(t, del.key.as_str())?;
        check(
            del.key.as_str(),
            Expect::Version(del.version),
            found.as_ref().map(|(v, _)| *v),
        )?;
        t.prepare_cached("DELETE FROM entities WHERE key = ?1")?
            .execute([del.key.as_str()])?;
        t.prepare_cached("INSERT INTO changes (key, old, new, at) VALUES (?1, ?2, NULL, ?3)")?
            .execute(params![del.key.as_str(), found.map(|(_, d)| d), now])?;
    }
    for a in &tx.audit {
        let inserted = t
            .prepare_cached("INSERT OR IGNORE INTO audit (id, entity, doc) VALUES (?1, ?2, ?3)")?
            .execute(params![a.id, a.entity, serde_json::to_string(a)?])?;
        if inserted == 0 {
            // Audit ids derive from their cause: the same id twice means the
            // same decision was already recorded.
            return Err(tally_core::Error::Conflict(format!("audit {}", a.id)).into());
        }
    }
    for m in &tx.outbox {
        insert_message(t, &m.queue, &m.message)?;
    }
    Ok(())
}

#[async_trait]
impl Store for Embedded {
    async fn get(&self, keys: &[Key]) -> tally_core::Result<Vec<Option<Versioned<Entity>>>> {
        let keys = keys.to_vec();
        Ok(self
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT version, doc FROM entities WHERE key = ?1")?;
                keys.iter()
                    .map(|k| {
                        let row = stmt
                            .query_row([k.as_str()], |r| {
                                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                            })
                            .optional()?;
                        row.map(|(v, doc)| {
                            Ok(Versioned {
                                version: v as u64,
                                value: decode(k.as_str(), &doc)?,
                            })
                        })
                        .transpose()
                    })
                    .collect()
            })
            .await?)
    }

    async fn list(&self, kind: Kind) -> tally_core::Result<Vec<Versioned<Entity>>> {
        Ok(self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, version, doc FROM entities WHERE kind = ?1 ORDER BY key",
                )?;
                let rows = stmt.query_map([kind.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?;
                rows.map(|row| {
                    let (key, v, doc) = row?;
                    Ok(Versioned {
                        version: v as u64,
                        value: decode(&key, &doc)?,
                    })
                })
                .collect()
            })
            .await?)
    }

    async fn commit(&self, tx: Transaction) -> tally_core::Result<()> {
        Ok(self.write(move |conn| commit(conn, tx)).await?)
    }

    async fn was_applied(&self, key: &str) -> tally_core::Result<bool> {
        let key = key.to_owned();
        Ok(self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT 1 FROM applied WHERE key = ?1")?
                    .exists([key])?)
            })
            .await?)
    }

    async fn audit_for(&self, entity: &str, limit: usize) -> tally_core::Result<Vec<AuditRecord>> {
        let entity = entity.to_owned();
        Ok(self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, doc FROM audit WHERE entity = ?1 ORDER BY seq DESC LIMIT ?2",
                )?;
                audit_rows(&mut stmt, params![entity, limit as i64])
            })
            .await?)
    }

    async fn recent_audit(&self, limit: usize) -> tally_core::Result<Vec<AuditRecord>> {
        Ok(self
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT id, doc FROM audit ORDER BY seq DESC LIMIT ?1")?;
                audit_rows(&mut stmt, params![limit as i64])
            })
            .await?)
    }

    async fn audit_record(&self, id: &str) -> tally_core::Result<Option<AuditRecord>> {
        let id = id.to_owned();
        Ok(self
            .read(move |conn| {
                let doc: Option<String> = conn
                    .prepare_cached("SELECT doc FROM audit WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?;
                doc.map(|d| decode(&format!("audit:{id}"), &d)).transpose()
            })
            .await?)
    }
}

#[async_trait]
impl ChangeFeed for Embedded {
    async fn changes_after(&self, after: u64, max: usize) -> tally_core::Result<Vec<Change>> {
        Ok(self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, key, old, new, at FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after as i64, max as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?;
                rows.map(|row| {
                    let (seq, key, old, new, at) = row?;
                    let parsed_key = Key::parse(&key).ok_or_else(|| Error::Decode {
                        key: key.clone(),
                        source: serde::de::Error::custom("not a known key"),
                    })?;
                    Ok(Change {
                        seq: seq as u64,
                        old: old.map(|d| decode(&key, &d)).transpose()?,
                        new: new.map(|d| decode(&key, &d)).transpose()?,
                        key: parsed_key,
                        at: at
                            .parse::<DateTime<Utc>>()
                            .map_err(|e| Error::Decode {
                                key: key.clone(),
                                source: serde::de::Error::custom(e),
                            })?,
                    })
                })
                .collect()
            })
            .await?)
    }

    async fn audit_after(
        &self,
        after: u64,
        max: usize,
    ) -> tally_core::Result<Vec<(u64, AuditRecord)>> {
        Ok(self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, id, doc FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after as i64, max as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?;
                rows.map(|row| {
                    let (seq, id, doc) = row?;
                    Ok((seq as u64, decode(&format!("audit:{id}"), &doc)?))
                })
                .collect()
            })
            .await?)
    }

    async fn cursor(&self, consumer: &str) -> tally_core::Result<u64> {
        let consumer = consumer.to_owned();
        Ok(self
            .read(move |conn| {
                let seq: Option<i64> = conn
                    .prepare_cached("SELECT seq FROM cursors WHERE consumer = ?1")?
                    .query_row([consumer], |r| r.get(0))
                    .optional()?;
                Ok(seq.unwrap_or(0) as u64)
            })
            .await?)
    }

    async fn save_cursor(&self, consumer: &str, seq: u64) -> tally_core::Result<()> {
        let consumer = consumer.to_owned();
        Ok(self
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO cursors (consumer, seq) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                )?
                .execute(params![consumer, seq as i64])?;
                Ok(())
            })
            .await?)
    }
}
