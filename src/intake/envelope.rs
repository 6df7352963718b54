//! The envelope of a verified body: the few top-level fields the inbox keys an event by (event id,
//! type), read without parsing the rest, and the limits every stored body keeps to.

use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::providers::{Provider, Verified};
use crate::store::rows::Source;

/// A verified body that cannot be stored as an event (not JSON, not an object, an id too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Longest event id or event type stored; longer ones are refused with 400.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Deepest nesting of arrays and objects accepted. FLUID's bodies are 4 deep; PostgreSQL's jsonb
/// parser runs out of stack far below the 1 MiB body limit (found by the hostile-input tests), and
/// the admin API reads stored bodies as JSON.
pub(crate) const MAX_DEPTH: usize = 64;

/// The deepest nesting of `[` and `{` in a JSON text, outside strings. A byte scan: cheap enough
/// for every delivery, unlike parsing into a tree.
pub(crate) fn nesting_depth(body: &[u8]) -> usize {
    scan(body).0
}

/// One pass over a JSON text: its deepest nesting of `[` and `{` outside strings, and whether a
/// string holds the escape `\u0000`.
fn scan(body: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    let mut nul = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, b'u') => {
                    nul |= body.get(i + 1..i + 5) == Some(b"0000");
                    escaped = false;
                }
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest, nul)
}

/// A verified delivery, ready to store.
#[derive(Debug)]
pub struct NewEvent {
    /// Who sent it.
    pub provider: String,
    /// The signed `webhook-id` (Standard Webhooks), else `event_id` or `id` from the body, else
    /// `sha256:<hex of the body>`.
    pub event_id: String,
    /// `event` or `type` from the body, else the `X-FLUID-Event` header, else `unknown`.
    pub event_type: String,
    /// `X-FLUID-Delivery-ID` (or `webhook-id`) of this attempt.
    pub delivery_id: Option<String>,
    /// `X-FLUID-Event` as sent (not signed, kept for the record).
    pub delivery_event: Option<String>,
    /// The provider's timestamp header as sent (signed only by the timestamped schemes).
    pub delivery_timestamp: Option<String>,
    /// The body's own `timestamp` (when the event happened, as the sender wrote it).
    pub event_timestamp: Option<String>,
    /// The body exactly as received (verified UTF-8); stored as bytes in `raw_body`.
    pub body: String,
    /// Delivered by its provider, or an answer of FLUID's API to a poll.
    pub source: Source,
    /// The signature header exactly as received; `None` for a poll's answer.
    pub signature: Option<String>,
    /// Which key verified it (a fingerprint, never the key); `None` for a poll's answer.
    pub key_id: Option<String>,
}

/// The top-level fields the inbox needs; the rest of the body is kept as it is.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    /// FundKit-style senders call it `id`, some as a number.
    #[serde(default)]
    id: Option<serde_json::Value>,
    /// When the event happened: RFC 3339 text (FLUID, FundKit), or a number of seconds.
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

