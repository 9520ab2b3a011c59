//! Tally's own scheme, for ERP, WMS and feed senders posting canonical
//! events to `POST /events/{source}`.
//!
//! `X-Tally-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
//! Signing the timestamp with the body makes a captured request useless
//! after five minutes; several `v1=` values may be sent while a secret is
//! being rotated.

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde_json::Value;
use tally_core::event::parse_event;
use tally_core::inbound::Delivery;

use crate::{Error, Headers, Translated, hmac_body};

pub const SIGNATURE_HEADER: &str = "x-tally-signature";
/// How far the signed timestamp may be from now, either way.
pub const TOLERANCE_S: i64 = 300;

fn mac(secret: &str, t: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    hmac_body::mac(secret, &[t.to_string().as_bytes(), b".", body])
}

/// The header value a sender puts on `body` at time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

pub fn verify(
    secret: &str,
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(Error::MissingSignature("X-Tally-Signature"))?;
    let malformed = Error::MalformedSignature("X-Tally-Signature");
    let mut t = None;
    let mut candidates = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| malformed.clone())?),
            Some(("v1", v)) => candidates.push(hex::decode(v).map_err(|_| malformed.clone())?),
            _ => {}
        }
    }
    let t = t.ok_or(malformed.clone())?;
    if candidates.is_empty() {
        return Err(malformed);
    }
    // Saturating: a timestamp at the edge of i64 is refused, not a panic.
    let skew = now.timestamp().saturating_sub(t);
    if skew.unsigned_abs() > TOLERANCE_S.unsigned_abs() {
        return Err(Error::StaleSignature(skew));
    }
    // verify_slice compares in constant time.
    if candidates
        .iter()
        .any(|c| mac(secret, t, body).verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// The events in a body: one canonical object or an array of them.
pub fn count_events(body: &[u8]) -> usize {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.len(),
        _ => 1,
    }
}

pub fn translate(delivery: &Delivery, now: DateTime<Utc>) -> Vec<Translated> {
    let items = match serde_json::from_str::<Value>(&delivery.body) {
        Ok(Value::Array(items)) => items,
        Ok(one) => vec![one],
        Err(e) => return vec![Translated::unreadable(&delivery.body, e)],
    };
    items
        .into_iter()
        .map(|item| Translated {
            result: parse_event(&item, now),
            payload: item.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "erp-secret-0123456789";

    fn headers(v: &str) -> Headers {
        Headers::from([(SIGNATURE_HEADER.to_owned(), v.to_owned())])
    }

    #[test]
    fn a_signature_made_by_sign_verifies() {
        let now = Utc::now();
        let h = headers(&sign(SECRET, now.timestamp(), b"{}"));
        assert_eq!(verify(SECRET, &h, b"{}", now), Ok(()));
    }

    #[test]
    fn a_changed_body_a_wrong_secret_and_an_old_timestamp_are_refused() {
        let now = Utc::now();
        let h = headers(&sign(SECRET, now.timestamp(), b"{}"));
        assert_eq!(verify(SECRET, &h, b"{ }", now), Err(Error::BadSignature));
        assert_eq!(
            verify("another-secret-xyz", &h, b"{}", now),
            Err(Error::BadSignature)
        );
        let old = headers(&sign(SECRET, now.timestamp() - 301, b"{}"));
        assert!(matches!(
            verify(SECRET, &old, b"{}", now),
            Err(Error::StaleSignature(301))
        ));
        assert!(matches!(
            verify(SECRET, &Headers::new(), b"{}", now),
            Err(Error::MissingSignature(_))
        ));
        assert!(matches!(
            verify(SECRET, &headers("t=x,v1=zz"), b"{}", now),
            Err(Error::MalformedSignature(_))
        ));
    }

    /// Found while fuzzing the header parser: `now - t` overflowed.
    #[test]
    fn timestamps_at_the_edges_of_i64_are_stale_not_a_panic() {
        let now = Utc::now();
        for t in [i64::MIN, i64::MAX] {
            let h = headers(&format!("t={t},v1={}", "00".repeat(32)));
            assert!(matches!(
                verify(SECRET, &h, b"{}", now),
                Err(Error::StaleSignature(_))
            ));
        }
    }

    #[test]
    fn any_of_several_signatures_may_match_during_rotation() {
        let now = Utc::now();
        let good = sign(SECRET, now.timestamp(), b"[]");
        let v1 = good.split_once("v1=").unwrap().1;
        let h = headers(&format!(
            "t={},v1={},v1={v1}",
            now.timestamp(),
            "00".repeat(32)
        ));
        assert_eq!(verify(SECRET, &h, b"[]", now), Ok(()));
    }
}
