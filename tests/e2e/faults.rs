//! Fault injection on the embedded stack: `tally serve` is killed with
//! SIGKILL at random moments under a concurrent load of signed events, and
//! restarted on the same file, fifty times. Whatever was acknowledged (202)
//! must be applied after the restart, nothing may be applied twice, and once
//! the senders have retried everything, as platforms do, the ledger must
//! hold exactly one application of every event.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::{Server, StatusCode, data_dir, sign};

const CYCLES: usize = 50;
const SENDERS: usize = 4;
const MAX_EVENTS: usize = 50_000;
const FIRST_COUNT: u64 = 1_000_000;

/// Event `n`: every third one an order reserving one unit, the others a
/// receipt of one unit. Each has its own id, so each must count once.
fn event(n: usize) -> Value {
    if n.is_multiple_of(3) {
        json!({"id": format!("order-{n}"), "type": "order.placed", "occurred_at": "2026-12-03T10:05:00Z",
               "data": {"order_id": format!("K{n}"), "channel": "erp", "currency": "EUR",
                        "lines": [{"sku": "TSHIRT-M", "qty": 1, "unit_price": "19.99"}]}})
    } else {
        json!({"id": format!("receipt-{n}"), "type": "stock.adjusted", "occurred_at": "2026-12-03T10:05:00Z",
               "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "delta": 1, "reason": "received"}})
    }
}

/// (orders, receipts) among events `0..n` or among those `pick` selects.
fn split(n: usize, pick: impl Fn(usize) -> bool) -> (u64, u64) {
    (0..n).filter(|&i| pick(i)).fold((0, 0), |(o, r), i| {
        if i.is_multiple_of(3) {
            (o + 1, r)
        } else {
            (o, r + 1)
        }
    })
}

fn random_below(n: u64) -> u64 {
    RandomState::new().build_hasher().finish() % n
}

/// What the ledger shows: (reserved, receipts applied).
fn applied(s: &Server) -> (u64, u64) {
    let stock = s.stock("TSHIRT-M");
    let on_hand = stock["on_hand"].as_u64().unwrap();
    (stock["reserved"].as_u64().unwrap(), on_hand - FIRST_COUNT)
}

#[test]
fn fifty_kill_9_restarts_under_load_lose_nothing_and_double_nothing() {
    let (_dir, data) = data_dir();
    let s = Server::start(&data);
    s.configure(0);
    let first = json!({"id": "first-count", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
                       "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": FIRST_COUNT}});
    assert_eq!(s.send("erp", &first), StatusCode::ACCEPTED);
    s.settle();
    drop(s);

    let acked: Arc<Vec<AtomicBool>> =
        Arc::new((0..MAX_EVENTS).map(|_| AtomicBool::new(false)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut kills_mid_load = 0;
    for cycle in 0..CYCLES {
        let mut s = Server::start(&data);
        // After each restart: everything acknowledged before the kill is
        // there, and nothing beyond what was ever sent.
        let attempted = next.load(Ordering::SeqCst).min(MAX_EVENTS);
        let (must_orders, must_receipts) = split(attempted, |i| acked[i].load(Ordering::SeqCst));
        let (max_orders, max_receipts) = split(attempted, |_| true);
        let (reserved, receipts) = applied(&s);
        assert!(
            (must_orders..=max_orders).contains(&reserved)
                && (must_receipts..=max_receipts).contains(&receipts),
            "cycle {cycle}: reserved {reserved} (acknowledged {must_orders}, sent {max_orders}), \
             receipts {receipts} (acknowledged {must_receipts}, sent {max_receipts})"
        );

        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let (base, acked, next) = (s.base.clone(), acked.clone(), next.clone());
                std::thread::spawn(move || {
                    let http = Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= MAX_EVENTS {
                            return;
                        }
                        let body = event(n).to_string();
                        let ok = http
                            .post(format!("{base}/events/erp"))
                            .header("X-Tally-Signature", sign(&body, 0))
                            .body(body)
                            .send()
                            .is_ok_and(|r| r.status() == StatusCode::ACCEPTED);
                        if !ok {
                            return; // killed: this one is retried at the end
                        }
                        acked[n].store(true, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Kill at a random moment: while requests are being acknowledged,
        // events applied and the change feed followed.
        let before = next.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20 + random_below(200)));
        if next.load(Ordering::SeqCst) > before {
            kills_mid_load += 1;
        }
        s.kill9();
        for t in senders {
            t.join().unwrap();
        }
    }
    assert!(
        kills_mid_load >= CYCLES - 5,
        "only {kills_mid_load} kills came under load"
    );

    // The senders retry everything they ever sent (a redelivery of what was
    // applied must change nothing), in batches.
    let s = Server::start(&data);
    let sent = next.load(Ordering::SeqCst).min(MAX_EVENTS);
    assert!(sent < MAX_EVENTS, "raise MAX_EVENTS: the load never paused");
    let all: Vec<usize> = (0..sent).collect();
    for chunk in all.chunks(200) {
        let batch = Value::Array(chunk.iter().map(|&n| event(n)).collect());
        assert_eq!(s.send("erp", &batch), StatusCode::ACCEPTED);
    }
    let (orders, receipts) = split(sent, |_| true);
    assert_eq!(
        applied(&s),
        (orders, receipts),
        "after {CYCLES} kills and a full retry of {sent} events"
    );
    println!(
        "{CYCLES} kill -9 cycles, {kills_mid_load} under load; {sent} events sent, \
         {} acknowledged before a kill; 0 lost, 0 doubled",
        (0..sent)
            .filter(|&i| acked[i].load(Ordering::SeqCst))
            .count()
    );
}