impl NewEvent {
    /// Reads a verified body and its delivery headers. Not JSON, not an object, or an id that
    /// cannot be a key: 400.
    pub fn parse(
        provider: &Provider,
        verified: Verified,
        body: &[u8],
        headers: &HeaderMap,
    ) -> Result<Self, EnvelopeError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
            EnvelopeError(match e.classify() {
                serde_json::error::Category::Data => {
                    format!(
                        "body must be a JSON object with string `event`/`type` and `event_id`: {e}"
                    )
                }
                _ => format!("body is not valid JSON: {e}"),
            })
        })?;
        let (depth, nul) = scan(body);
        if depth > MAX_DEPTH {
            return Err(EnvelopeError(format!(
                "body is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        // The bytes could be stored, but no PostgreSQL text (a transaction's columns, jsonb) can
        // hold NUL: such an event could never be applied or read, so it is not acknowledged.
        if nul {
            return Err(EnvelopeError(
                "body holds a \\u0000 escape, which no stored text can hold".into(),
            ));
        }
        // serde would also read a struct from a JSON array; a webhook body is an object.
        if !body.trim_ascii_start().starts_with(b"{") {
            return Err(EnvelopeError("body must be a JSON object".into()));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| EnvelopeError("body is not valid UTF-8".into()))?;
        let header = |name: &str| {
            headers.get(name).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(MAX_KEY_LEN)
                    .collect::<String>()
            })
        };
        let delivery_event = header("x-fluid-event");
        let body_id = envelope.event_id.or(match envelope.id {
            Some(serde_json::Value::String(id)) => Some(id),
            Some(serde_json::Value::Number(id)) => Some(id.to_string()),
            _ => None,
        });
        let signed_id = provider.signed_id_header().and_then(&header);
        let event_id = match signed_id.or(body_id) {
            Some(id) if !id.trim().is_empty() => id,
            _ => format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes()))),
        };
        let event_type = envelope
            .event
            .or(envelope.kind)
            .filter(|e| !e.trim().is_empty())
            .or_else(|| delivery_event.clone())
            .unwrap_or_else(|| "unknown".into());
        for (name, value) in [("event_id", &event_id), ("event", &event_type)] {
            if value.len() > MAX_KEY_LEN {
                return Err(EnvelopeError(format!(
                    "`{name}` is longer than {MAX_KEY_LEN} bytes"
                )));
            }
        }
        Ok(Self {
            provider: provider.name.clone(),
            event_id,
            event_type,
            delivery_id: header("x-fluid-delivery-id").or_else(|| header("webhook-id")),
            delivery_event,
            delivery_timestamp: header(provider.timestamp_header()),
            event_timestamp: match envelope.timestamp {
                Some(serde_json::Value::String(at)) => Some(at),
                Some(serde_json::Value::Number(at)) => Some(at.to_string()),
                _ => None,
            }
            .map(|at| at.chars().take(MAX_KEY_LEN).collect()),
            body: body.to_string(),
            source: Source::Webhook,
            signature: Some(verified.signature),
            key_id: Some(verified.key_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{intake::providers::Providers, secret::Secret};

    fn fluid() -> Providers {
        Providers::build(
            vec![Secret::new("k")],
            &Default::default(),
            &Default::default(),
            &Default::default(),
        )
        .expect("built in")
    }

    fn verified() -> Verified {
        Verified {
            key_id: "0123456789abcdef".into(),
            signature: "sig".into(),
        }
    }

    #[test]
    fn event_id_comes_from_the_body_or_the_body_hash() {
        let headers = HeaderMap::new();
        let with_id = NewEvent::parse(
            fluid().get("fluid").expect("fluid"),
            verified(),
            br#"{"event":"transaction.completed","event_id":"evt_1"}"#,
            &headers,
        )
        .expect("valid");
        assert_eq!(
            (with_id.event_id.as_str(), with_id.event_type.as_str()),
            ("evt_1", "transaction.completed")
        );

        let body = br#"{"event":"settlement.created"}"#;
        let without = NewEvent::parse(
            fluid().get("fluid").expect("fluid"),
            verified(),
            body,
            &headers,
        )
        .expect("valid");
        assert_eq!(
            without.event_id,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
    }

    #[test]
    fn event_type_falls_back_to_the_header_then_unknown() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            NewEvent::parse(
                fluid().get("fluid").expect("fluid"),
                verified(),
                b"{}",
                &headers
            )
            .expect("valid")
            .event_type,
            "unknown"
        );
        headers.insert(
            "x-fluid-event",
            "transaction.failed".parse().expect("header"),
        );
        assert_eq!(
            NewEvent::parse(
                fluid().get("fluid").expect("fluid"),
                verified(),
                b"{}",
                &headers
            )
            .expect("valid")
            .event_type,
            "transaction.failed"
        );
    }

    #[test]
    fn a_nul_escape_is_found_only_as_an_escape_in_a_string() {
        assert!(scan(br#"{"a":"x\u0000y"}"#).1);
        assert!(
            !scan(br#"{"a":"x\\u0000y"}"#).1,
            "an escaped backslash, then text"
        );
        assert!(!scan(br#"{"a":"\u00e9"}"#).1);
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a":"[[[[\"[[["}"#), 1);
        assert_eq!(nesting_depth(b"[[[]]]"), 3);
    }

    #[test]
    fn non_objects_and_broken_json_are_bad_requests() {
        let headers = HeaderMap::new();
        let long_id = format!(r#"{{"event_id":"{}"}}"#, "x".repeat(300));
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(65), "]".repeat(65));
        for body in [
            "",
            "{",
            "[]",
            "\"x\"",
            "42",
            r#"{"event_id":5}"#,
            "{} trailing",
            long_id.as_str(),
            deep.as_str(),
            r#"{"x":"\u0000"}"#,
        ] {
            assert!(
                matches!(
                    NewEvent::parse(
                        fluid().get("fluid").expect("fluid"),
                        verified(),
                        body.as_bytes(),
                        &headers
                    ),
                    Err(EnvelopeError(_))
                ),
                "{body}"
            );
        }
    }
}
