//! The conformance suite on a real SQLite file.

use std::sync::OnceLock;

use tally_embedded::Embedded;

/// One database file for the whole suite, as `tally serve` would have.
fn backend() -> Embedded {
    static DB: OnceLock<(tempfile::TempDir, Embedded)> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Embedded::open(&dir.path().join("tally.db"))
            .unwrap()
            .with_max_receives(3);
        (dir, db)
    })
    .1
    .clone()
}

tally_conformance::conformance_tests! {
    store: async { Arc::new(backend()) },
    feed: async { Arc::new(backend()) },
    queue: |_name: &'static str| async { Arc::new(backend()) },
    max_receives: 3,
}
