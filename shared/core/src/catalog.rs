//! What the merchant configures: sources that send events, locations that
//! hold stock, products with their cost, price and buffers.
//!
//! Each `parse_*` reads an admin request body and returns every reason it
//! refuses, each naming its field (a 422 at the edge).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::{Channel, Currency, LocationId, Money, Reasons, Sku, SourceName};

/// Shortest webhook secret accepted: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopify,
    Woocommerce,
    Shopware,
    /// Canonical events signed with `X-Tally-Signature` (ERP, WMS, feeds).
    Tally,
}

impl Platform {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "shopify" => Ok(Self::Shopify),
            "woocommerce" => Ok(Self::Woocommerce),
            "shopware" => Ok(Self::Shopware),
            "tally" => Ok(Self::Tally),
            other => Err(format!(
                "unknown platform {other:?}; expected shopify, woocommerce, shopware or tally"
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Woocommerce => "woocommerce",
            Self::Shopware => "shopware",
            Self::Tally => "tally",
        }
    }
}

/// A configured sender. The secret never leaves the store: `public_view`
/// is what the API shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub name: SourceName,
    pub platform: Platform,
    pub secret: String,
    pub channel: Channel,
    pub authoritative_stock: bool,
    /// Where this source's stock and shipments are, when its platform does
    /// not say (WooCommerce has one stock figure; Shopware's order states
    /// name no warehouse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_location: Option<LocationId>,
    /// What pushing to the channel needs (base URL and credentials).
    #[serde(default)]
    pub api: Map<String, Value>,
    pub updated_at: DateTime<Utc>,
}

/// Keys of `api` that may be shown; every other key is a credential.
const API_PUBLIC_KEYS: &[&str] = &[
    "base_url",
    "shop_domain",
    "api_version",
    "location_id",
    "currency_id",
];

