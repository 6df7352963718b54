//! Webhook authenticity: `X-FLUID-Signature` is the hex HMAC-SHA256 of the exact body bytes,
//! keyed with the webhook secret. Checked over the raw bytes, before any parsing, in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The header FLUID puts the signature in (HTTP header names are case-insensitive).
pub const HEADER: &str = "x-fluid-signature";

/// Why a delivery's signature was not accepted. None of these say anything about the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-FLUID-Signature` header.
    #[error("missing X-FLUID-Signature header")]
    Missing,
    /// The header is not 64 hex digits (optionally prefixed `sha256=`).
    #[error("malformed X-FLUID-Signature header")]
    Malformed,
    /// Well-formed, but not the HMAC of this body under our secret.
    #[error("X-FLUID-Signature does not match the body")]
    Mismatch,
}

/// Checks a delivery's signature header against the body.
///
/// FLUID sends lowercase hex; uppercase hex and a `sha256=` prefix (as other senders use) are
/// accepted too. The comparison is `hmac`'s `verify_slice`, which runs in constant time.
pub fn verify(secret: &Secret, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let text = std::str::from_utf8(header)
        .map_err(|_| SignatureError::Malformed)?
        .trim();
    if text.is_empty() {
        return Err(SignatureError::Missing);
    }
    let hex_digits = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => &text[7..],
        _ => text,
    };
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut expected).map_err(|_| SignatureError::Malformed)?;
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-FLUID-Signature` value FLUID would send for this body: lowercase hex, no prefix.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

fn mac(secret: &Secret, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"transaction.completed","event_id":"evt_1"}"#;

    fn secret() -> Secret {
        Secret::new("whsec_test")
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
        let sig = sign(&secret(), BODY);
        for header in [
            sig.clone(),
            sig.to_uppercase(),
            format!("sha256={sig}"),
            format!("SHA256={sig}"),
        ] {
            assert_eq!(
                verify(&secret(), Some(header.as_bytes()), BODY),
                Ok(()),
                "{header}"
            );
        }
    }

    #[test]
    fn rejects_missing_malformed_and_wrong_signatures() {
        let sig = sign(&secret(), BODY);
        assert_eq!(verify(&secret(), None, BODY), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secret(), Some(b"  "), BODY),
            Err(SignatureError::Missing)
        );
        for bad in ["zz", &sig[..62], "sha256=", "sha256", &format!("{sig}00")] {
            assert_eq!(
                verify(&secret(), Some(bad.as_bytes()), BODY),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&secret(), Some(&[0xff, 0xfe]), BODY),
            Err(SignatureError::Malformed)
        );
        let other = sign(&Secret::new("another"), BODY);
        assert_eq!(
            verify(&secret(), Some(other.as_bytes()), BODY),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&secret(), Some(sig.as_bytes()), &tampered),
            Err(SignatureError::Mismatch)
        );
    }
}
