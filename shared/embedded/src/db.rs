//! The SQLite file: one writer thread with group commit, and reader
//! connections beside it (WAL).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

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
CREATE INDEX IF NOT EXISTS messages_in_order ON messages (queue, id);
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

/// Most writes one commit (one fsync) carries. A larger group waits
/// longer for its fsync; this many already share one well.
const MAX_GROUP: usize = 256;
/// Connections for reads: WAL lets them run beside the writer.
const READERS: usize = 2;

/// A write, run by the writer thread inside the group's transaction; what it
/// returns delivers its result once the group's commit is known.
type Job = Box<dyn FnOnce(&mut Connection) -> Deliver + Send>;
/// Told whether the group's commit failed (and why).
type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;

/// The embedded backend: implements `Store`, `ChangeFeed` and `Queue`.
///
/// All writes go to one writer thread that owns the write connection. It
/// takes every write waiting, runs each in its own savepoint (a failed one
/// rolls back alone), commits them together with one fsync, and only then
/// answers each caller: group commit, so many concurrent requests share a
/// disk flush and nothing is acknowledged before it is durable. Reads use
/// their own connections and see only committed data.
#[derive(Clone)]
pub struct Embedded {
    writer: mpsc::Sender<Job>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<AtomicUsize>,
    /// Receives after which a message goes to its queue's DLQ.
    pub(crate) max_receives: u32,
}

fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Embedded {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = connect(path)?;
        // WAL lets readers run beside the writer; FULL makes every commit
        // durable before it returns, which is what a 202 promises.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Each write runs in a savepoint; its journal belongs in memory, not
        // in a temporary file written page by page.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -16_000)?; // KiB
        conn.execute_batch(SCHEMA)?;
        let readers = (0..READERS)
            .map(|_| {
                let r = connect(path)?;
                r.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(r))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (writer, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("tally-sqlite-writer".into())
            .spawn(move || write_groups(conn, jobs))
            .map_err(|e| Error::Worker(e.to_string()))?;
        Ok(Self {
            writer,
            readers: readers.into(),
            next_reader: Arc::default(),
            max_receives: 5,
        })
    }

    /// Sets how many receives a message gets before it is dead-lettered.
    pub fn with_max_receives(mut self, n: u32) -> Self {
        self.max_receives = n.max(1);
        self
    }

    /// Runs the write `f` atomically and durably: it lands whole, with the
    /// other writes of its group, or not at all.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit_failed| {
                let result = match (result, commit_failed) {
                    (Ok(_), Some(why)) => Err(Error::Worker(format!("commit failed: {why}"))),
                    (result, _) => result,
                };
                answer.send(result).ok();
            })
        });
        self.writer
            .send(job)
            .map_err(|_| Error::Worker("the writer thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| Error::Worker("a write panicked".into()))?
    }

    /// Runs the read `f` on a reader connection, off the async threads, in
    /// one read transaction (a consistent snapshot of committed data).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            // A panic mid-read left nothing half-done: keep the connection.
            let guard = readers[i].lock().unwrap_or_else(|p| p.into_inner());
            let snapshot = guard.unchecked_transaction()?;
            let out = f(&snapshot)?;
            snapshot.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }
}

fn in_savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    let sp = conn.savepoint()?;
    let out = f(&sp)?; // dropping `sp` on error rolls this write back alone
    sp.commit()?;
    Ok(out)
}

/// The writer thread: one transaction, and one fsync, per group of writes.
fn write_groups(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Without the outer transaction each savepoint commits on its own:
        // slower, still correct.
        let grouped = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let delivers: Vec<Deliver> = group
            .into_iter()
            .filter_map(|job| {
                // A panicking write drops its answer (the caller sees an
                // error) and its savepoint (rolled back); the others go on.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn))).ok()
            })
            .collect();
        let failed = if grouped {
            conn.execute_batch("COMMIT").err().map(|e| {
                conn.execute_batch("ROLLBACK").ok();
                e.to_string()
            })
        } else {
            None
        };
        for deliver in delivers {
            deliver(failed.as_deref());
        }
    }
}
