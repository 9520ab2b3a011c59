//! The ledger step on a real store under a long randomized load: concurrent
//! reservations on a few hot SKUs, duplicate deliveries, reordered events,
//! counts and adjustments racing orders, cancels that may arrive before
//! their order. Afterwards it checks what must hold whatever the
//! interleaving:
//!
//! - every distinct event was applied exactly once (0 lost, 0 doubled), every
//!   other delivery of it answered as a duplicate;
//! - each location's `reserved` equals the sum of the reservations the
//!   orders still hold (no lost update, no double release);
//! - on the hot SKUs, which only ever gain stock after their first count,
//!   `reserved` never exceeds `on_hand` (0 oversell) and `on_hand` is exactly
//!   the first count plus every restock once.
//!
//! `SoakPlan::from_env` reads `TALLY_SOAK_OPS` / `TALLY_SOAK_SEED`, so the
//! short run of the test command and the documented 10⁶-operation run are
//! the same test (docs/reliability.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use tally_app::Tally;
use tally_app::pipeline::Outcome;
use tally_core::entity::Key;
use tally_core::event::{Event, EventBody, OrderLine, OrderPlaced};
use tally_core::ledger::OrderStatus;
use tally_core::ports::{Queue, Store};
use tally_core::{Channel, Currency, LocationId, OrderId, Quantity, Sku, SourceName};

const HOT: usize = 3;
const RACING: usize = 3;
const LOCATIONS: [&str; 2] = ["W1", "W2"];
const FIRST_COUNT: u32 = 30;
/// Events generated per round; a round's deliveries are shuffled and raced
/// by the workers, and duplicates reach back into the round before.
const ROUND: usize = 1_000;

#[derive(Debug, Clone, Copy)]
pub struct SoakPlan {
    /// Ledger operations (deliveries, duplicates included) to run.
    pub operations: u64,
    pub workers: usize,
    /// Deliveries a worker takes at a time and applies as one batch
    /// (`Tally::apply_in_units`, as update-stock does with an SQS batch);
    /// 1 applies each alone.
    pub batch: usize,
    pub seed: u64,
}

impl SoakPlan {
    /// `TALLY_SOAK_OPS`, `TALLY_SOAK_WORKERS`, `TALLY_SOAK_BATCH` and
    /// `TALLY_SOAK_SEED` override the defaults.
    pub fn from_env(default_operations: u64, workers: usize, batch: usize) -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            operations: var("TALLY_SOAK_OPS").unwrap_or(default_operations),
            workers: var("TALLY_SOAK_WORKERS").map_or(workers, |w| w as usize),
            batch: var("TALLY_SOAK_BATCH").map_or(batch, |b| b as usize).max(1),
            seed: var("TALLY_SOAK_SEED").unwrap_or(0x7a11_5eed),
        }
    }
}

#[derive(Debug, Default)]
pub struct SoakReport {
    pub operations: u64,
    pub distinct_events: u64,
    pub duplicates: u64,
    pub orders: u64,
    pub orders_reserved_at_end: u64,
    pub orders_short: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations ({} distinct events, {} duplicate deliveries) in {:.1?} \
             ({:.0} ops/s); {} orders: {} short, {} still reserved; \
             0 lost, 0 doubled, 0 oversold",
            self.operations,
            self.distinct_events,
            self.duplicates,
            self.elapsed,
            self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.orders,
            self.orders_short,
            self.orders_reserved_at_end,
        )
    }
}

/// splitmix64: a seeded, reproducible stream (a failing seed reruns as is).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One generated event and what the checks need to know of it.
struct Generated {
    event: Event,
    restock: Option<(usize, usize, u32)>,
}

struct World {
    run: String,
    hot: Vec<Sku>,
    racing: Vec<Sku>,
    locations: Vec<LocationId>,
    orders: Vec<OrderId>,
    next_event: usize,
    epoch: DateTime<Utc>,
}