impl Source {
    /// Reads `PUT /v1/sources/{name}`. An omitted secret keeps the existing
    /// one, since the API never shows it back.
    pub fn parse(
        name: &SourceName,
        body: &Value,
        existing: Option<&Source>,
        now: DateTime<Utc>,
    ) -> Result<Source, Reasons> {
        let mut r = Reasons::new();
        let Some(o) = body.as_object() else {
            r.push("body", "must be a JSON object");
            return Err(r);
        };
        let platform = match o.get("platform").and_then(Value::as_str) {
            Some(p) => Platform::parse(p).map_err(|e| r.push("platform", e)).ok(),
            None => {
                r.push(
                    "platform",
                    "missing; one of shopify, woocommerce, shopware, tally",
                );
                None
            }
        };
        let secret = match (o.get("secret"), existing) {
            (Some(Value::String(s)), _) if s.len() >= MIN_SECRET_LEN => Some(s.clone()),
            (Some(Value::String(_)), _) => {
                r.push(
                    "secret",
                    format!("must be at least {MIN_SECRET_LEN} characters"),
                );
                None
            }
            (None | Some(Value::Null), Some(e)) => Some(e.secret.clone()),
            (None | Some(Value::Null), None) => {
                r.push("secret", "missing");
                None
            }
            (Some(_), _) => {
                r.push("secret", "must be a string");
                None
            }
        };
        let channel = match o.get("channel") {
            None | Some(Value::Null) => Some(
                Channel::parse(name.as_str())
                    .unwrap_or_else(|_| unreachable!("a source name is a valid channel name")),
            ),
            Some(Value::String(s)) => Channel::parse(s).map_err(|e| r.push("channel", e)).ok(),
            Some(_) => {
                r.push("channel", "must be a string");
                None
            }
        };
        let authoritative_stock = match o.get("authoritative_stock") {
            None | Some(Value::Null) => platform.map(|p| p == Platform::Tally),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                r.push("authoritative_stock", "must be true or false");
                None
            }
        };
        let default_location = match o.get("default_location") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => LocationId::parse(s)
                .map_err(|e| r.push("default_location", e))
                .ok(),
            Some(_) => {
                r.push("default_location", "must be a string");
                None
            }
        };
        let api = match o.get("api") {
            None | Some(Value::Null) => existing.map(|e| e.api.clone()).or(Some(Map::new())),
            Some(Value::Object(m)) => {
                if m.values().any(|v| !v.is_string()) {
                    r.push("api", "every value must be a string");
                }
                if let Some(url) = m.get("base_url").and_then(Value::as_str)
                    && !(url.starts_with("https://") || url.starts_with("http://"))
                {
                    r.push("api.base_url", "must be an http(s) URL");
                }
                Some(m.clone())
            }
            Some(_) => {
                r.push("api", "must be an object");
                None
            }
        };
        match (platform, secret, channel, authoritative_stock, api) {
            (Some(platform), Some(secret), Some(channel), Some(authoritative_stock), Some(api))
                if r.is_empty() =>
            {
                Ok(Source {
                    name: name.clone(),
                    platform,
                    secret,
                    channel,
                    authoritative_stock,
                    default_location,
                    api,
                    updated_at: now,
                })
            }
            _ => Err(r),
        }
    }

    /// The source as the API and the audit log show it: no secret, and of
    /// `api` only the non-secret keys plus the names of the credentials set.
    pub fn public_view(&self) -> Value {
        let mut api = Map::new();
        let mut credentials = Vec::new();
        for (k, v) in &self.api {
            if API_PUBLIC_KEYS.contains(&k.as_str()) {
                api.insert(k.clone(), v.clone());
            } else {
                credentials.push(Value::String(k.clone()));
            }
        }
        api.insert("credentials_set".into(), Value::Array(credentials));
        serde_json::json!({
            "source": self.name,
            "platform": self.platform.as_str(),
            "channel": self.channel,
            "authoritative_stock": self.authoritative_stock,
            "default_location": self.default_location,
            "secret_set": !self.secret.is_empty(),
            "api": api,
            "updated_at": self.updated_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    /// Platform ids that mean this location, e.g. `shopify:655441491`.
    pub aliases: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl Location {
    pub fn parse(id: &LocationId, body: &Value, now: DateTime<Utc>) -> Result<Location, Reasons> {
        let mut r = Reasons::new();
        let Some(o) = body.as_object() else {
            r.push("body", "must be a JSON object");
            return Err(r);
        };
        let aliases = aliases(o, &mut r);
        r.into_result(Location {
            id: id.clone(),
            aliases,
            updated_at: now,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub sku: Sku,
    pub currency: Currency,
    #[serde(default)]
    pub unit_cost: Option<Decimal>,
    #[serde(default)]
    pub price: Option<Decimal>,
    /// Units held back at each location, never sold.
    #[serde(default)]
    pub safety_stock: u32,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Pricing guardrails; validated by the pricing workflow.
    #[serde(default)]
    pub policy: Map<String, Value>,
    /// Units held back from one channel's figure, per channel.
    #[serde(default)]
    pub channel_buffers: BTreeMap<Channel, u32>,
    /// The platform's own ids of this product, per channel, that pushing
    /// needs (`inventory_item_id`, `variant_id`, `product_id`, ...). A
    /// product without them for a channel is not pushed there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_refs: BTreeMap<Channel, BTreeMap<String, String>>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn parse(sku: &Sku, body: &Value, now: DateTime<Utc>) -> Result<Product, Reasons> {
        let mut r = Reasons::new();
        let Some(o) = body.as_object() else {
            r.push("body", "must be a JSON object");
            return Err(r);
        };
        let currency = match o.get("currency").and_then(Value::as_str) {
            Some(c) => Currency::parse(c).map_err(|e| r.push("currency", e)).ok(),
            None => {
                r.push("currency", "missing");
                None
            }
        };
        let mut money = |name: &str| match o.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Money::parse_amount(v).map_err(|e| r.push(name, e)).ok(),
        };
        let unit_cost = money("unit_cost");
        let price = money("price");
        let safety_stock = match o.get("safety_stock") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => n,
                None => {
                    r.push("safety_stock", "must be a whole number ≥ 0");
                    0
                }
            },
        };
        let aliases = aliases(o, &mut r);
        let policy = match o.get("policy") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                // Guardrails are checked when set, against this cost.
                if let Err(why) = crate::pricing::Policy::parse(m, unit_cost) {
                    r.0.extend(why.0);
                }
                m.clone()
            }
            Some(_) => {
                r.push("policy", "must be an object");
                Map::new()
            }
        };
        let mut channel_buffers = BTreeMap::new();
        match o.get("channel_buffers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let field = format!("channel_buffers.{k}");
                    let channel = Channel::parse(k).map_err(|e| r.push(&field, e)).ok();
                    let units = v.as_u64().and_then(|n| u32::try_from(n).ok());
                    if units.is_none() {
                        r.push(&field, "must be a whole number ≥ 0");
                    }
                    if let (Some(c), Some(n)) = (channel, units) {
                        channel_buffers.insert(c, n);
                    }
                }
            }
            Some(_) => r.push("channel_buffers", "must be an object of channel to units"),
        }
        let channel_refs = channel_refs(o, &mut r);
        match currency {
            Some(currency) if r.is_empty() => Ok(Product {
                sku: sku.clone(),
                currency,
                unit_cost,
                price,
                safety_stock,
                aliases,
                policy,
                channel_buffers,
                channel_refs,
                updated_at: now,
            }),
            _ => Err(r),
        }
    }
}

