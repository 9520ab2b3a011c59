//! The SQLite file and the single connection in front of it.
//!
//! One connection behind a mutex serialises all writers, which is what
//! SQLite does anyway; calls run on tokio's blocking pool so they never stall
//! the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::error::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS entities (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_by_kind ON entities (kind, key);

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    entity TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_entity ON audit (entity, seq);

CREATE TABLE IF NOT EXISTS applied (
    key TEXT PRIMARY KEY,
    at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    old TEXT,
    new TEXT,
    at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    grp TEXT,
    body TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at, id);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (queue, grp, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_receipt ON messages (receipt);

CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue, id)
);
"#;

/// The embedded backend: implements `Store`, `ChangeFeed` and `Queue`.
#[derive(Clone)]
pub struct Embedded {
    conn: Arc<Mutex<Connection>>,
    /// Receives after which a message goes to its queue's DLQ.
    pub(crate) max_receives: u32,
}

impl Embedded {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        // WAL lets readers run beside the writer; FULL makes every commit
        // durable before it returns, which is what a 202 promises.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            max_receives: 5,
        })
    }

    /// Sets how many receives a message gets before it is dead-lettered.
    pub fn with_max_receives(mut self, n: u32) -> Self {
        self.max_receives = n.max(1);
        self
    }

    /// Runs `f` on the connection, off the async threads.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic mid-call rolled its transaction back when it unwound,
            // so the connection is still sound: keep using it.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }
}
