//! Pricing inside guardrails.
//!
//! `decide` is the whole decision: given the policy and what is known now
//! (cost, current price, live stock and its age, recent sales, the lowest
//! fresh competitor price, the last change), it returns the new price or
//! why it holds, and every rule that bound it. It never prices below the
//! floor or above the ceiling, never moves further than `max_step_pct` from
//! a price inside them, and never moves on stale or missing stock data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::types::{Currency, Money, Reasons, Sku};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompetitorStrategy {
    Ignore,
    Match,
    Undercut,
}

/// The guardrails of one product, with the defaults a merchant gets when
/// they set none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub min_margin_pct: Option<Decimal>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    pub max_step_pct: Decimal,
    pub min_interval_s: u64,
    pub max_stock_age_s: u64,
    pub competitor_strategy: CompetitorStrategy,
    /// Amount below the lowest competitor when undercutting.
    pub undercut_by: Decimal,
    /// Competitor prices older than this are not used.
    pub competitor_max_age_s: u64,
    pub low_cover_days: Option<Decimal>,
    pub high_cover_days: Option<Decimal>,
    /// The fractional part every price ends in, e.g. 0.99.
    pub price_ending: Option<Decimal>,
    /// Moves larger than this wait for a person.
    pub approval_step_pct: Option<Decimal>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_margin_pct: None,
            min_price: None,
            max_price: None,
            max_step_pct: Decimal::TEN,
            min_interval_s: 3600,
            max_stock_age_s: 24 * 3600,
            competitor_strategy: CompetitorStrategy::Ignore,
            undercut_by: Decimal::new(1, 2),
            competitor_max_age_s: 24 * 3600,
            low_cover_days: None,
            high_cover_days: None,
            price_ending: None,
            approval_step_pct: None,
        }
    }
}

const FIELDS: &[&str] = &[
    "min_margin_pct",
    "min_price",
    "max_price",
    "max_step_pct",
    "min_interval_s",
    "max_stock_age_s",
    "competitor_strategy",
    "undercut_by",
    "competitor_max_age_s",
    "low_cover_days",
    "high_cover_days",
    "price_ending",
    "approval_step_pct",
];

/// Exactly two decimals, so 12.5 reads "12.50" everywhere.
fn two_places(d: Decimal) -> Decimal {
    let mut d = d;
    d.rescale(2);
    d
}

fn cents_up(d: Decimal) -> Decimal {
    two_places(d.round_dp_with_strategy(2, RoundingStrategy::AwayFromZero))
}

fn cents_down(d: Decimal) -> Decimal {
    two_places(d.round_dp_with_strategy(2, RoundingStrategy::ToZero))
}