/// `channel_refs`: `{"<channel>": {"<id name>": "<id>"}}`, ids as strings
/// (numbers are accepted and kept as their digits).
fn channel_refs(
    o: &Map<String, Value>,
    r: &mut Reasons,
) -> BTreeMap<Channel, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match o.get("channel_refs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let field = format!("channel_refs.{k}");
                let channel = Channel::parse(k).map_err(|e| r.push(&field, e)).ok();
                let Some(ids) = v.as_object() else {
                    r.push(&field, "must be an object of id name to id");
                    continue;
                };
                let mut refs = BTreeMap::new();
                for (name, id) in ids {
                    match id {
                        Value::String(s) if !s.is_empty() => {
                            refs.insert(name.clone(), s.clone());
                        }
                        Value::Number(n) if n.is_u64() => {
                            refs.insert(name.clone(), n.to_string());
                        }
                        _ => r.push(
                            &format!("{field}.{name}"),
                            "must be a non-empty string or a whole number",
                        ),
                    }
                }
                if let Some(c) = channel {
                    out.insert(c, refs);
                }
            }
        }
        Some(_) => r.push(
            "channel_refs",
            "must be an object of channel to platform ids",
        ),
    }
    out
}

fn aliases(o: &Map<String, Value>, r: &mut Reasons) -> Vec<String> {
    match o.get("aliases") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) if is_alias(s) => out.push(s.to_owned()),
                    _ => r.push(
                        &format!("aliases[{i}]"),
                        "must be \"platform:id\", e.g. \"shopify:808950810\"",
                    ),
                }
            }
            out
        }
        Some(_) => {
            r.push("aliases", "must be an array of \"platform:id\" strings");
            vec![]
        }
    }
}

fn is_alias(s: &str) -> bool {
    matches!(s.split_once(':'), Some((p, id)) if !p.is_empty() && !id.is_empty() && s.len() <= 256)
}

