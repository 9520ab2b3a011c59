//! A WooCommerce webhook: any body under each topic, correctly signed (so
//! translation runs) or with the fuzzer's own signature header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::catalog::Platform;
use tally_fuzz::{SECRET, deliver, header_and_body, topic_and_body};

const TOPICS: &[&str] = &[
    "order.created",
    "order.updated",
    "order.deleted",
    "product.updated",
    "product.created",
    "action.woocommerce_order_refunded",
];

fuzz_target!(|data: &[u8]| {
    let Some((topic, rest)) = topic_and_body(data, TOPICS) else {
        return;
    };
    let (header, body) = header_and_body(rest);
    let signature = if data[0] & 0x80 == 0 {
        tally_connectors::woocommerce::sign(SECRET, body)
    } else {
        header
    };
    let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
    let headers = [
        ("x-wc-webhook-topic".to_owned(), topic.to_owned()),
        ("x-wc-webhook-resource".to_owned(), resource.to_owned()),
        ("x-wc-webhook-event".to_owned(), event.to_owned()),
        (
            "x-wc-webhook-delivery-id".to_owned(),
            "fuzz-delivery".to_owned(),
        ),
        ("x-wc-webhook-signature".to_owned(), signature),
    ]
    .into();
    deliver(Platform::Woocommerce, headers, body);
});
