//! What the fuzz targets share: a source and alias map like a merchant's,
//! so translation gets past lookups into the payload's own fields, and a
//! delivery built from fuzzer bytes.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tally_connectors::{Context, Headers, Mappings, Translated};
use tally_core::catalog::{Location, Platform, Product, Source};
use tally_core::inbound::Delivery;
use tally_core::{LocationId, Sku, SourceName};

pub const SECRET: &str = "fuzz-secret-0123456789";

/// A fixed "now", so a crash reproduces from its input alone.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap()
}

pub fn source(platform: Platform) -> Source {
    let body = json!({"platform": platform.as_str(), "secret": SECRET, "channel": "shop",
                      "default_location": "WH-AMS"});
    Source::parse(&SourceName::parse("shop").unwrap(), &body, None, now()).unwrap()
}

/// The aliases the fixtures in tests/events/ use.
pub fn mappings() -> Mappings {
    let products: Vec<Product> = [
        (
            "TSHIRT-M",
            json!([
                "shopify:39072856",
                "woocommerce:812",
                "shopware:0190a1b2c3d4e5f60718293a4b5c6d7e"
            ]),
        ),
        ("MUG-BLK", json!(["shopify:39072857", "woocommerce:813"])),
    ]
    .into_iter()
    .map(|(sku, aliases)| {
        Product::parse(
            &Sku::parse(sku).unwrap(),
            &json!({"currency": "USD", "aliases": aliases}),
            now(),
        )
        .unwrap()
    })
    .collect();
    let locations = vec![
        Location::parse(
            &LocationId::parse("WH-AMS").unwrap(),
            &json!({"aliases": ["shopify:71234567890"]}),
            now(),
        )
        .unwrap(),
    ];
    Mappings::new(&products, &locations)
}

/// Splits fuzzer input into a header value (up to the first newline) and
/// a body.
pub fn header_and_body(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::new(), data),
    }
}

/// Verifies and translates `body` as `platform` would deliver it, with the
/// given headers. Refusals must say why; nothing may panic.
pub fn deliver(platform: Platform, headers: Headers, body: &[u8]) {
    let _ = tally_connectors::verify(platform, SECRET, &headers, body, now());
    let _ = tally_connectors::count_events(platform, body);
    // As ingest keeps it.
    let text = String::from_utf8_lossy(body);
    let source = source(platform);
    let mappings = mappings();
    let ctx = Context {
        source: &source,
        mappings: &mappings,
        now: now(),
    };
    let delivery = Delivery {
        id: "fuzz".into(),
        source: SourceName::parse("shop").unwrap(),
        platform,
        received_at: now(),
        headers,
        body: text.into_owned(),
    };
    for Translated { result, .. } in tally_connectors::translate(&delivery, &ctx) {
        if let Err(reasons) = result {
            assert!(!reasons.is_empty(), "a refusal without a reason");
        }
    }
}

/// The first byte picks one of `topics`; the rest is the body.
pub fn topic_and_body<'a>(
    data: &'a [u8],
    topics: &[&'static str],
) -> Option<(&'static str, &'a [u8])> {
    let (first, body) = data.split_first()?;
    Some((topics[usize::from(*first) % topics.len()], body))
}
