//! The store and queue conformance suite. Every backend (SQLite here,
//! DynamoDB + SQS in tally-aws) runs these very checks against a real
//! server or file; `conformance_tests!` turns them into one `#[tokio::test]`
//! each.
//!
//! Each check makes its own keys and queue contents, so one backend
//! instance can run them all, in any order, side by side.

pub mod soak;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;
use tally_core::audit::Cause;
use tally_core::catalog::Product;
use tally_core::entity::{Entity, Key, Kind};
use tally_core::ledger::{LocationStock, StockRecord};
use tally_core::ports::{
    ChangeFeed, Delete, Expect, Message, OutboxMessage, Put, Queue, Store, Transaction,
};
use tally_core::{Error, LocationId, Sku};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn product(sku: &str, price: &str) -> Entity {
    let sku = Sku::parse(sku).unwrap();
    Entity::Product(
        Product::parse(
            &sku,
            &json!({"currency": "EUR", "price": price, "unit_cost": "10.10"}),
            Utc::now(),
        )
        .unwrap(),
    )
}

fn stock(sku: &str, on_hand: u32) -> Entity {
    let mut s = StockRecord::new(Sku::parse(sku).unwrap());
    s.locations.insert(
        LocationId::parse("WH").unwrap(),
        LocationStock {
            on_hand,
            ..Default::default()
        },
    );
    Entity::Stock(s)
}

fn put(entity: Entity, expect: Expect) -> Transaction {
    Transaction {
        puts: vec![Put { entity, expect }],
        ..Default::default()
    }
}

fn audit(entity: &str, cause: &str, kind: &str) -> tally_core::audit::AuditRecord {
    Cause::system(cause, Utc::now()).record(0, entity.into(), kind, json!(1), json!(2), json!({}))
}

pub async fn a_put_reads_back_at_version_one_with_exact_decimals(store: &dyn Store) {
    let sku = unique("P");
    store
        .commit(put(product(&sku, "19.90"), Expect::Absent))
        .await
        .unwrap();
    let got = store
        .get(&[Key::product(&Sku::parse(&sku).unwrap())])
        .await
        .unwrap();
    let v = got[0].as_ref().expect("the record is there");
    assert_eq!(v.version, 1);
    let p = v.value.as_product().unwrap();
    assert_eq!(p.price, Some(Decimal::new(1990, 2)));
    assert_eq!(p.unit_cost.unwrap().to_string(), "10.10");
}

pub async fn absent_keys_read_as_none_in_order(store: &dyn Store) {
    let sku = unique("P");
    store
        .commit(put(product(&sku, "1"), Expect::Absent))
        .await
        .unwrap();
    let keys = [
        Key::product(&Sku::parse(&unique("none")).unwrap()),
        Key::product(&Sku::parse(&sku).unwrap()),
    ];
    let got = store.get(&keys).await.unwrap();
    assert!(got[0].is_none());
    assert_eq!(got[1].as_ref().unwrap().value.key(), keys[1]);
}

