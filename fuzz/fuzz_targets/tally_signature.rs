//! `X-Tally-Signature` and canonical JSON bodies (ERP, WMS, feeds): the
//! header parser with any header, and translation of any body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_core::catalog::Platform;
use tally_fuzz::{deliver, header_and_body};

fuzz_target!(|data: &[u8]| {
    let (header, body) = header_and_body(data);
    let headers = [("x-tally-signature".to_owned(), header)].into();
    deliver(Platform::Tally, headers, body);
});
