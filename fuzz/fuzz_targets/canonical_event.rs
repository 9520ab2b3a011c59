//! The canonical event parser every translator ends in: any JSON value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::event::parse_event;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Err(reasons) = parse_event(&value, tally_fuzz::now()) {
        assert!(!reasons.is_empty(), "a refusal without a reason");
    }
});