pub async fn a_stale_version_conflicts_and_writes_nothing(store: &dyn Store) {
    let sku = unique("S");
    let key = Key::stock(&Sku::parse(&sku).unwrap());
    store
        .commit(put(stock(&sku, 1), Expect::Absent))
        .await
        .unwrap();
    store
        .commit(put(stock(&sku, 2), Expect::Version(1)))
        .await
        .unwrap();
    let idem = unique("evt");
    let mut tx = put(stock(&sku, 99), Expect::Version(1));
    tx.audit
        .push(audit(&format!("stock:{sku}@WH"), &idem, "stock.counted"));
    tx.applied = vec![idem.clone()];
    let err = store.commit(tx).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let now = store.get(std::slice::from_ref(&key)).await.unwrap();
    let now = now[0].as_ref().unwrap();
    assert_eq!(now.version, 2);
    assert_eq!(now.value.as_stock().unwrap().on_hand(), 2);
    assert!(
        !store.was_applied(&idem).await.unwrap(),
        "marker written by a failed commit"
    );
    assert!(
        store
            .audit_for(&format!("stock:{sku}@WH"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn expecting_absent_conflicts_when_present(store: &dyn Store) {
    let sku = unique("S");
    store
        .commit(put(stock(&sku, 1), Expect::Absent))
        .await
        .unwrap();
    let err = store
        .commit(put(stock(&sku, 5), Expect::Absent))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

pub async fn a_second_commit_of_one_event_is_refused_whole(store: &dyn Store) {
    let (a, b) = (unique("S"), unique("S"));
    let idem = unique("src:evt");
    let mut first = put(stock(&a, 1), Expect::Absent);
    first.applied = vec![idem.clone()];
    store.commit(first).await.unwrap();
    assert!(store.was_applied(&idem).await.unwrap());
    let mut again = put(stock(&b, 1), Expect::Absent);
    again.applied = vec![idem.clone()];
    let err = store.commit(again).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyApplied(_)), "{err:?}");
    let got = store
        .get(&[Key::stock(&Sku::parse(&b).unwrap())])
        .await
        .unwrap();
    assert!(got[0].is_none(), "a refused commit wrote its put");
}

/// A batch commits several events' markers at once: if one of them was
/// applied before, the store names that one and writes nothing of the batch.
pub async fn a_batch_with_one_applied_event_names_it_and_writes_nothing(store: &dyn Store) {
    let (a, b) = (unique("S"), unique("S"));
    let (old, new) = (unique("src:evt"), unique("src:evt"));
    let mut first = put(stock(&a, 1), Expect::Absent);
    first.applied = vec![old.clone()];
    store.commit(first).await.unwrap();
    let mut batch = put(stock(&b, 7), Expect::Absent);
    batch.applied = vec![new.clone(), old.clone()];
    let err = store.commit(batch).await.unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyApplied(key) if *key == old),
        "{err:?}"
    );
    assert!(
        !store.was_applied(&new).await.unwrap(),
        "marker of a refused batch"
    );
    let got = store
        .get(&[Key::stock(&Sku::parse(&b).unwrap())])
        .await
        .unwrap();
    assert!(got[0].is_none(), "a refused batch wrote its put");
    let mut retry = put(stock(&b, 7), Expect::Absent);
    retry.applied = vec![new.clone()];
    store.commit(retry).await.unwrap();
    assert!(store.was_applied(&new).await.unwrap());
}

pub async fn audit_reads_newest_first_and_by_id(store: &dyn Store) {
    let entity = format!("price:{}", unique("A"));
    for n in 0..3 {
        let tx = Transaction {
            audit: vec![audit(&entity, &unique(&format!("c{n}")), &format!("k{n}"))],
            ..Default::default()
        };
        store.commit(tx).await.unwrap();
        // Distinct timestamps are not needed for order, but keep them apart.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recs = store.audit_for(&entity, 10).await.unwrap();
    let kinds: Vec<_> = recs.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["k2", "k1", "k0"]);
    assert_eq!(store.audit_for(&entity, 2).await.unwrap().len(), 2);
    let one = store.audit_record(&recs[1].id).await.unwrap().unwrap();
    assert_eq!(one, recs[1]);
    assert!(store.audit_record("no-such-id").await.unwrap().is_none());
}

pub async fn list_returns_one_kind_ordered_by_key(store: &dyn Store) {
    let base = unique("L");
    for suffix in ["b", "a", "c"] {
        store
            .commit(put(
                product(&format!("{base}-{suffix}"), "1"),
                Expect::Absent,
            ))
            .await
            .unwrap();
    }
    store
        .commit(put(stock(&format!("{base}-s"), 1), Expect::Absent))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list(Kind::Product)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value.key().to_string())
        .filter(|k| k.contains(&base))
        .collect();
    assert_eq!(
        listed,
        ["a", "b", "c"].map(|s| format!("product:{base}-{s}"))
    );
}

pub async fn deletes_are_version_checked(store: &dyn Store) {
    let sku = unique("D");
    let key = Key::stock(&Sku::parse(&sku).unwrap());
    store
        .commit(put(stock(&sku, 1), Expect::Absent))
        .await
        .unwrap();
    let stale = Transaction {
        deletes: vec![Delete {
            key: key.clone(),
            version: 7,
        }],
        ..Default::default()
    };
    assert!(matches!(store.commit(stale).await, Err(Error::Conflict(_))));
    let ok = Transaction {
        deletes: vec![Delete {
            key: key.clone(),
            version: 1,
        }],
        ..Default::default()
    };
    store.commit(ok).await.unwrap();
    assert!(store.get(&[key]).await.unwrap()[0].is_none());
}

