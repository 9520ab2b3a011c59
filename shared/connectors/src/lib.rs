//! tally-connectors: every platform's way of signing and shaping a delivery,
//! turned into canonical events.
//!
//! # Layout
//!
//! - [`tally`]: `X-Tally-Signature` and canonical JSON (ERP, WMS, feeds).
//! - [`shopify`], [`woocommerce`], [`shopware`]: each platform's signature,
//!   event identity and payload translation.
//! - [`mapping`]: platform ids to SKUs and locations (`aliases`).
//!
//! Each platform module offers `verify` (over the raw body, in constant
//! time) and `translate` (pure: a delivery in, canonical events or reasons
//! out). A translator builds canonical JSON and hands it to the core's
//! `parse_event`, so platform input is validated exactly like canonical
//! input. Nothing here does IO.

pub mod error;
mod hmac_body;
pub mod mapping;
pub mod push;
pub mod shopify;
pub mod shopware;
pub mod tally;
pub mod woocommerce;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tally_core::catalog::{Platform, Source};
use tally_core::event::{Event, parse_event};
use tally_core::inbound::Delivery;
use tally_core::{LocationId, Reasons};

pub use error::Error;
pub use mapping::Mappings;

/// Request headers by lower-cased name.
pub type Headers = BTreeMap<String, String>;

/// One event out of a delivery, or why it could not be one.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The part of the delivery this came from, kept for quarantine.
    pub payload: String,
    pub result: Result<Event, Reasons>,
}

impl Translated {
    fn unreadable(body: &str, e: serde_json::Error) -> Self {
        Translated {
            payload: body.to_owned(),
            result: Err(unreadable(e)),
        }
    }
}

/// Why a body could not be read: not JSON at all, or JSON of a shape the
/// translator cannot read (a list where the order's lines should be).
fn unreadable(e: serde_json::Error) -> Reasons {
    if e.is_data() {
        reason("body", format!("does not have the shape Tally reads: {e}"))
    } else {
        reason("body", format!("is not valid JSON: {e}"))
    }
}

/// What a translator knows besides the delivery itself.
pub struct Context<'a> {
    pub source: &'a Source,
    pub mappings: &'a Mappings,
    pub now: DateTime<Utc>,
}

impl Context<'_> {
    /// Maps a platform location id through the location aliases; with no id,
    /// the source's default location. Either way, a reason if none fits.
    pub fn location(
        &self,
        platform: Platform,
        id: Option<String>,
    ) -> (Option<LocationId>, Reasons) {
        let mut r = Reasons::new();
        let p = platform.as_str();
        let found = match id {
            Some(id) => {
                let l = self.mappings.location(platform, &id).cloned();
                if l.is_none() {
                    r.push(
                        "data.location",
                        format!(
                            "unknown {p} location {id}: add \"{p}:{id}\" to a location's aliases"
                        ),
                    );
                }
                l
            }
            None => {
                let l = self.source.default_location.clone();
                if l.is_none() {
                    r.push(
                        "data.location",
                        format!(
                            "{p} names no location and source {} has no default_location",
                            self.source.name
                        ),
                    );
                }
                l
            }
        };
        (found, r)
    }
}

fn reason(field: &str, problem: impl std::fmt::Display) -> Reasons {
    let mut r = Reasons::new();
    r.push(field, problem);
    r
}

/// Validates canonical JSON built by a translator; `extra` holds what the
/// translator itself found wrong (an unmapped id), so every reason is
/// reported together.
fn canonical(value: Value, extra: Reasons, now: DateTime<Utc>) -> Result<Event, Reasons> {
    match (parse_event(&value, now), extra.is_empty()) {
        (Ok(e), true) => Ok(e),
        (Ok(_), false) => Err(extra),
        (Err(mut r), _) => {
            r.0.extend(extra.0);
            Err(r)
        }
    }
}

/// A short, stable digest for identities built from content.
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// An id as platforms send it (number or string) as text.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The headers a platform's translator needs; the rest are not kept.
pub fn kept_headers(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Tally => &[],
        Platform::Shopify => shopify::KEPT_HEADERS,
        Platform::Woocommerce => woocommerce::KEPT_HEADERS,
        Platform::Shopware => shopware::KEPT_HEADERS,
    }
}

pub fn verify(
    platform: Platform,
    secret: &str,
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    match platform {
        Platform::Tally => tally::verify(secret, headers, body, now),
        Platform::Shopify => shopify::verify(secret, headers, body),
        Platform::Woocommerce => woocommerce::verify(secret, headers, body),
        Platform::Shopware => shopware::verify(secret, headers, body, now),
    }
}

/// Deliveries a platform sends to test the URL, carrying no data: answered
/// 2xx and not kept. (WooCommerce pings a new webhook, unsigned.)
pub fn is_ping(platform: Platform, headers: &Headers, body: &[u8]) -> bool {
    match platform {
        Platform::Woocommerce => woocommerce::is_ping(headers, body),
        _ => false,
    }
}

/// How many events a verified body carries, for the 202 answer.
pub fn count_events(platform: Platform, body: &[u8]) -> usize {
    match platform {
        Platform::Tally => tally::count_events(body),
        _ => 1,
    }
}

