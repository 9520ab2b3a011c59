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
    queue: |_name: &'static str| async { Arc::new(backend()) },
    max_receives: 3,
    relay: |_queue| async {},
}

/// The change feed is SQLite's own (DynamoDB's is its stream, checked in
/// tally-aws's aws_path suite).
#[tokio::test]
async fn the_change_feed_shows_each_put_with_old_and_new() {
    let db = backend();
    tally_conformance::the_change_feed_shows_each_put_with_old_and_new(&db, &db).await;
}