impl Policy {
    /// Reads a product's `policy` object. Every refusal names its field as
    /// `policy.<field>`; `unit_cost` lets the margin floor be checked
    /// against the ceiling.
    pub fn parse(raw: &Map<String, Value>, unit_cost: Option<Decimal>) -> Result<Policy, Reasons> {
        let mut r = Reasons::new();
        let mut p = Policy::default();
        for k in raw.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            r.push(&format!("policy.{k}"), "unknown field");
        }
        let dec = |name: &str, r: &mut Reasons| -> Option<Decimal> {
            match raw.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => Money::parse_amount(v)
                    .map_err(|e| r.push(&format!("policy.{name}"), e))
                    .ok(),
            }
        };
        let secs = |name: &str, r: &mut Reasons| -> Option<u64> {
            match raw.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let n = v.as_u64();
                    if n.is_none() {
                        r.push(&format!("policy.{name}"), "must be whole seconds ≥ 0");
                    }
                    n
                }
            }
        };
        p.min_margin_pct = dec("min_margin_pct", &mut r);
        if p.min_margin_pct.is_some_and(|m| m >= Decimal::ONE_HUNDRED) {
            r.push("policy.min_margin_pct", "must be below 100");
        }
        p.min_price = dec("min_price", &mut r);
        p.max_price = dec("max_price", &mut r);
        if let (Some(lo), Some(hi)) = (p.min_price, p.max_price)
            && lo > hi
        {
            r.push("policy.min_price", format!("{lo} is above max_price {hi}"));
        }
        if let Some(step) = dec("max_step_pct", &mut r) {
            if step.is_zero() || step > Decimal::ONE_HUNDRED {
                r.push("policy.max_step_pct", "must be above 0 and at most 100");
            }
            p.max_step_pct = step;
        } else if raw.get("max_step_pct").is_some_and(|v| {
            v.as_str().is_some_and(|s| s.trim_start().starts_with('-'))
                || v.as_f64().is_some_and(|f| f < 0.0)
        }) {
            // parse_amount refused it as negative; say what is expected too.
            r.push("policy.max_step_pct", "must be above 0 and at most 100");
        }
        if let Some(n) = secs("min_interval_s", &mut r) {
            p.min_interval_s = n;
        }
        if let Some(n) = secs("max_stock_age_s", &mut r) {
            p.max_stock_age_s = n;
        }
        if let Some(n) = secs("competitor_max_age_s", &mut r) {
            p.competitor_max_age_s = n;
        }
        match raw.get("competitor_strategy") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_str() {
                Some("ignore") => p.competitor_strategy = CompetitorStrategy::Ignore,
                Some("match") => p.competitor_strategy = CompetitorStrategy::Match,
                Some("undercut") => p.competitor_strategy = CompetitorStrategy::Undercut,
                _ => r.push(
                    "policy.competitor_strategy",
                    format!("unknown strategy {v}; one of ignore, match, undercut"),
                ),
            },
        }
        if let Some(u) = dec("undercut_by", &mut r) {
            p.undercut_by = u;
        }
        p.low_cover_days = dec("low_cover_days", &mut r);
        p.high_cover_days = dec("high_cover_days", &mut r);
        if let (Some(lo), Some(hi)) = (p.low_cover_days, p.high_cover_days)
            && lo >= hi
        {
            r.push(
                "policy.low_cover_days",
                format!("{lo} is not below high_cover_days {hi}"),
            );
        }
        p.price_ending = dec("price_ending", &mut r);
        if p.price_ending.is_some_and(|e| e >= Decimal::ONE) {
            r.push(
                "policy.price_ending",
                "must be a fraction below 1, e.g. \"0.99\"",
            );
        }
        p.approval_step_pct = dec("approval_step_pct", &mut r);
        if p.approval_step_pct.is_some_and(|a| a.is_zero()) {
            r.push("policy.approval_step_pct", "must be above 0");
        }
        if r.is_empty()
            && let Some(ceiling) = p.ceiling()
            && p.floor(unit_cost) > ceiling
        {
            r.push(
                "policy.min_margin_pct",
                format!(
                    "with unit cost {} the floor {} is above max_price {ceiling}",
                    unit_cost.unwrap_or_default(),
                    p.floor(unit_cost)
                ),
            );
        }
        r.into_result(p)
    }

    /// The lowest price allowed: the larger of `min_price` and the margin
    /// floor `unit_cost / (1 − min_margin_pct/100)`, rounded up to the cent.
    pub fn floor(&self, unit_cost: Option<Decimal>) -> Decimal {
        let margin_floor = match (unit_cost, self.min_margin_pct) {
            (Some(c), Some(m)) => {
                let keep = Decimal::ONE - m / Decimal::ONE_HUNDRED;
                cents_up(c / keep)
            }
            _ => Decimal::ZERO,
        };
        margin_floor.max(self.min_price.map(cents_up).unwrap_or_default())
    }

    /// The highest price allowed, rounded down to the cent.
    pub fn ceiling(&self) -> Option<Decimal> {
        self.max_price.map(cents_down)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Changed,
    Held,
    PendingApproval,
}

/// One decision, applied or not, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    pub from: Decimal,
    pub to: Decimal,
    pub reasons: Vec<String>,
    pub inputs: Value,
}

