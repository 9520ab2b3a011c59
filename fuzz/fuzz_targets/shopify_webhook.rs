//! A Shopify webhook: any body under each topic, correctly signed (so
//! translation runs) or with the fuzzer's own HMAC header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::catalog::Platform;
use tally_fuzz::{SECRET, deliver, header_and_body, topic_and_body};

const TOPICS: &[&str] = &[
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/fulfilled",
    "refunds/create",
    "inventory_levels/update",
    "products/update",
    "app/uninstalled",
];

fuzz_target!(|data: &[u8]| {
    let Some((topic, rest)) = topic_and_body(data, TOPICS) else {
        return;
    };
    let (header, body) = header_and_body(rest);
    let hmac = if data[0] & 0x80 == 0 {
        tally_connectors::shopify::sign(SECRET, body)
    } else {
        header
    };
    let headers = [
        ("x-shopify-topic".to_owned(), topic.to_owned()),
        ("x-shopify-event-id".to_owned(), "fuzz-event".to_owned()),
        ("x-shopify-hmac-sha256".to_owned(), hmac),
    ]
    .into();
    deliver(Platform::Shopify, headers, body);
});
