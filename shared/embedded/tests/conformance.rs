//! The conformance suite on a real SQLite file.

use std::sync::OnceLock;

use tally_embedded::Embedded;

/// Receives before a message is dead-lettered, in every test here.
const MAX_RECEIVES: u32 = 3;

/// One database file for the whole suite, as `tally serve` would have.
fn backend() -> Embedded {
    static DB: OnceLock<(tempfile::TempDir, Embedded)> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let db = Embedded::open(&dir.path().join("tally.db"))
            .unwrap()
            .with_max_receives(MAX_RECEIVES);
        (dir, db)
    })
    .1
    .clone()
}

tally_conformance::conformance_tests! {
    store: async { Arc::new(backend()) },
    queue: |_name: &'static str| async { Arc::new(backend()) },
    max_receives: MAX_RECEIVES,
    relay: |_queue| async {},
}

/// The change feed is SQLite's own (DynamoDB's is its stream, checked in
/// tally-aws's aws_path suite).
#[tokio::test]
async fn the_change_feed_shows_each_put_with_old_and_new() {
    let db = backend();
    tally_conformance::the_change_feed_shows_each_put_with_old_and_new(&db, &db).await;
}

/// Poison is parked as a receive comes to it: a receive of one message
/// whose head is poison parks it and hands out the next message instead
/// of nothing.
#[tokio::test]
async fn a_receive_that_meets_only_poison_parks_it_and_looks_again() {
    use std::time::Duration;
    use tally_core::ports::{Message, Queue, queues};
    let db = backend();
    let (queue, dlq) = ("poison-head", queues::dead_letter("poison-head"));
    let message = |body: &str| Message {
        body: body.into(),
        group: None,
        dedup_id: None,
    };
    db.send(queue, vec![message("poison")]).await.unwrap();
    for _ in 0..MAX_RECEIVES {
        let got = db.receive(queue, 1, Duration::from_secs(30)).await.unwrap();
        assert_eq!(got[0].body, "poison");
        db.retry_after(queue, &got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    db.send(queue, vec![message("good")]).await.unwrap();
    let got = db.receive(queue, 1, Duration::from_secs(30)).await.unwrap();
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["good"],
        "the poison was parked, the next one handed out"
    );
    let parked = db.receive(&dlq, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, "poison");
}
