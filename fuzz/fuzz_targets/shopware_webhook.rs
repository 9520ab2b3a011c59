//! A Shopware 6 app webhook: any body, correctly signed (so the timestamp
//! check and translation run) or with the fuzzer's own signature header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::catalog::Platform;
use tally_fuzz::{SECRET, deliver, header_and_body};

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = header_and_body(rest);
    let signature = if first & 0x80 == 0 {
        tally_connectors::shopware::sign(SECRET, body)
    } else {
        header
    };
    let headers = [("shopware-shop-signature".to_owned(), signature)].into();
    deliver(Platform::Shopware, headers, body);
});
