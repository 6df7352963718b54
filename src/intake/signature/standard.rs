//! Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers; the signature is `v1,<base64 HMAC-SHA256>` of
//! `"{id}.{timestamp}.{body}"`, keyed with the base64 bytes of a `whsec_...` secret. The header may
//! carry several space-separated signatures (the sender rotating its key); any one matching is
//! enough. The timestamp must be within the tolerance window, either way.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};

use super::{SignatureError, digest, matching_key, parse_timestamp, within_window};
use crate::secret::Secret;

/// A secret's key bytes: the base64 after `whsec_` (the prefix is optional).
pub fn key_bytes(secret: &Secret) -> Result<Vec<u8>, String> {
    let text = secret.expose().trim();
    let encoded = text.strip_prefix("whsec_").unwrap_or(text);
    BASE64
        .decode(encoded)
        .map_err(|_| "a Standard Webhooks secret must be base64 after `whsec_`".to_string())
}

/// Checks a delivery against each key (already decoded with [`key_bytes`]); returns the index of
/// the key that matched.
pub fn verify(
    keys: &[Vec<u8>],
    id: Option<&[u8]>,
    timestamp: Option<&[u8]>,
    signature: Option<&[u8]>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<usize, SignatureError> {
    let id = id.ok_or(SignatureError::Missing)?;
    let raw_timestamp = timestamp.ok_or(SignatureError::Missing)?;
    let header = std::str::from_utf8(signature.ok_or(SignatureError::Missing)?)
        .map_err(|_| SignatureError::Malformed)?;
    let signed_at = parse_timestamp(Some(raw_timestamp))?;
    if !within_window(signed_at, now, tolerance_secs) {
        return Err(SignatureError::Expired);
    }
    let candidates: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| BASE64.decode(sig).ok())
        .filter(|sig| sig.len() == 32)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let stamp = std::str::from_utf8(raw_timestamp)
        .map_err(|_| SignatureError::Malformed)?
        .trim();
    matching_key(keys, &[id, b".", stamp.as_bytes(), b".", body], &candidates)
        .ok_or(SignatureError::Mismatch)
}

/// The `webhook-signature` value for one key: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let stamp = timestamp.to_string();
    let signature = digest(key, &[id.as_bytes(), b".", stamp.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key() -> Vec<u8> {
        key_bytes(&Secret::new(SECRET)).expect("valid secret")
    }

    fn check(
        keys: &[Vec<u8>],
        signature: &str,
        timestamp: i64,
        body: &[u8],
        now: i64,
    ) -> Result<usize, SignatureError> {
        let ts = timestamp.to_string();
        verify(
            keys,
            Some(ID.as_bytes()),
            Some(ts.as_bytes()),
            Some(signature.as_bytes()),
            body,
            now,
            300,
        )
    }

    #[test]
    fn reproduces_the_specification_test_vector() {
        assert_eq!(sign(&key(), ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(
            check(&[key()], SIGNATURE, TIMESTAMP, BODY, TIMESTAMP),
            Ok(0)
        );
    }

    #[test]
    fn the_secret_prefix_is_optional_and_must_be_base64() {
        assert_eq!(
            key_bytes(&Secret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            Ok(key())
        );
        assert!(key_bytes(&Secret::new("whsec_not base64!")).is_err());
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let header = format!("v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= v2,abc {SIGNATURE}");
        assert_eq!(
            check(&[key()], &header, TIMESTAMP, BODY, TIMESTAMP + 5),
            Ok(0)
        );
        let only_others = "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=";
        assert_eq!(
            check(&[key()], only_others, TIMESTAMP, BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_rotated_receiver_key_matches_by_index() {
        let keys = [vec![7u8; 32], key()];
        assert_eq!(check(&keys, SIGNATURE, TIMESTAMP, BODY, TIMESTAMP), Ok(1));
    }

    #[test]
    fn stale_future_and_tampered_deliveries_are_refused() {
        assert_eq!(
            check(&[key()], SIGNATURE, TIMESTAMP, BODY, TIMESTAMP + 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            check(&[key()], SIGNATURE, TIMESTAMP, BODY, TIMESTAMP - 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            check(
                &[key()],
                SIGNATURE,
                TIMESTAMP,
                br#"{"test": 2432232315}"#,
                TIMESTAMP
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&[key()], "v1,!!!", TIMESTAMP, BODY, TIMESTAMP),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&[key()], "", TIMESTAMP, BODY, TIMESTAMP),
            Err(SignatureError::Malformed)
        );
        let ts = TIMESTAMP.to_string();
        let missing_id = verify(
            &[key()],
            None,
            Some(ts.as_bytes()),
            Some(SIGNATURE.as_bytes()),
            BODY,
            TIMESTAMP,
            300,
        );
        assert_eq!(missing_id, Err(SignatureError::Missing));
    }
}
