//! HMAC-SHA256 for every platform's signature, and the scheme Shopify and
//! WooCommerce share: a base64 HMAC of the raw body in one header.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Error, Headers};

/// The HMAC of `parts`, in order, keyed with `secret`; compare with its
/// `verify_slice` (constant time).
pub(crate) fn mac(secret: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    m
}

/// Checks `header` (lower-cased name; `shown` is how errors name it) in
/// constant time.
pub(crate) fn verify(
    header: &str,
    shown: &'static str,
    secret: &str,
    headers: &Headers,
    body: &[u8],
) -> Result<(), Error> {
    let value = headers.get(header).ok_or(Error::MissingSignature(shown))?;
    let expected = STANDARD
        .decode(value.trim())
        .map_err(|_| Error::MalformedSignature(shown))?;
    mac(secret, &[body])
        .verify_slice(&expected)
        .map_err(|_| Error::BadSignature)
}

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(mac(secret, &[body]).finalize().into_bytes())
}
