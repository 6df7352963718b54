//! Proving a stored delivery authentic, months later. Every event keeps the bytes it arrived
//! with (`raw_body`), its signature header as sent and which key verified it (`key_id`); this
//! checks them again with the keys configured now, the one `key_id` names, by the same verifier
//! code as the live route, as of the moment it arrived. `fluid-webhooks verify-stored` runs it
//! over every stored event, and the admin API shows it for one (`verifies_now`).

use super::{providers::Providers, signature::SignatureError};
use crate::store::rows::Source;

/// What is stored of one delivery, as far as checking it again needs.
#[derive(Debug, Clone, Copy)]
pub struct StoredDelivery<'a> {
    /// `webhook_events.provider`.
    pub provider: &'a str,
    /// `webhook_events.event_id` (for Standard Webhooks, the signed `webhook-id`).
    pub event_id: &'a str,
    /// Delivered by the provider, or an answer of FLUID's API (which nobody signs).
    pub source: Source,
    /// Whether `body` is the bytes as received (rows stored before bodies were kept hold a
    /// re-serialisation).
    pub raw_exact: bool,
    /// The fingerprint of the key that verified it.
    pub key_id: Option<&'a str>,
    /// The signature header as received.
    pub signature: Option<&'a str>,
    /// The timestamp header as received (signed by the timestamped schemes).
    pub delivery_timestamp: Option<&'a str>,
    /// `raw_body`.
    pub body: &'a [u8],
    /// When it arrived, Unix seconds: the moment the live route checked it.
    pub received_at: i64,
}

/// What checking a stored delivery again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The signature holds over the stored bytes with the key that verified it.
    Verified,
    /// It does not: the stored bytes or signature are not what was verified.
    Failed(SignatureError),
    /// The key that verified it (or its provider) is no longer configured.
    NoKey,
    /// Stored before bodies were kept byte for byte: there is nothing exact to check.
    NotExact,
    /// An answer of FLUID's API to a poll: never signed.
    NotSigned,
}

impl Verdict {
    /// Checks `stored` with the keys of `providers`.
    pub fn of(providers: &Providers, stored: &StoredDelivery<'_>) -> Self {
        if stored.source == Source::Poll {
            return Self::NotSigned;
        }
        if !stored.raw_exact {
            return Self::NotExact;
        }
        let (Some(provider), Some(key_id), Some(signature)) = (
            providers.get(stored.provider),
            stored.key_id,
            stored.signature,
        ) else {
            return Self::NoKey;
        };
        let headers =
            provider.stored_headers(signature, stored.delivery_timestamp, stored.event_id);
        match provider.verify_again(key_id, &headers, stored.body, stored.received_at) {
            None => Self::NoKey,
            Some(Ok(())) => Self::Verified,
            Some(Err(e)) => Self::Failed(e),
        }
    }

    /// `verifies_now` of the admin API: true, false, or nothing to say (no key, not exact, not
    /// signed).
    pub fn verifies(self) -> Option<bool> {
        match self {
            Self::Verified => Some(true),
            Self::Failed(_) => Some(false),
            Self::NoKey | Self::NotExact | Self::NotSigned => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        intake::signature::{self, timestamped},
        secret::Secret,
    };

    const BODY: &[u8] = br#"{"event":"transaction.completed",  "event_id":"evt_1"}"#;

    fn stored<'a>(key_id: &'a str, signature: &'a str, body: &'a [u8]) -> StoredDelivery<'a> {
        StoredDelivery {
            provider: "fluid",
            event_id: "evt_1",
            source: Source::Webhook,
            raw_exact: true,
            key_id: Some(key_id),
            signature: Some(signature),
            delivery_timestamp: None,
            body,
            received_at: 1_769_596_200,
        }
    }

    fn fluid(keys: &[&str]) -> Providers {
        Providers::build(
            keys.iter().map(|k| Secret::new(*k)).collect(),
            &Default::default(),
            &Default::default(),
            &Default::default(),
        )
        .expect("built in")
    }

    #[test]
    fn a_stored_delivery_verifies_with_its_key_and_fails_when_altered() {
        let old = crate::intake::providers::key_id(b"old-secret");
        let sig = signature::sign(&Secret::new("old-secret"), BODY);
        let rotated = fluid(&["new-secret", "old-secret"]);
        assert_eq!(
            Verdict::of(&rotated, &stored(&old, &sig, BODY)),
            Verdict::Verified
        );
        let altered = br#"{"event":"transaction.completed","event_id":"evt_1"}"#;
        assert_eq!(
            Verdict::of(&rotated, &stored(&old, &sig, altered)),
            Verdict::Failed(SignatureError::Mismatch)
        );
        assert_eq!(
            Verdict::of(&fluid(&["new-secret"]), &stored(&old, &sig, BODY)),
            Verdict::NoKey,
            "the old key was dropped"
        );
        let poll = StoredDelivery {
            source: Source::Poll,
            ..stored(&old, &sig, BODY)
        };
        assert_eq!(Verdict::of(&rotated, &poll), Verdict::NotSigned);
        let old_row = StoredDelivery {
            raw_exact: false,
            ..stored(&old, &sig, BODY)
        };
        assert_eq!(Verdict::of(&rotated, &old_row), Verdict::NotExact);
    }

    #[test]
    fn a_timestamped_delivery_is_checked_as_of_its_arrival() {
        let declared = toml::from_str(
            "[hc]\nscheme = \"timestamped\"\nsecrets_env = [\"HC\"]\nmapping = \"fundkit\"\n",
        )
        .expect("valid");
        let secrets = std::collections::HashMap::from([("HC".to_string(), Secret::new("hc"))]);
        let providers =
            Providers::build(vec![], &declared, &secrets, &Default::default()).expect("valid");
        let at = 1_769_596_200;
        let sig = timestamped::sign(&Secret::new("hc"), at, BODY);
        let key = crate::intake::providers::key_id(b"hc");
        let stamp = at.to_string();
        let delivery = StoredDelivery {
            provider: "hc",
            delivery_timestamp: Some(&stamp),
            ..stored(&key, &sig, BODY)
        };
        assert_eq!(
            Verdict::of(&providers, &delivery),
            Verdict::Verified,
            "years later, the window is that of its arrival"
        );
    }
}
