//! FLUID's scheme: `X-FLUID-Signature` is the hex HMAC-SHA256 of the exact body bytes, keyed with
//! the webhook secret. The timestamp header is not signed, so it proves nothing; replays are made
//! harmless by event-id idempotency instead.

use super::{SignatureError, digest, hex_signature, matching_key};
use crate::secret::Secret;

/// The header FLUID puts the signature in (HTTP header names are case-insensitive).
pub const HEADER: &str = "x-fluid-signature";

/// Checks a delivery's signature header against the body with each key; returns the index of the
/// key that matched.
///
/// FLUID sends lowercase hex; uppercase hex and a `sha256=` prefix (as other senders use) are
/// accepted too.
pub fn verify(
    keys: &[Secret],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<usize, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let text = std::str::from_utf8(header)
        .map_err(|_| SignatureError::Malformed)?
        .trim();
    if text.is_empty() {
        return Err(SignatureError::Missing);
    }
    let expected = hex_signature(text)?;
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose().as_bytes()).collect();
    matching_key(&keys, &[body], &[expected]).ok_or(SignatureError::Mismatch)
}

/// The `X-FLUID-Signature` value FLUID would send for this body: lowercase hex, no prefix.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    hex::encode(digest(secret.expose().as_bytes(), &[body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"transaction.completed","event_id":"evt_1"}"#;

    fn keys() -> Vec<Secret> {
        vec![Secret::new("whsec_test")]
    }

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(&Secret::new("Jefe"), b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn accepts_lowercase_uppercase_and_prefixed_signatures() {
        let sig = sign(&keys()[0], BODY);
        for header in [
            sig.clone(),
            sig.to_uppercase(),
            format!("sha256={sig}"),
            format!("SHA256={sig}"),
        ] {
            assert_eq!(
                verify(&keys(), Some(header.as_bytes()), BODY),
                Ok(0),
                "{header}"
            );
        }
    }

    #[test]
    fn a_rotated_key_is_accepted_and_named_by_index() {
        let rotated = vec![Secret::new("new-secret"), Secret::new("whsec_test")];
        let old = sign(&Secret::new("whsec_test"), BODY);
        let new = sign(&Secret::new("new-secret"), BODY);
        assert_eq!(verify(&rotated, Some(old.as_bytes()), BODY), Ok(1));
        assert_eq!(verify(&rotated, Some(new.as_bytes()), BODY), Ok(0));
    }

    #[test]
    fn rejects_missing_malformed_and_wrong_signatures() {
        let sig = sign(&keys()[0], BODY);
        assert_eq!(verify(&keys(), None, BODY), Err(SignatureError::Missing));
        assert_eq!(
            verify(&keys(), Some(b"  "), BODY),
            Err(SignatureError::Missing)
        );
        for bad in ["zz", &sig[..62], "sha256=", "sha256", &format!("{sig}00")] {
            assert_eq!(
                verify(&keys(), Some(bad.as_bytes()), BODY),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&keys(), Some(&[0xff, 0xfe]), BODY),
            Err(SignatureError::Malformed)
        );
        let other = sign(&Secret::new("another"), BODY);
        assert_eq!(
            verify(&keys(), Some(other.as_bytes()), BODY),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&keys(), Some(sig.as_bytes()), &tampered),
            Err(SignatureError::Mismatch)
        );
    }
}
