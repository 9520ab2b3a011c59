//! The admin API's bodies: sources (with channel credentials), locations and
//! products (with their pricing policy), as `PUT /v1/...` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::catalog::{Location, Product, Source};
use tally_core::{LocationId, Sku, SourceName};
use tally_fuzz::now;

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let refused = match which % 3 {
        0 => {
            let name = SourceName::parse("shop").unwrap();
            let existing = tally_fuzz::source(tally_core::catalog::Platform::Shopify);
            Source::parse(&name, &value, Some(&existing), now()).err()
        }
        1 => Location::parse(&LocationId::parse("WH-AMS").unwrap(), &value, now()).err(),
        _ => Product::parse(&Sku::parse("TSHIRT-M").unwrap(), &value, now()).err(),
    };
    if let Some(reasons) = refused {
        assert!(!reasons.is_empty(), "a refusal without a reason");
    }
});
