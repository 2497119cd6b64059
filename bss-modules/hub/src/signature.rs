//! How a delivery is signed and how a receiver checks it. The worker sends the event body
//! with `X-Tollgate-Timestamp: <Unix seconds of this attempt>` and
//! `X-Tollgate-Signature: v1=<hex HMAC-SHA256>`, the MAC computed with the listener's
//! secret (its UTF-8 bytes, prefix included) over `timestamp + "." + body`. A receiver
//! recomputes it over the exact bytes it received, compares in constant time ([`verify`]
//! does, with ring), refuses a timestamp further than its tolerance from its own clock
//! (a replayed request is refused once it is that old), and de-duplicates by
//! `X-Tollgate-Event-Id` (the same in every attempt: delivery is at least once).

use ring::hmac;

use crate::error::{HubError, Result};

/// The header carrying the event's id, stable across attempts.
pub const EVENT_ID_HEADER: &str = "x-tollgate-event-id";
/// The header carrying the event's type.
pub const EVENT_TYPE_HEADER: &str = "x-tollgate-event-type";
/// The header carrying the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-tollgate-timestamp";
/// The header carrying `v1=` and the signature in lowercase hex.
pub const SIGNATURE_HEADER: &str = "x-tollgate-signature";
/// The header carrying which attempt this is (1 the first time).
pub const ATTEMPT_HEADER: &str = "x-tollgate-delivery-attempt";
/// The seconds a receiver should accept between a timestamp and its clock: the
/// default of [`verify`]'s callers in this repository.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

const VERSION: &str = "v1=";

/// `timestamp + "." + body`, the signed message.
fn message(timestamp_s: i64, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 21);
    message.extend_from_slice(timestamp_s.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

/// The `X-Tollgate-Signature` value for `body` sent at `timestamp_s`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, &message(timestamp_s, body));
    let mut out = String::from(VERSION);
    for byte in tag.as_ref() {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// What a receiver does with a delivery: `Ok` if `signature` (the header's value) is the
/// MAC of `timestamp + "." + body` under `secret` and the timestamp is within
/// `tolerance_s` of `now_s`; else `Signature` saying why.
pub fn verify(secret: &str, timestamp: &str, signature: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> Result<()> {
    let refuse = |reason| Err(HubError::Signature { reason });
    let Ok(timestamp_s) = timestamp.trim().parse::<i64>() else { return refuse("the timestamp is not a number") };
    if now_s.abs_diff(timestamp_s) > tolerance_s.unsigned_abs() {
        return refuse("the timestamp is outside the tolerance (a replay, or a clock far off)");
    }
    let Some(hex) = signature.trim().strip_prefix(VERSION) else { return refuse("the signature is not v1=…") };
    let Some(tag) = unhex(hex) else { return refuse("the signature is not hex") };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    match hmac::verify(&key, &message(timestamp_s, body), &tag) {
        Ok(()) => Ok(()),
        Err(_) => refuse("the signature does not match"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_refuses_it() {
        let body = br#"{"eventId":"e1"}"#;
        let signature = sign("tghs_k", 1_750_000_000, body);
        assert!(signature.starts_with("v1=") && signature.len() == 3 + 64, "{signature}");
        assert!(verify("tghs_k", "1750000000", &signature, body, 1_750_000_100, 300).is_ok());
        let refused = |secret, timestamp, signature: &str, body: &[u8], now| {
            matches!(verify(secret, timestamp, signature, body, now, 300), Err(HubError::Signature { .. }))
        };
        assert!(refused("tghs_other", "1750000000", &signature, body, 1_750_000_000));
        assert!(refused("tghs_k", "1750000001", &signature, body, 1_750_000_000), "the timestamp is signed");
        assert!(refused("tghs_k", "1750000000", &signature, br#"{"eventId":"e2"}"#, 1_750_000_000));
        assert!(refused("tghs_k", "1750000000", &signature, body, 1_750_000_301), "too old: a replay");
        assert!(refused("tghs_k", "1750000000", &signature, body, 1_749_999_699), "from the future");
        assert!(refused("tghs_k", "soon", &signature, body, 1_750_000_000));
        assert!(refused("tghs_k", "1750000000", &signature[3..], body, 1_750_000_000));
        assert!(refused("tghs_k", "1750000000", "v1=zz", body, 1_750_000_000));
    }

    #[test]
    fn the_mac_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"Jefe", b"42.what do ya want for
        // nothing?", hashlib.sha256).hexdigest().
        assert_eq!(
            sign("Jefe", 42, b"what do ya want for nothing?"),
            "v1=246ed6bd2fdb55df4737c62ddbd57a0a74d18becf897aa14e71f8be0b5203c3d"
        );
    }
}
