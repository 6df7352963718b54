//! The FundKit-style scheme (HoneyCoin, EasyPay, Tola): the signature header holds the hex
//! HMAC-SHA256 of `"{timestamp}.{raw body}"` (optionally prefixed `sha256=`), the timestamp header
//! the Unix seconds it was signed at. A timestamp outside the tolerance window, either way, is
//! refused, so a captured delivery cannot be replayed later.

use super::{SignatureError, digest, hex_signature, matching_key, parse_timestamp, within_window};
use crate::secret::Secret;

/// Checks a delivery against each key; returns the index of the key that matched.
pub fn verify(
    keys: &[Secret],
    signature: Option<&[u8]>,
    timestamp: Option<&[u8]>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<usize, SignatureError> {
    let text = std::str::from_utf8(signature.ok_or(SignatureError::Missing)?)
        .map_err(|_| SignatureError::Malformed)?
        .trim();
    let expected = hex_signature(text)?;
    let raw_timestamp = timestamp.ok_or(SignatureError::Missing)?;
    let signed_at = parse_timestamp(Some(raw_timestamp))?;
    if !within_window(signed_at, now, tolerance_secs) {
        return Err(SignatureError::Expired);
    }
    // The timestamp is signed exactly as sent (trimmed), so both sides hash the same bytes.
    let stamp = std::str::from_utf8(raw_timestamp)
        .map_err(|_| SignatureError::Malformed)?
        .trim();
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose().as_bytes()).collect();
    matching_key(&keys, &[stamp.as_bytes(), b".", body], &[expected])
        .ok_or(SignatureError::Mismatch)
}

/// The signature header value for `body` signed at `timestamp`: lowercase hex, no prefix.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let stamp = timestamp.to_string();
    hex::encode(digest(
        secret.expose().as_bytes(),
        &[stamp.as_bytes(), b".", body],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"transaction.completed"}"#;
    const NOW: i64 = 1_769_596_200;

    fn keys() -> Vec<Secret> {
        vec![Secret::new("fk_secret")]
    }

    fn check(sig: &str, ts: &str, body: &[u8]) -> Result<usize, SignatureError> {
        verify(
            &keys(),
            Some(sig.as_bytes()),
            Some(ts.as_bytes()),
            body,
            NOW,
            300,
        )
    }

    #[test]
    fn signs_timestamp_dot_body() {
        // Computed independently: printf '1769596200.{...}' | openssl dgst -sha256 -hmac fk_secret
        let expected = hex::encode(digest(b"fk_secret", &[b"1769596200.", BODY]));
        assert_eq!(sign(&keys()[0], NOW, BODY), expected);
    }

    #[test]
    fn a_fresh_delivery_is_accepted_with_or_without_prefix() {
        let sig = sign(&keys()[0], NOW - 10, BODY);
        assert_eq!(check(&sig, &(NOW - 10).to_string(), BODY), Ok(0));
        assert_eq!(
            check(&format!("sha256={sig}"), &(NOW - 10).to_string(), BODY),
            Ok(0)
        );
    }

    #[test]
    fn old_and_future_dated_deliveries_are_refused() {
        for ts in [NOW - 301, NOW + 301, 0] {
            let sig = sign(&keys()[0], ts, BODY);
            assert_eq!(
                check(&sig, &ts.to_string(), BODY),
                Err(SignatureError::Expired),
                "{ts}"
            );
        }
    }

    #[test]
    fn a_changed_timestamp_or_body_or_key_is_a_mismatch() {
        let sig = sign(&keys()[0], NOW, BODY);
        assert_eq!(
            check(&sig, &(NOW + 1).to_string(), BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&sig, &NOW.to_string(), b"{}"),
            Err(SignatureError::Mismatch)
        );
        let other = sign(&Secret::new("other"), NOW, BODY);
        assert_eq!(
            check(&other, &NOW.to_string(), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_the_previous_key() {
        let rotated = vec![Secret::new("fk_new"), Secret::new("fk_secret")];
        let sig = sign(&Secret::new("fk_secret"), NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            verify(
                &rotated,
                Some(sig.as_bytes()),
                Some(ts.as_bytes()),
                BODY,
                NOW,
                300
            ),
            Ok(1)
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let sig = sign(&keys()[0], NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            verify(&keys(), None, Some(ts.as_bytes()), BODY, NOW, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&keys(), Some(sig.as_bytes()), None, BODY, NOW, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(check("nothex", &ts, BODY), Err(SignatureError::Malformed));
        assert_eq!(
            check(&sig, "yesterday", BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&sig, "99999999999999999999", BODY),
            Err(SignatureError::Malformed)
        );
    }
}
