//! Webhook authenticity, checked over the raw body before anything is parsed.
//!
//! Each sender's scheme is a small verifier of its own module: [`fluid`] (hex HMAC-SHA256 of the
//! body), [`timestamped`] (FundKit-style: HMAC-SHA256 of `"{timestamp}.{body}"` inside a
//! tolerance window) and [`standard`] (Standard Webhooks). Every verifier takes several keys, so
//! a secret can be rotated with no delivery refused, and says which key matched (by index, never
//! the key). Comparisons run in constant time (`hmac`'s `verify_slice`).

pub mod fluid;
pub mod standard;
pub mod timestamped;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use fluid::{HEADER, sign, verify};

/// Why a delivery's signature was not accepted. None of these say anything about the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header (or no timestamp or message id header where the scheme needs one).
    #[error("missing signature header")]
    Missing,
    /// A header is there but cannot be read (not hex or base64, wrong length, not a number).
    #[error("malformed signature header")]
    Malformed,
    /// Well-formed, but no key produces this signature for this body.
    #[error("signature does not match the body")]
    Mismatch,
    /// The signed timestamp is outside the tolerance window (too old, or from the future).
    #[error("signature timestamp outside the tolerance window")]
    Expired,
}

/// HMAC-SHA256 over the concatenation of `parts`, keyed with `key`.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The HMAC-SHA256 bytes over the concatenation of `parts`.
pub(crate) fn digest(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    mac(key, parts).finalize().into_bytes().to_vec()
}

/// The index of the first key whose HMAC over `parts` equals one of `candidates`, compared in
/// constant time; every key is tried against every candidate, so timing says nothing about which.
pub(crate) fn matching_key<K: AsRef<[u8]>>(
    keys: &[K],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Option<usize> {
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        for candidate in candidates {
            if mac(key.as_ref(), parts).verify_slice(candidate).is_ok() && found.is_none() {
                found = Some(index);
            }
        }
    }
    found
}

/// Whether `timestamp` (Unix seconds) is within `tolerance_secs` of `now`, either way.
pub(crate) fn within_window(timestamp: i64, now: i64, tolerance_secs: u64) -> bool {
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    now.checked_sub(timestamp)
        .is_some_and(|age| age.checked_abs().is_some_and(|a| a <= tolerance))
}

/// The 32 bytes of a hex HMAC-SHA256 signature, with or without a `sha256=` prefix (either case);
/// anything else is malformed.
pub(crate) fn hex_signature(text: &str) -> Result<Vec<u8>, SignatureError> {
    let hex_digits = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => &text[7..],
        _ => text,
    };
    let mut bytes = vec![0u8; 32];
    hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| SignatureError::Malformed)?;
    Ok(bytes)
}

/// Reads a Unix-seconds header value; anything else is malformed.
pub(crate) fn parse_timestamp(header: Option<&[u8]>) -> Result<i64, SignatureError> {
    let text = std::str::from_utf8(header.ok_or(SignatureError::Missing)?)
        .map_err(|_| SignatureError::Malformed)?;
    let text = text.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    text.parse().map_err(|_| SignatureError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_both_ways_and_survives_absurd_values() {
        assert!(within_window(1_000, 1_000, 300));
        assert!(within_window(700, 1_000, 300));
        assert!(within_window(1_300, 1_000, 300));
        assert!(!within_window(699, 1_000, 300), "too old");
        assert!(!within_window(1_301, 1_000, 300), "from the future");
        assert!(!within_window(i64::MIN, i64::MAX, 300));
        assert!(!within_window(i64::MAX, i64::MIN, u64::MAX));
    }

    #[test]
    fn timestamps_are_plain_unix_seconds() {
        assert_eq!(parse_timestamp(Some(b" 1614265330 ")), Ok(1_614_265_330));
        assert_eq!(parse_timestamp(None), Err(SignatureError::Missing));
        for bad in [&b""[..], b"-5", b"1e9", b"12345678901234", b"\xff", b"1.5"] {
            assert_eq!(
                parse_timestamp(Some(bad)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_matching_key_is_found_by_index() {
        let parts: [&[u8]; 2] = [b"a", b"b"];
        let expected = digest(b"second", &parts);
        let keys = [b"first".to_vec(), b"second".to_vec()];
        assert_eq!(
            matching_key(&keys, &parts, std::slice::from_ref(&expected)),
            Some(1)
        );
        assert_eq!(matching_key(&keys[..1], &parts, &[expected]), None);
    }
}
