//! The ledger under a randomized concurrent load on a real SQLite file:
//! exactly once, no lost update, no oversell (tally_conformance::soak).
//!
//! The test command runs a short run; the documented long run is
//! `TALLY_SOAK_OPS=1000000 cargo test --release -p tally-embedded --test soak -- --nocapture`
//! (docs/reliability.md).

use std::sync::Arc;

use tally_conformance::soak::{SoakPlan, ledger_soak};
use tally_embedded::Embedded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_on_sqlite_applies_each_event_once_and_never_oversells() {
    // TALLY_SOAK_DIR puts the file elsewhere (a tmpfs for the long run).
    let dir = match std::env::var_os("TALLY_SOAK_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let db = Arc::new(Embedded::open(&dir.path().join("soak.db")).unwrap());
    // Ten deliveries at a time through the ledger batch (as an SQS batch
    // would); the DynamoDB soak applies them one at a time.
    let report = ledger_soak(db.clone(), db, SoakPlan::from_env(4_000, 8, 10)).await;
    println!("sqlite soak: {report}");
    assert!(report.duplicates > 0, "the run redelivered nothing");
    assert!(
        report.orders_short > 0,
        "the hot SKUs never ran out: no race for the last unit"
    );
}
