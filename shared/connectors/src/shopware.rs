//! Shopware 6 app webhooks (placeholder until the payload shapes are pinned).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tally_core::Reasons;
use tally_core::event::Event;

use crate::{Context, Error, Headers, reason};

pub const KEPT_HEADERS: &[&str] = &[];

pub fn verify(
    secret: &str,
    headers: &Headers,
    body: &[u8],
    _now: DateTime<Utc>,
) -> Result<(), Error> {
    let header = headers
        .get("shopware-shop-signature")
        .ok_or(Error::MissingSignature("shopware-shop-signature"))?;
    let expected = hex::decode(header.trim())
        .map_err(|_| Error::MalformedSignature("shopware-shop-signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| Error::BadSignature)
}

pub fn translate(_body: &Value, _ctx: &Context<'_>) -> Vec<Result<Event, Reasons>> {
    vec![Err(reason("data.event", "not yet handled"))]
}