/// What the decision knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub unit_cost: Option<Decimal>,
    pub current: Decimal,
    /// Available to sell across locations.
    pub available: u32,
    /// Units sold per day, recently.
    pub daily_sales: Decimal,
    /// `occurred_at` of the SKU's newest authoritative stock event.
    pub stock_event_at: Option<DateTime<Utc>>,
    pub competitors: BTreeMap<String, CompetitorPrice>,
    pub last_changed_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompetitorPrice {
    pub price: Decimal,
    pub at: DateTime<Utc>,
}

fn secs(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// The fractional ending nearest below `target` (or above, when below is
/// not allowed), e.g. 13.40 with ending 0.99 → 12.99.
fn with_ending(target: Decimal, ending: Decimal, lowest: Decimal, highest: Decimal) -> Decimal {
    let mut r = two_places(target.trunc() + ending);
    if r > target {
        r -= Decimal::ONE;
    }
    if r < lowest {
        r += Decimal::ONE;
    }
    if r > highest || r < lowest { target } else { r }
}

pub fn decide(policy: &Policy, i: &Inputs) -> Decision {
    let floor = policy.floor(i.unit_cost);
    let ceiling = policy.ceiling();
    let lowest_competitor = i
        .competitors
        .iter()
        .filter(|(_, c)| i.now - c.at <= secs(policy.competitor_max_age_s))
        .min_by_key(|(_, c)| c.price)
        .map(|(name, c)| (name.clone(), c.price));
    let cover_days = (!i.daily_sales.is_zero()).then(|| Decimal::from(i.available) / i.daily_sales);
    let inputs = json!({
        "unit_cost": i.unit_cost, "current": i.current, "floor": floor, "ceiling": ceiling,
        "available": i.available, "daily_sales": i.daily_sales.round_dp(3), "cover_days": cover_days.map(|c| c.round_dp(1)),
        "stock_age_s": i.stock_event_at.map(|t| (i.now - t).num_seconds()),
        "lowest_competitor": lowest_competitor.as_ref().map(|(n, p)| json!({"competitor": n, "price": p})),
        "since_last_change_s": i.last_changed_at.map(|t| (i.now - t).num_seconds()),
    });
    let held = |reasons: Vec<&str>| Decision {
        at: i.now,
        outcome: Outcome::Held,
        from: i.current,
        to: i.current,
        reasons: reasons.into_iter().map(str::to_owned).collect(),
        inputs: inputs.clone(),
    };
    // Never act on stale or missing stock data: the shelf may be empty.
    match i.stock_event_at {
        Some(t) if i.now - t <= secs(policy.max_stock_age_s) => {}
        _ => return held(vec!["stale_stock"]),
    }
    if i.last_changed_at
        .is_some_and(|t| i.now - t < secs(policy.min_interval_s))
    {
        return held(vec!["min_interval"]);
    }

    let mut reasons: Vec<&str> = vec![];
    let step = i.current * policy.max_step_pct / Decimal::ONE_HUNDRED;
    let (lowest_step, highest_step) = (i.current - step, i.current + step);
    let mut target = i.current;
    if let Some((_, price)) = &lowest_competitor {
        match policy.competitor_strategy {
            CompetitorStrategy::Ignore => {}
            CompetitorStrategy::Match => {
                target = *price;
                reasons.push("competitor");
            }
            CompetitorStrategy::Undercut => {
                target = *price - policy.undercut_by;
                reasons.push("competitor");
            }
        }
    }
    let no_sales_but_stock = cover_days.is_none() && i.available > 0;
    if let Some(low) = policy.low_cover_days
        && cover_days.is_some_and(|c| c < low)
    {
        target = target.max(highest_step);
        reasons.push("low_cover");
    } else if let Some(high) = policy.high_cover_days
        && (cover_days.is_some_and(|c| c > high) || no_sales_but_stock)
    {
        target = target.min(lowest_step);
        reasons.push("high_cover");
    }
    if target > highest_step {
        target = highest_step;
        reasons.push("max_step");
    } else if target < lowest_step {
        target = lowest_step;
        reasons.push("max_step");
    }
    // To the cent, toward the current price so rounding never widens a move.
    target = if target < i.current {
        cents_up(target)
    } else {
        cents_down(target)
    };
    if let Some(ending) = policy.price_ending
        && target != i.current
    {
        let lowest = floor.max(cents_up(lowest_step));
        let highest = ceiling
            .unwrap_or(Decimal::MAX)
            .min(cents_down(highest_step));
        let ended = with_ending(target, ending, lowest, highest);
        if ended != target {
            target = ended;
            reasons.push("rounding");
        }
    }
    // The hard limits last: nothing above may break them.
    if target < floor {
        target = floor;
        reasons.push("floor");
    }
    if let Some(c) = ceiling
        && target > c
    {
        target = c;
        reasons.push("ceiling");
    }
    let target = two_places(target);
    if target == i.current {
        if reasons.is_empty() {
            reasons.push("no_signal");
        }
        return held(reasons);
    }
    let moved_pct = if i.current.is_zero() {
        Decimal::ONE_HUNDRED
    } else {
        ((target - i.current) / i.current * Decimal::ONE_HUNDRED).abs()
    };
    let outcome = match policy.approval_step_pct {
        Some(limit) if moved_pct > limit => {
            reasons.push("approval_step");
            Outcome::PendingApproval
        }
        _ => Outcome::Changed,
    };
    Decision {
        at: i.now,
        outcome,
        from: i.current,
        to: target,
        reasons: reasons.into_iter().map(str::to_owned).collect(),
        inputs,
    }
}

/// Where a SKU's price stands: the price, the competitor prices seen, the
/// recent sales, and the last decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceRecord {
    pub sku: Sku,
    pub currency: Currency,
    pub price: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed_at: Option<DateTime<Utc>>,
    /// The audit record of the change that set `price`: a revert of any
    /// other change is refused as superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_audit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// A move waiting for a person; no second one is proposed meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_action: Option<String>,
    #[serde(default)]
    pub competitors: BTreeMap<String, CompetitorPrice>,
    /// Units reserved per day, the last few weeks.
    #[serde(default)]
    pub sales: BTreeMap<NaiveDate, u32>,
    pub updated_at: DateTime<Utc>,
}