/// Checks a well-formed event against what the merchant configured: every
/// SKU it names has a product, and money is in that product's currency.
/// Returns every reason, each naming the field.
pub fn check_event(event: &crate::event::Event, products: &BTreeMap<Sku, Product>) -> Reasons {
    use crate::event::EventBody;
    let mut r = Reasons::new();
    let mut known = |field: &str, sku: &Sku| -> Option<&Product> {
        let p = products.get(sku);
        if p.is_none() {
            r.push(
                field,
                format!(
                    "unknown SKU {:?}: no product is configured for it",
                    sku.as_str()
                ),
            );
        }
        p
    };
    let mut mismatched = vec![];
    match &event.body {
        EventBody::OrderPlaced(o) => {
            for (i, line) in o.lines.iter().enumerate() {
                if let Some(p) = known(&format!("data.lines[{i}].sku"), &line.sku)
                    && p.currency != o.currency
                {
                    mismatched.push((
                        "data.currency".to_owned(),
                        format!(
                            "{} does not match {}'s currency {}",
                            o.currency, line.sku, p.currency
                        ),
                    ));
                }
            }
        }
        EventBody::OrderFulfilled { lines, .. } => {
            for (i, line) in lines.iter().enumerate() {
                known(&format!("data.lines[{i}].sku"), &line.sku);
            }
        }
        EventBody::PriceCompetitorObserved { sku, currency, .. }
        | EventBody::ProductCostChanged { sku, currency, .. } => {
            if let Some(p) = known("data.sku", sku)
                && p.currency != *currency
            {
                mismatched.push((
                    "data.currency".to_owned(),
                    format!("{currency} does not match {sku}'s currency {}", p.currency),
                ));
            }
        }
        EventBody::StockCounted { sku, .. } | EventBody::StockAdjusted { sku, .. } => {
            known("data.sku", sku);
        }
        _ => {}
    }
    for (field, why) in mismatched {
        r.push(&field, why);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_source_never_shows_its_secret_or_credentials() {
        let name = SourceName::parse("shop").unwrap();
        let s = Source::parse(
            &name,
            &json!({"platform": "shopify", "secret": "0123456789abcdef-secret",
                    "api": {"base_url": "https://x.myshopify.com", "access_token": "shpat_123"}}),
            None,
            now(),
        )
        .unwrap();
        let shown = s.public_view().to_string();
        assert!(!shown.contains("0123456789abcdef-secret"));
        assert!(!shown.contains("shpat_123"));
        assert!(shown.contains("access_token"));
        assert_eq!(s.channel.as_str(), "shop");
        assert!(!s.authoritative_stock);
    }

    #[test]
    fn a_source_keeps_its_secret_when_none_is_sent() {
        let name = SourceName::parse("erp").unwrap();
        let first = Source::parse(
            &name,
            &json!({"platform": "tally", "secret": "a-long-enough-secret"}),
            None,
            now(),
        )
        .unwrap();
        assert!(first.authoritative_stock);
        let second =
            Source::parse(&name, &json!({"platform": "tally"}), Some(&first), now()).unwrap();
        assert_eq!(second.secret, "a-long-enough-secret");
    }

    #[test]
    fn a_bad_source_names_every_field() {
        let name = SourceName::parse("x").unwrap();
        let err = Source::parse(
            &name,
            &json!({"platform": "ebay", "secret": "short", "authoritative_stock": "yes"}),
            None,
            now(),
        )
        .unwrap_err()
        .to_string();
        for f in ["platform", "secret", "authoritative_stock"] {
            assert!(err.contains(f), "{f} not in {err}");
        }
    }

    #[test]
    fn a_product_parses_with_buffers_and_refuses_bad_money() {
        let sku = Sku::parse("A").unwrap();
        let p = Product::parse(
            &sku,
            &json!({"currency": "EUR", "unit_cost": "10.00", "price": "19.99",
                    "safety_stock": 2, "channel_buffers": {"bol": 5}, "aliases": ["shopify:1"]}),
            now(),
        )
        .unwrap();
        assert_eq!(p.channel_buffers[&Channel::parse("bol").unwrap()], 5);
        assert_eq!(p.price.unwrap().to_string(), "19.99");
        let err = Product::parse(
            &sku,
            &json!({"currency": "EUR", "price": "-1", "aliases": ["x"]}),
            now(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("price") && err.contains("aliases[0]"), "{err}");
    }

    #[test]
    fn an_event_naming_an_unknown_sku_or_another_currency_is_refused() {
        let sku = Sku::parse("A").unwrap();
        let p = Product::parse(&sku, &json!({"currency": "EUR"}), now()).unwrap();
        let products = BTreeMap::from([(sku, p)]);
        let e = crate::event::parse_event(
            &json!({"id": "1", "type": "order.placed", "occurred_at": "2026-01-01T00:00:00Z",
                    "data": {"order_id": "9", "channel": "c", "currency": "USD",
                             "lines": [{"sku": "A", "qty": 1, "unit_price": "1"},
                                       {"sku": "B", "qty": 1, "unit_price": "1"}]}}),
            now(),
        )
        .unwrap();
        let r = check_event(&e, &products).to_string();
        assert!(r.contains("data.lines[1].sku: unknown SKU \"B\""), "{r}");
        assert!(
            r.contains("data.currency: USD does not match A's currency EUR"),
            "{r}"
        );
    }
}