pub fn translate(delivery: &Delivery, ctx: &Context<'_>) -> Vec<Translated> {
    if delivery.platform == Platform::Tally {
        return tally::translate(delivery, ctx.now);
    }
    let results = match delivery.platform {
        Platform::Shopify => shopify::translate(&delivery.headers, &delivery.body, ctx),
        platform => {
            let body: Value = match serde_json::from_str(&delivery.body) {
                Ok(v) => v,
                Err(e) => return vec![Translated::unreadable(&delivery.body, e)],
            };
            match platform {
                Platform::Woocommerce => woocommerce::translate(&delivery.headers, &body, ctx),
                Platform::Shopware => shopware::translate(&body, ctx),
                Platform::Shopify | Platform::Tally => unreachable!("handled above"),
            }
        }
    };
    results
        .into_iter()
        .map(|result| Translated {
            payload: delivery.body.clone(),
            result,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx_source(platform: Platform) -> Source {
        Source::parse(
            &tally_core::SourceName::parse("s").unwrap(),
            &serde_json::json!({"platform": platform.as_str(), "secret": "0123456789abcdef",
                                 "default_location": "WH"}),
            None,
            Utc::now(),
        )
        .unwrap()
    }

    fn delivery(platform: Platform, headers: Headers, body: String) -> Delivery {
        Delivery {
            id: "d".into(),
            source: tally_core::SourceName::parse("s").unwrap(),
            platform,
            received_at: Utc::now(),
            headers,
            body,
        }
    }

    const PLATFORMS: [Platform; 4] = [
        Platform::Tally,
        Platform::Shopify,
        Platform::Woocommerce,
        Platform::Shopware,
    ];

    fn headers_for(platform: Platform, topic: &str) -> Headers {
        let mut h = Headers::new();
        match platform {
            Platform::Shopify => {
                h.insert("x-shopify-topic".into(), topic.into());
                h.insert("x-shopify-webhook-id".into(), "w".into());
            }
            Platform::Woocommerce => {
                h.insert("x-wc-webhook-topic".into(), topic.into());
            }
            _ => {}
        }
        h
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z_.]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("line_items".to_owned()),
                        Just("sku".to_owned()),
                        Just("quantity".to_owned()),
                        Just("id".to_owned()),
                        Just("data".to_owned()),
                        Just("payload".to_owned()),
                        Just("order".to_owned()),
                        Just("lineItems".to_owned()),
                        Just("status".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn no_translator_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), topic in "[a-z_./]{0,24}") {
            let mappings = Mappings::default();
            for platform in PLATFORMS {
                let source = ctx_source(platform);
                let ctx = Context { source: &source, mappings: &mappings, now: Utc::now() };
                let body = String::from_utf8_lossy(&bytes).into_owned();
                let out = translate(&delivery(platform, headers_for(platform, &topic), body), &ctx);
                for t in out {
                    // Refused input always says why.
                    prop_assert!(t.result.err().is_none_or(|r| !r.is_empty()));
                }
                let _ = verify(platform, "0123456789abcdef", &headers_for(platform, &topic), &bytes, Utc::now());
            }
        }

        #[test]
        fn no_translator_panics_on_random_json(v in arb_json()) {
            let mappings = Mappings::default();
            for platform in PLATFORMS {
                let source = ctx_source(platform);
                let ctx = Context { source: &source, mappings: &mappings, now: Utc::now() };
                for topic in ["orders/create", "orders/cancelled", "orders/fulfilled", "refunds/create",
                              "inventory_levels/update", "order.created", "order.updated", "product.updated"] {
                    let out = translate(&delivery(platform, headers_for(platform, topic), v.to_string()), &ctx);
                    for t in out {
                        prop_assert!(t.result.err().is_none_or(|r| !r.is_empty()));
                    }
                }
            }
        }
    }
}

/// Helpers for the translators' fixture tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use tally_core::catalog::{Location, Product};
    use tally_core::{LocationId, Sku, SourceName};

    pub fn source(platform: Platform, default_location: Option<&str>) -> Source {
        let mut body = serde_json::json!({"platform": platform.as_str(), "secret": "0123456789abcdef", "channel": "shop"});
        if let Some(l) = default_location {
            body["default_location"] = serde_json::json!(l);
        }
        Source::parse(&SourceName::parse("shop").unwrap(), &body, None, Utc::now()).unwrap()
    }

    pub fn mappings(
        product_aliases: &[(&str, &str)],
        location_aliases: &[(&str, &str)],
    ) -> Mappings {
        let products: Vec<Product> = product_aliases
            .iter()
            .map(|(sku, alias)| {
                Product::parse(
                    &Sku::parse(sku).unwrap(),
                    &serde_json::json!({"currency": "USD", "aliases": [alias]}),
                    Utc::now(),
                )
                .unwrap()
            })
            .collect();
        let locations: Vec<Location> = location_aliases
            .iter()
            .map(|(id, alias)| {
                Location::parse(
                    &LocationId::parse(id).unwrap(),
                    &serde_json::json!({"aliases": [alias]}),
                    Utc::now(),
                )
                .unwrap()
            })
            .collect();
        Mappings::new(&products, &locations)
    }

    pub fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}