/// Days of sales history used for days of cover.
pub const SALES_WINDOW_DAYS: i64 = 7;

impl PriceRecord {
    pub fn new(sku: Sku, currency: Currency, price: Decimal, now: DateTime<Utc>) -> Self {
        PriceRecord {
            sku,
            currency,
            price,
            last_changed_at: None,
            last_change_audit: None,
            last_decision: None,
            pending_action: None,
            competitors: BTreeMap::new(),
            sales: BTreeMap::new(),
            updated_at: now,
        }
    }

    pub fn record_sale(&mut self, units: u32, at: DateTime<Utc>) {
        *self.sales.entry(at.date_naive()).or_default() += units;
        let oldest = (at - Duration::days(4 * SALES_WINDOW_DAYS)).date_naive();
        self.sales.retain(|d, _| *d >= oldest);
    }

    /// Units per day over the window ending at `now`.
    pub fn daily_sales(&self, now: DateTime<Utc>) -> Decimal {
        let since = (now - Duration::days(SALES_WINDOW_DAYS)).date_naive();
        let units: u32 = self.sales.range(since..).map(|(_, n)| n).sum();
        Decimal::from(units) / Decimal::from(SALES_WINDOW_DAYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn policy(v: Value) -> Policy {
        Policy::parse(v.as_object().unwrap(), Some(dec!(10.00))).unwrap()
    }

    fn inputs(current: Decimal) -> Inputs {
        Inputs {
            unit_cost: Some(dec!(10.00)),
            current,
            available: 50,
            daily_sales: dec!(5),
            stock_event_at: Some(now() - Duration::minutes(10)),
            competitors: BTreeMap::new(),
            last_changed_at: None,
            now: now(),
        }
    }

    fn competitor(price: Decimal) -> BTreeMap<String, CompetitorPrice> {
        BTreeMap::from([(
            "rival".to_owned(),
            CompetitorPrice {
                price,
                at: now() - Duration::minutes(5),
            },
        )])
    }

    #[test]
    fn a_20_pct_margin_on_cost_10_floors_at_12_50_however_low_a_competitor_goes() {
        let p = policy(
            json!({"min_margin_pct": "20", "competitor_strategy": "match", "max_step_pct": "50"}),
        );
        assert_eq!(p.floor(Some(dec!(10.00))), dec!(12.50));
        let mut i = inputs(dec!(13.00));
        i.competitors = competitor(dec!(1.00));
        let d = decide(&p, &i);
        assert_eq!(d.to, dec!(12.50));
        assert!(d.reasons.contains(&"floor".to_owned()), "{:?}", d.reasons);
    }

    #[test]
    fn an_undercut_moves_within_the_step() {
        let p = policy(
            json!({"competitor_strategy": "undercut", "undercut_by": "0.50", "max_step_pct": "5"}),
        );
        let mut i = inputs(dec!(20.00));
        i.competitors = competitor(dec!(15.00));
        let d = decide(&p, &i);
        assert_eq!((d.outcome, d.to), (Outcome::Changed, dec!(19.00)));
        assert_eq!(d.reasons, ["competitor", "max_step"]);
    }

    #[test]
    fn stale_or_missing_stock_holds_the_price() {
        let p = policy(json!({"competitor_strategy": "match", "max_stock_age_s": 3600}));
        let mut i = inputs(dec!(20.00));
        i.competitors = competitor(dec!(18.00));
        i.stock_event_at = Some(now() - Duration::hours(2));
        assert_eq!(decide(&p, &i).reasons, ["stale_stock"]);
        i.stock_event_at = None;
        let d = decide(&p, &i);
        assert_eq!(
            (d.outcome, d.to, d.reasons.as_slice()),
            (Outcome::Held, dec!(20.00), &["stale_stock".to_owned()][..])
        );
    }

    #[test]
    fn changes_closer_than_the_interval_are_held() {
        let p = policy(json!({"competitor_strategy": "match", "min_interval_s": 600}));
        let mut i = inputs(dec!(20.00));
        i.competitors = competitor(dec!(19.00));
        i.last_changed_at = Some(now() - Duration::minutes(5));
        assert_eq!(decide(&p, &i).reasons, ["min_interval"]);
    }

    #[test]
    fn a_large_move_waits_for_approval() {
        let p = policy(
            json!({"competitor_strategy": "match", "max_step_pct": "30", "approval_step_pct": "10"}),
        );
        let mut i = inputs(dec!(20.00));
        i.competitors = competitor(dec!(16.00));
        let d = decide(&p, &i);
        assert_eq!((d.outcome, d.to), (Outcome::PendingApproval, dec!(16.00)));
    }

    #[test]
    fn low_cover_leans_up_high_cover_leans_down_and_endings_round() {
        let p = policy(
            json!({"low_cover_days": "3", "high_cover_days": "30", "max_step_pct": "10", "price_ending": "0.99"}),
        );
        let mut i = inputs(dec!(20.00));
        i.available = 5; // 1 day of cover
        let up = decide(&p, &i);
        assert_eq!(
            (up.to, up.reasons.as_slice()),
            (
                dec!(21.99),
                &["low_cover".to_owned(), "rounding".to_owned()][..]
            )
        );
        i.available = 500; // 100 days
        let down = decide(&p, &i);
        assert_eq!(down.to, dec!(18.99));
        assert!(down.reasons.contains(&"high_cover".to_owned()));
    }

    #[test]
    fn impossible_policies_name_their_field() {
        let bad = |v: Value| {
            Policy::parse(v.as_object().unwrap(), Some(dec!(10)))
                .unwrap_err()
                .to_string()
        };
        assert!(bad(json!({"min_margin_pct": "100"})).contains("policy.min_margin_pct"));
        assert!(bad(json!({"min_price": "20", "max_price": "10"})).contains("policy.min_price"));
        assert!(bad(json!({"max_step_pct": "0"})).contains("policy.max_step_pct"));
        assert!(bad(json!({"max_step_pct": "-5"})).contains("policy.max_step_pct"));
        assert!(
            bad(json!({"competitor_strategy": "guess"})).contains("policy.competitor_strategy")
        );
        assert!(
            bad(json!({"min_margin_pct": "50", "max_price": "15"})).contains("above max_price")
        );
        assert!(bad(json!({"max_step": "5"})).contains("policy.max_step: unknown field"));
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            prop::option::of(0u32..90),
            prop::option::of(0u32..3000),
            prop::option::of(3000u32..20000),
            1u32..50,
            prop::sample::select(vec![
                CompetitorStrategy::Ignore,
                CompetitorStrategy::Match,
                CompetitorStrategy::Undercut,
            ]),
            prop::option::of(prop::sample::select(vec![
                dec!(0.99),
                dec!(0.95),
                dec!(0.00),
            ])),
            prop::option::of((1u32..10, 10u32..60)),
        )
            .prop_map(|(margin, min, max, step, strategy, ending, cover)| Policy {
                min_margin_pct: margin.map(Decimal::from),
                min_price: min.map(|c| Decimal::new(c.into(), 2)),
                max_price: max.map(|c| Decimal::new(c.into(), 2)),
                max_step_pct: Decimal::from(step),
                competitor_strategy: strategy,
                price_ending: ending,
                low_cover_days: cover.map(|(l, _)| Decimal::from(l)),
                high_cover_days: cover.map(|(_, h)| Decimal::from(h)),
                ..Policy::default()
            })
    }

    proptest! {
        #[test]
        fn no_decision_breaks_floor_ceiling_step_or_freshness(
            p in arb_policy(),
            cost_cents in 1u32..5000,
            current_cents in 1u32..30000,
            competitor_cents in 1u32..30000,
            available in 0u32..1000,
            sold in 0u32..200,
            age_min in 0i64..3000,
        ) {
            let unit_cost = Some(Decimal::new(cost_cents.into(), 2));
            let floor = p.floor(unit_cost);
            let ceiling = p.ceiling();
            prop_assume!(ceiling.is_none_or(|c| floor <= c));
            let current = Decimal::new(current_cents.into(), 2);
            let i = Inputs {
                unit_cost,
                current,
                available,
                daily_sales: Decimal::from(sold) / Decimal::from(7),
                stock_event_at: Some(now() - Duration::minutes(age_min)),
                competitors: competitor(Decimal::new(competitor_cents.into(), 2)),
                last_changed_at: None,
                now: now(),
            };
            let d = decide(&p, &i);
            if d.outcome == Outcome::Held {
                // Holding keeps the price, even one set outside today's bounds.
                prop_assert_eq!(d.to, current);
            } else {
                prop_assert!(d.to >= floor, "{} below floor {}", d.to, floor);
                if let Some(c) = ceiling { prop_assert!(d.to <= c, "{} above ceiling {}", d.to, c); }
            }
            let inside = current >= floor && ceiling.is_none_or(|c| current <= c);
            if inside {
                let step = current * p.max_step_pct / Decimal::ONE_HUNDRED;
                prop_assert!((d.to - current).abs() <= step, "moved {} → {} beyond {}%", current, d.to, p.max_step_pct);
            }
            if Duration::minutes(age_min) > secs(p.max_stock_age_s) {
                prop_assert_eq!(d.to, current);
                prop_assert_eq!(d.outcome, Outcome::Held);
            }
            prop_assert_eq!(d.to.scale() <= 2, true);
        }
    }
}
