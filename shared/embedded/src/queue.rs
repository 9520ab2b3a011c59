//! `Queue` on SQLite, with the semantics of SQS that Tally relies on:
//! visibility timeouts, FIFO groups (one group's messages in order, none
//! while another of the group is in flight), deduplication ids for five minutes,
//! and redrive to `<queue>-dlq` after `max_receives` receives.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tally_core::ports::{Message, Queue, Received, queues};

use crate::db::Embedded;
use crate::error::Error;

/// SQS keeps deduplication ids for five minutes; so do we.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Inserts one message inside the caller's transaction (also used for the
/// outbox of `Store::commit`).
pub(crate) fn insert_message(conn: &Connection, queue: &str, m: &Message) -> Result<(), Error> {
    let now = now_ms();
    if let Some(id) = &m.dedup_id {
        conn.prepare_cached("DELETE FROM dedup WHERE queue = ?1 AND id = ?2 AND expires_at <= ?3")?
            .execute(params![queue, id, now])?;
        let fresh = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO dedup (queue, id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![queue, id, now + DEDUP_WINDOW_MS])?;
        if fresh == 0 {
            // Accepted, as SQS does, but not delivered twice.
            return Ok(());
        }
    }
    conn.prepare_cached(
        "INSERT INTO messages (queue, grp, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![queue, m.group, m.body, now])?;
    Ok(())
}

impl Embedded {
    /// Makes every in-flight message visible again. Only for start-up of a
    /// single-process deployment: whatever was in flight belonged to a run
    /// that died, and waiting out its visibility timeout would stall each
    /// FIFO group it held.
    pub async fn recover_in_flight(&self) -> Result<usize, Error> {
        self.write(|conn| {
            let n = conn.execute(
                "UPDATE messages SET visible_at = ?1, receipt = NULL WHERE visible_at > ?1 AND receipt IS NOT NULL",
                [now_ms()],
            )?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl Queue for Embedded {
    async fn send(&self, queue: &str, messages: Vec<Message>) -> tally_core::Result<()> {
        let queue = queue.to_owned();
        Ok(self
            .write(move |conn| {
                for m in &messages {
                    insert_message(conn, &queue, m)?;
                }
                Ok(())
            })
            .await?)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> tally_core::Result<Vec<Received>> {
        let queue = queue.to_owned();
        let max_receives = self.max_receives;
        Ok(self
            .write(move |t| {
                let now = now_ms();
                let visible_at = now + visibility.as_millis() as i64;
                let mut out = Vec::with_capacity(max);
                // Poison is parked only as it comes up (below), so a receive
                // reads the head of the queue, never the whole backlog; if
                // all it found was poison, it looks again.
                loop {
                    let picked: Vec<(i64, String, Option<String>, u32)> = {
                        let mut stmt = t.prepare_cached(
                            "SELECT id, body, grp, receive_count FROM messages INDEXED BY messages_in_order
                             WHERE queue = ?1 AND visible_at <= ?2
                               AND (grp IS NULL OR grp NOT IN (
                                    SELECT grp FROM messages
                                    WHERE queue = ?1 AND visible_at > ?2 AND grp IS NOT NULL))
                             ORDER BY id LIMIT ?3",
                        )?;
                        stmt.query_map(params![queue, now, max as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<Result<_, _>>()?
                    };
                    let mut parked = 0;
                    for (id, body, group, count) in picked {
                        if count >= max_receives {
                            // Received max_receives times and still not
                            // deleted: poison. Redrive it to the DLQ, as
                            // SQS does when it would be received again.
                            t.prepare_cached(
                                "UPDATE messages SET queue = ?1, receive_count = 0, receipt = NULL
                                 WHERE id = ?2",
                            )?
                            .execute(params![queues::dead_letter(&queue), id])?;
                            parked += 1;
                            continue;
                        }
                        let receipt = format!("{id}-{}", uuid::Uuid::new_v4().simple());
                        t.prepare_cached(
                            "UPDATE messages SET visible_at = ?1, receive_count = receive_count + 1, receipt = ?2
                             WHERE id = ?3",
                        )?
                        .execute(params![visible_at, receipt, id])?;
                        out.push(Received {
                            receipt,
                            body,
                            group,
                            receive_count: count + 1,
                        });
                    }
                    if parked == 0 || !out.is_empty() {
                        break;
                    }
                }
                Ok(out)
            })
            .await?)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> tally_core::Result<()> {
        let (queue, receipt) = (queue.to_owned(), receipt.to_owned());
        Ok(self
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")?
                    .execute(params![queue, receipt])?;
                Ok(())
            })
            .await?)
    }

    async fn delete_many(&self, queue: &str, receipts: &[String]) -> tally_core::Result<()> {
        let (queue, receipts) = (queue.to_owned(), receipts.to_vec());
        Ok(self
            .write(move |conn| {
                let mut stmt =
                    conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")?;
                for r in &receipts {
                    stmt.execute(params![queue, r])?;
                }
                Ok(())
            })
            .await?)
    }

    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> tally_core::Result<()> {
        let (queue, receipt) = (queue.to_owned(), receipt.to_owned());
        Ok(self
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3",
                )?
                .execute(params![
                    now_ms() + delay.as_millis() as i64,
                    queue,
                    receipt
                ])?;
                Ok(())
            })
            .await?)
    }

    async fn depth(&self, queue: &str) -> tally_core::Result<u64> {
        let queue = queue.to_owned();
        Ok(self
            .read(move |conn| {
                let n: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM messages WHERE queue = ?1")?
                    .query_row([queue], |r| r.get(0))?;
                Ok(n as u64)
            })
            .await?)
    }
}
