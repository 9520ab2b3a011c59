//! A product's pricing policy, checked against a unit cost: every refusal
//! names its field, and what is accepted keeps floor ≤ ceiling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::pricing::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(raw)) = serde_json::from_slice(data) else {
        return;
    };
    let cost = raw
        .get("fuzz_unit_cost")
        .and_then(|v| tally_core::Money::parse_amount(v).ok());
    let mut raw = raw;
    raw.remove("fuzz_unit_cost");
    match Policy::parse(&raw, cost) {
        Ok(p) => {
            if let (Some(lo), Some(hi)) = (p.min_price, p.max_price) {
                assert!(lo <= hi, "accepted a floor above the ceiling");
            }
        }
        Err(reasons) => {
            assert!(!reasons.is_empty(), "a refusal without a reason");
            assert!(
                reasons.to_string().contains("policy."),
                "a refusal not naming its field: {reasons}"
            );
        }
    }
});