/// Many writers race on one record, each retrying from a fresh read on
/// conflict: no update may be lost.
pub async fn racing_writers_lose_no_update(store: Arc<dyn Store>) {
    let sku = unique("R");
    let key = Key::stock(&Sku::parse(&sku).unwrap());
    store
        .commit(put(stock(&sku, 0), Expect::Absent))
        .await
        .unwrap();
    let writers = 8;
    let each = 5;
    let mut tasks = vec![];
    for _ in 0..writers {
        let (store, key, sku) = (Arc::clone(&store), key.clone(), sku.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                loop {
                    let cur = store
                        .get(std::slice::from_ref(&key))
                        .await
                        .unwrap()
                        .remove(0)
                        .unwrap();
                    let n = cur.value.as_stock().unwrap().on_hand();
                    match store
                        .commit(put(stock(&sku, n + 1), Expect::Version(cur.version)))
                        .await
                    {
                        Ok(()) => break,
                        Err(Error::Conflict(_)) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = store.get(&[key]).await.unwrap().remove(0).unwrap();
    assert_eq!(end.value.as_stock().unwrap().on_hand(), writers * each);
    assert_eq!(end.version, u64::from(writers * each) + 1);
}

pub async fn the_change_feed_shows_each_put_with_old_and_new(
    store: &dyn Store,
    feed: &dyn ChangeFeed,
) {
    let start = feed
        .changes_after(0, usize::MAX >> 1)
        .await
        .unwrap()
        .last()
        .map_or(0, |c| c.seq);
    let sku = unique("F");
    store
        .commit(put(stock(&sku, 1), Expect::Absent))
        .await
        .unwrap();
    store
        .commit(put(stock(&sku, 2), Expect::Version(1)))
        .await
        .unwrap();
    let mine: Vec<_> = feed
        .changes_after(start, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.key.as_str() == format!("stock:{sku}"))
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine[0].old.is_none());
    assert_eq!(
        mine[1]
            .old
            .as_ref()
            .and_then(|e| e.as_stock())
            .map(|s| s.on_hand()),
        Some(1)
    );
    assert_eq!(
        mine[1]
            .new
            .as_ref()
            .and_then(|e| e.as_stock())
            .map(|s| s.on_hand()),
        Some(2)
    );
    assert!(mine[0].seq < mine[1].seq);
}

/// The outbox of a commit is sent if and only if the commit lands. `relay`
/// does whatever the backend needs to move committed outbox items onto the
/// queue (nothing on SQLite; the stream relay on DynamoDB).
pub async fn the_outbox_is_sent_only_with_its_commit<R, F>(
    store: &dyn Store,
    queue: Arc<dyn Queue>,
    name: &str,
    relay: R,
) where
    R: Fn(Arc<dyn Queue>) -> F,
    F: std::future::Future<Output = ()>,
{
    let sku = unique("O");
    let body = unique("outbox");
    let mut tx = put(stock(&sku, 1), Expect::Absent);
    tx.outbox.push(OutboxMessage {
        queue: name.into(),
        message: Message {
            body: body.clone(),
            group: Some(sku.clone()),
            dedup_id: Some(body.clone()),
        },
    });
    store.commit(tx.clone()).await.unwrap();
    let mut failed = tx;
    failed.outbox[0].message.body = format!("{body}-never");
    failed.outbox[0].message.dedup_id = Some(format!("{body}-never"));
    assert!(store.commit(failed).await.is_err());
    relay(queue.clone()).await;
    let got = drain(queue.as_ref(), name, &body).await;
    assert!(got.contains(&body), "{got:?}");
    assert!(!got.contains(&format!("{body}-never")));
}

/// Receives and deletes every message whose body starts with `prefix`,
/// handing the others (other checks share the queue) straight back.
async fn drain(queue: &dyn Queue, name: &str, prefix: &str) -> Vec<String> {
    let mut out = vec![];
    for _ in 0..20 {
        let batch = queue
            .receive(name, 10, Duration::from_secs(30))
            .await
            .unwrap();
        let mut mine = 0;
        for m in batch {
            if m.body.starts_with(prefix) {
                queue.delete(name, &m.receipt).await.unwrap();
                out.push(m.body);
                mine += 1;
            } else {
                queue
                    .retry_after(name, &m.receipt, Duration::ZERO)
                    .await
                    .unwrap();
            }
        }
        if mine == 0 && !out.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

pub async fn a_message_is_received_then_deleted(queue: &dyn Queue, name: &str) {
    let body = unique("m");
    queue
        .send(
            name,
            vec![Message {
                body: body.clone(),
                group: Some("g".into()),
                dedup_id: Some(body.clone()),
            }],
        )
        .await
        .unwrap();
    let got = drain(queue, name, &body).await;
    assert!(got.contains(&body));
    let again = queue
        .receive(name, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        again.iter().all(|m| m.body != body),
        "a deleted message came back"
    );
}

pub async fn a_message_not_deleted_comes_back_with_a_higher_count(queue: &dyn Queue, name: &str) {
    let body = unique("m");
    queue
        .send(
            name,
            vec![Message {
                body: body.clone(),
                group: Some(body.clone()),
                dedup_id: Some(body.clone()),
            }],
        )
        .await
        .unwrap();
    let first = find(queue, name, &body).await;
    assert_eq!(first.receive_count, 1);
    queue
        .retry_after(name, &first.receipt, Duration::ZERO)
        .await
        .unwrap();
    let second = find(queue, name, &body).await;
    assert_eq!(second.receive_count, 2);
    queue.delete(name, &second.receipt).await.unwrap();
}

/// Receives until `body` arrives; everything else goes straight back.
async fn find(queue: &dyn Queue, name: &str, body: &str) -> tally_core::ports::Received {
    for _ in 0..100 {
        let mut found = None;
        for m in queue
            .receive(name, 10, Duration::from_secs(30))
            .await
            .unwrap()
        {
            if m.body == body && found.is_none() {
                found = Some(m);
            } else {
                queue
                    .retry_after(name, &m.receipt, Duration::ZERO)
                    .await
                    .unwrap();
            }
        }
        if let Some(m) = found {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {body} never arrived");
}

/// One group is delivered in order, and not at all while its head is in
/// flight; another group is not held up by it.
pub async fn a_fifo_group_is_delivered_in_order_one_in_flight(queue: &dyn Queue, name: &str) {
    let (g1, g2) = (unique("g1"), unique("g2"));
    let msg = |g: &str, b: &str| Message {
        body: format!("{g}/{b}"),
        group: Some(g.into()),
        dedup_id: Some(format!("{g}/{b}")),
    };
    queue
        .send(name, vec![msg(&g1, "a"), msg(&g1, "b"), msg(&g2, "c")])
        .await
        .unwrap();
    let head = find(queue, name, &format!("{g1}/a")).await;
    // While a is in flight, b must not be delivered; c may, and must be.
    let mut seen_c = None;
    for _ in 0..100 {
        for m in queue
            .receive(name, 10, Duration::from_secs(30))
            .await
            .unwrap()
        {
            assert_ne!(
                m.body,
                format!("{g1}/b"),
                "b delivered while a was in flight"
            );
            if m.body == format!("{g2}/c") {
                seen_c = Some(m.receipt);
            } else {
                queue
                    .retry_after(name, &m.receipt, Duration::ZERO)
                    .await
                    .unwrap();
            }
        }
        if seen_c.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    queue
        .delete(name, &seen_c.expect("the other group is not held up"))
        .await
        .unwrap();
    queue.delete(name, &head.receipt).await.unwrap();
    let b = find(queue, name, &format!("{g1}/b")).await;
    queue.delete(name, &b.receipt).await.unwrap();
}

pub async fn a_deduplicated_message_is_delivered_once(queue: &dyn Queue, name: &str) {
    let id = unique("dup");
    let m = Message {
        body: id.clone(),
        group: Some(id.clone()),
        dedup_id: Some(id.clone()),
    };
    queue.send(name, vec![m.clone()]).await.unwrap();
    queue.send(name, vec![m]).await.unwrap();
    let got = drain(queue, name, &id).await;
    assert_eq!(got.iter().filter(|b| **b == id).count(), 1, "{got:?}");
}

/// A message received `max_receives` times without being deleted ends in
/// the dead-letter queue instead of looping.
pub async fn a_poison_message_ends_in_the_dead_letter_queue(
    queue: &dyn Queue,
    name: &str,
    dlq: &str,
    max_receives: u32,
) {
    let body = unique("poison");
    queue
        .send(
            name,
            vec![Message {
                body: body.clone(),
                group: Some(body.clone()),
                dedup_id: Some(body.clone()),
            }],
        )
        .await
        .unwrap();
    for n in 1..=max_receives {
        let m = find(queue, name, &body).await;
        assert_eq!(m.receive_count, n);
        queue
            .retry_after(name, &m.receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    // The next receive redrives it.
    for _ in 0..5 {
        let batch = queue
            .receive(name, 10, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            batch.iter().all(|m| m.body != body),
            "poison delivered again"
        );
        for m in batch {
            queue
                .retry_after(name, &m.receipt, Duration::ZERO)
                .await
                .unwrap();
        }
    }
    let parked = find(queue, dlq, &body).await;
    queue.delete(dlq, &parked.receipt).await.unwrap();
}

pub async fn the_activity_feed_is_newest_first_across_entities(store: &dyn Store) {
    let (a, b) = (
        format!("price:{}", unique("F")),
        format!("stock:{}@WH", unique("F")),
    );
    for (n, entity) in [&a, &b, &a].into_iter().enumerate() {
        let tx = Transaction {
            audit: vec![audit(entity, &unique(&format!("f{n}")), &format!("k{n}"))],
            ..Default::default()
        };
        store.commit(tx).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Other checks may write at the same time: look at ours only.
    let feed: Vec<(String, String)> = store
        .recent_audit(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entity == a || r.entity == b)
        .map(|r| (r.entity, r.kind))
        .collect();
    assert_eq!(
        feed,
        [
            (a.clone(), "k2".to_owned()),
            (b.clone(), "k1".to_owned()),
            (a.clone(), "k0".to_owned())
        ]
    );
    assert_eq!(store.recent_audit(2).await.unwrap().len(), 2);
}

/// Generates one `#[tokio::test]` per check for a backend.
///
/// `store` is an async block building the backend;
/// `relay` moves committed outbox items onto their queue; `queue` is a
/// function from a queue name (one per check, so checks never see each
/// other's messages) to a future of the backend with that queue and its
/// `-dlq` ready. `$attr` lets a backend that needs a server mark its tests
/// `#[ignore = "..."]`.
#[macro_export]
macro_rules! conformance_tests {
    (
        $(#[$attr:meta])*
        store: $store:expr,
        queue: $queue:expr,
        max_receives: $max:expr,
        relay: $relay:expr,
    ) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use std::sync::Arc;
            use tally_core::ports::{Queue, Store};

            macro_rules! store_check {
                ($name:ident) => {
                    $(#[$attr])*
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store: Arc<dyn Store> = $store.await;
                        $crate::$name(store.as_ref()).await;
                    }
                };
            }
            macro_rules! queue_check {
                ($name:ident) => {
                    $(#[$attr])*
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let queue: Arc<dyn Queue> = ($queue)(stringify!($name)).await;
                        $crate::$name(queue.as_ref(), stringify!($name)).await;
                    }
                };
            }
            store_check!(a_put_reads_back_at_version_one_with_exact_decimals);
            store_check!(absent_keys_read_as_none_in_order);
            store_check!(a_stale_version_conflicts_and_writes_nothing);
            store_check!(expecting_absent_conflicts_when_present);
            store_check!(a_second_commit_of_one_event_is_refused_whole);
            store_check!(a_batch_with_one_applied_event_names_it_and_writes_nothing);
            store_check!(audit_reads_newest_first_and_by_id);
            store_check!(the_activity_feed_is_newest_first_across_entities);
            store_check!(list_returns_one_kind_ordered_by_key);
            store_check!(deletes_are_version_checked);
            queue_check!(a_message_is_received_then_deleted);
            queue_check!(a_message_not_deleted_comes_back_with_a_higher_count);
            queue_check!(a_fifo_group_is_delivered_in_order_one_in_flight);
            queue_check!(a_deduplicated_message_is_delivered_once);

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_writers_lose_no_update() {
                $crate::racing_writers_lose_no_update($store.await).await;
            }


            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_outbox_is_sent_only_with_its_commit() {
                let store: Arc<dyn Store> = $store.await;
                let queue: Arc<dyn Queue> = ($queue)("outbox").await;
                $crate::the_outbox_is_sent_only_with_its_commit(store.as_ref(), queue.clone(), "outbox", $relay).await;
            }

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_poison_message_ends_in_the_dead_letter_queue() {
                let queue: Arc<dyn Queue> = ($queue)("poison").await;
                let dlq = tally_core::ports::queues::dead_letter("poison");
                $crate::a_poison_message_ends_in_the_dead_letter_queue(queue.as_ref(), "poison", &dlq, $max).await;
            }
        }
    };
}