impl World {
    fn new(run: &str) -> Self {
        let sku = |kind: &str, i: usize| Sku::parse(&format!("{run}-{kind}{i}")).expect("sku");
        Self {
            run: run.to_owned(),
            hot: (0..HOT).map(|i| sku("HOT", i)).collect(),
            racing: (0..RACING).map(|i| sku("RACE", i)).collect(),
            locations: LOCATIONS
                .iter()
                .map(|l| LocationId::parse(l).expect("location"))
                .collect(),
            orders: vec![],
            next_event: 0,
            epoch: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn event(&mut self, seconds: i64, body: EventBody) -> Event {
        let id = format!("{}-e{}", self.run, self.next_event);
        self.next_event += 1;
        Event {
            id,
            occurred_at: self.epoch + chrono::Duration::seconds(seconds),
            body,
        }
    }

    fn count(&mut self, at: i64, sku: Sku, location: usize, on_hand: u32) -> Event {
        let location = self.locations[location].clone();
        self.event(
            at,
            EventBody::StockCounted {
                sku,
                location,
                on_hand: Quantity::new(on_hand).expect("quantity"),
            },
        )
    }

    fn generate(&mut self, rng: &mut Rng) -> Generated {
        let now = self.next_event as i64;
        let mut restock = None;
        let event = match rng.below(100) {
            // An order of one to three lines, mostly on the hot SKUs.
            0..=54 => {
                let order_id = OrderId::parse(&format!("{}-o{}", self.run, self.orders.len()))
                    .expect("order id");
                self.orders.push(order_id.clone());
                let lines = (0..=rng.below(3))
                    .map(|_| {
                        let sku = if rng.below(4) == 0 {
                            self.racing[rng.below(RACING)].clone()
                        } else {
                            self.hot[rng.below(HOT)].clone()
                        };
                        OrderLine {
                            sku,
                            qty: Quantity::new(1 + rng.below(3) as u32).expect("quantity"),
                            unit_price: Decimal::new(1999, 2),
                        }
                    })
                    .collect();
                self.event(
                    now,
                    EventBody::OrderPlaced(OrderPlaced {
                        order_id,
                        channel: Channel::parse("soak").expect("channel"),
                        currency: Currency::parse("EUR").expect("currency"),
                        lines,
                        ship_to: None,
                        total: None,
                    }),
                )
            }
            // A cancel, of a recent order or of one not placed yet (it may
            // overtake its order).
            55..=74 => {
                let n = self.orders.len() + 2;
                let pick = n.saturating_sub(1 + rng.below(n.min(2 * ROUND)));
                let order_id = OrderId::parse(&format!("{}-o{pick}", self.run)).expect("order id");
                self.event(
                    now,
                    EventBody::OrderCancelled {
                        order_id,
                        reason: None,
                    },
                )
            }
            // A restock of a hot SKU: hot SKUs only ever gain after their
            // first count, so their on_hand is exactly known.
            75..=84 => {
                let (s, l, units) = (rng.below(HOT), rng.below(LOCATIONS.len()), 1 + rng.below(4));
                restock = Some((s, l, units as u32));
                let (sku, location) = (self.hot[s].clone(), self.locations[l].clone());
                self.event(
                    now,
                    EventBody::StockAdjusted {
                        sku,
                        location,
                        delta: units as i64,
                        reason: "restock".into(),
                    },
                )
            }
            // A count of a racing SKU, sometimes older than what the ledger
            // already knows (stale), racing the orders on it.
            85..=94 => {
                let (s, l) = (rng.below(RACING), rng.below(LOCATIONS.len()));
                let at = now - rng.below(50) as i64;
                self.count(at, self.racing[s].clone(), l, rng.below(25) as u32)
            }
            // A shrinkage or find on a racing SKU.
            _ => {
                let (s, l) = (rng.below(RACING), rng.below(LOCATIONS.len()));
                let (sku, location) = (self.racing[s].clone(), self.locations[l].clone());
                self.event(
                    now,
                    EventBody::StockAdjusted {
                        sku,
                        location,
                        delta: rng.below(7) as i64 - 3,
                        reason: "cycle count".into(),
                    },
                )
            }
        };
        Generated { event, restock }
    }
}

fn event_number(id: &str) -> usize {
    id.rsplit_once("-e")
        .and_then(|(_, n)| n.parse().ok())
        .expect("soak event id")
}

/// Runs `plan` through `Tally::apply_to_ledger` on `store`, then checks the
/// invariants above. Panics with what broke.
pub async fn ledger_soak(
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    plan: SoakPlan,
) -> SoakReport {
    let tally = Tally::new(store, queue);
    let source = SourceName::parse("soak").expect("source");
    let run = format!("soak{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut world = World::new(&run);
    let mut rng = Rng(plan.seed);
    let started = Instant::now();

    // First counts, applied before the race starts.
    let mut on_hand: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for s in 0..HOT {
        for l in 0..LOCATIONS.len() {
            let e = world.count(0, world.hot[s].clone(), l, FIRST_COUNT);
            on_hand.insert((s, l), u64::from(FIRST_COUNT));
            let outcome = tally
                .apply_to_ledger(&source, &e)
                .await
                .expect("first count");
            assert!(matches!(outcome, Outcome::Applied));
        }
    }
    for s in 0..RACING {
        for l in 0..LOCATIONS.len() {
            let e = world.count(0, world.racing[s].clone(), l, FIRST_COUNT);
            tally
                .apply_to_ledger(&source, &e)
                .await
                .expect("first count");
        }
    }
    let first_events = world.next_event;

    let mut applied: Vec<u32> = vec![];
    let mut report = SoakReport::default();
    let mut previous: Vec<Event> = vec![];
    while report.operations < plan.operations {
        let this_round = (plan.operations - report.operations).min(ROUND as u64) as usize;
        let mut deliveries: Vec<Event> = vec![];
        let mut fresh: Vec<Event> = vec![];
        while deliveries.len() < this_round {
            // One delivery in eight is a redelivery of a recent event.
            let pool = previous.len() + fresh.len();
            if pool > 0 && rng.below(8) == 0 {
                let k = rng.below(pool);
                let again = if k < previous.len() {
                    previous[k].clone()
                } else {
                    fresh[k - previous.len()].clone()
                };
                deliveries.push(again);
                continue;
            }
            let g = world.generate(&mut rng);
            if let Some((s, l, units)) = g.restock {
                *on_hand.get_mut(&(s, l)).expect("hot stock") += u64::from(units);
            }
            fresh.push(g.event.clone());
            deliveries.push(g.event);
        }
        rng.shuffle(&mut deliveries);

        let outcomes = race(&tally, &source, deliveries, plan.workers, plan.batch).await;
        applied.resize(world.next_event, 0);
        for (id, outcome) in outcomes {
            report.operations += 1;
            match outcome {
                Outcome::Applied => applied[event_number(&id)] += 1,
                Outcome::Duplicate => report.duplicates += 1,
                other => panic!("{id}: unexpected outcome {other:?}"),
            }
        }
        previous = fresh;
    }
    report.elapsed = started.elapsed();
    report.distinct_events = (world.next_event - first_events) as u64;

    // Exactly once: every generated event applied once, whatever its
    // duplicates and their order.
    let lost: Vec<usize> = (first_events..world.next_event)
        .filter(|&n| applied.get(n).copied().unwrap_or(0) == 0)
        .collect();
    let doubled: Vec<usize> = (first_events..world.next_event)
        .filter(|&n| applied.get(n).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        lost.is_empty(),
        "{} events never applied: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        doubled.is_empty(),
        "{} events applied twice: {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );

    check_state(&tally, &world, &on_hand, &mut report).await;
    report
}

/// The workers take deliveries in turn from one list, `batch` at a time,
/// and apply them concurrently, as Lambda instances or `tally serve`'s
/// workers would.
async fn race(
    tally: &Tally,
    source: &SourceName,
    deliveries: Vec<Event>,
    workers: usize,
    batch: usize,
) -> Vec<(String, Outcome)> {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (tally, source) = (tally.clone(), source.clone());
        let (deliveries, next) = (Arc::clone(&deliveries), Arc::clone(&next));
        tasks.spawn(async move {
            let mut out = vec![];
            loop {
                let i = next.fetch_add(batch, Ordering::Relaxed);
                let Some(taken) = deliveries.get(i..(i + batch).min(deliveries.len())) else {
                    break;
                };
                if taken.is_empty() {
                    break;
                }
                let items: Vec<(SourceName, Event)> =
                    taken.iter().map(|e| (source.clone(), e.clone())).collect();
                for (e, outcome) in taken.iter().zip(tally.apply_in_units(&items).await) {
                    let outcome = outcome.unwrap_or_else(|err| panic!("{}: {err}", e.id));
                    out.push((e.id.clone(), outcome));
                }
            }
            out
        });
    }
    let mut all = vec![];
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("worker"));
    }
    all
}

async fn check_state(
    tally: &Tally,
    world: &World,
    on_hand: &BTreeMap<(usize, usize), u64>,
    report: &mut SoakReport,
) {
    // What the orders still hold, per SKU and location.
    let mut held: HashMap<(Sku, LocationId), u64> = HashMap::new();
    report.orders = world.orders.len() as u64;
    for chunk in world.orders.chunks(100) {
        let keys: Vec<Key> = chunk.iter().map(Key::order).collect();
        for order in tally
            .store
            .get(&keys)
            .await
            .expect("read orders")
            .into_iter()
            .flatten()
        {
            let Some(order) = order.value.as_order() else {
                panic!("not an order record: {:?}", order.value);
            };
            match order.status {
                OrderStatus::Reserved => report.orders_reserved_at_end += 1,
                OrderStatus::Short => report.orders_short += 1,
                _ => {}
            }
            if order.status != OrderStatus::Reserved {
                assert!(
                    order.reservations.is_empty(),
                    "{}: {:?} yet holds stock",
                    order.order_id,
                    order.status
                );
            }
            for a in &order.reservations {
                *held.entry((a.sku.clone(), a.location.clone())).or_default() += u64::from(a.qty);
            }
        }
    }

    let skus: Vec<Sku> = world.hot.iter().chain(&world.racing).cloned().collect();
    let keys: Vec<Key> = skus.iter().map(Key::stock).collect();
    let stocks = tally.store.get(&keys).await.expect("read stock");
    for (i, (sku, stock)) in skus.iter().zip(stocks).enumerate() {
        let stock = stock
            .and_then(|v| v.value.as_stock().cloned())
            .unwrap_or_else(|| panic!("{sku}: no stock record"));
        for (l, location) in world.locations.iter().enumerate() {
            let at = stock.locations.get(location).cloned().unwrap_or_default();
            let holds = held
                .get(&(sku.clone(), location.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                u64::from(at.reserved),
                holds,
                "{sku}@{location}: reserved {} but the orders hold {holds}",
                at.reserved
            );
            if i < HOT {
                let expected = on_hand[&(i, l)];
                assert_eq!(u64::from(at.on_hand), expected, "{sku}@{location}: on_hand");
                assert!(
                    at.reserved <= at.on_hand,
                    "{sku}@{location}: oversold, {} reserved of {}",
                    at.reserved,
                    at.on_hand
                );
            }
        }
    }
}
