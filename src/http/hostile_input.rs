//! Property tests over everything that reads untrusted bytes before a delivery is trusted:
//! header parsing, the three signature verifiers, body parsing and payload mapping. The property
//! is the same everywhere: any input gives an answer (usually a refusal), never a panic, and a
//! verifier never accepts what was not signed with its key.
//!
//! `cargo test` runs a few hundred cases of each; `scripts/fuzz` runs many more for a bounded time.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::limits::{LimitSettings, Limits};
use crate::{
    apply::mapping::{self, StoredEvent, decimal_text, fundkit::minor_to_decimal},
    intake::{
        envelope::NewEvent,
        providers::{Providers, Verified, key_id},
        signature::{self, standard, timestamped},
    },
    secret::Secret,
};

/// Header values as a client may send them: any bytes HTTP allows in a value (no CR, LF, NUL),
/// including the non-UTF-8 ones.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = any::<u8>().prop_map(|b| {
        if matches!(b, 0 | b'\r' | b'\n') {
            b' '
        } else {
            b
        }
    });
    prop::collection::vec(byte, 0..200)
}

/// JSON-ish bodies: arbitrary bytes, arbitrary text, and mutations of real events.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let real = r#"{"event":"transaction.completed","event_id":"evt_1","timestamp":"2026-01-28T10:30:00Z","data":{"transaction":{"reference":"FLU-1","amount":100.00,"fee":1.5,"status":"completed"}}}"#;
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        any::<String>().prop_map(String::into_bytes),
        (0..real.len(), any::<u8>()).prop_map(move |(i, b)| {
            let mut bytes = real.as_bytes().to_vec();
            bytes[i] = b;
            bytes
        }),
        (0..real.len(), "[a-z0-9{}\\[\\]\":,.-]{0,12}").prop_map(move |(i, s)| {
            let mut text = real.to_string();
            text.insert_str(real.char_indices().nth(i).map_or(0, |(at, _)| at), &s);
            text.into_bytes()
        }),
        (1usize..5000)
            .prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

fn headers(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.insert(HeaderName::from_static(name), value);
        }
    }
    map
}

fn providers() -> Providers {
    let declared = toml::from_str(
        "[fk]\nscheme = \"timestamped\"\nsecrets_env = [\"FK\"]\nmapping = \"fundkit\"\n\
         [sw]\nscheme = \"standard-webhooks\"\nsecrets_env = [\"SW\"]\nmapping = \"fluid\"\n",
    )
    .expect("valid");
    let secrets = HashMap::from([
        ("FK".to_string(), Secret::new("fk-secret")),
        (
            "SW".to_string(),
            Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ),
    ]);
    Providers::build(
        vec![Secret::new("fluid-secret")],
        &declared,
        &secrets,
        &Default::default(),
    )
    .expect("valid")
}

proptest! {
    // PROPTEST_CASES raises the count (scripts/fuzz); cargo test runs 256 of each.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn verifiers_refuse_anything_not_signed_with_their_key(
        sig in header_value(), ts in header_value(), id in header_value(), body in body(), now in any::<i64>(),
    ) {
        let providers = providers();
        let map = headers(&[
            ("x-fluid-signature", sig.clone()), ("x-webhook-signature", sig.clone()), ("webhook-signature", sig),
            ("x-webhook-timestamp", ts.clone()), ("webhook-timestamp", ts), ("webhook-id", id),
        ]);
        for name in ["fluid", "fk", "sw"] {
            let provider = providers.get(name).expect("declared");
            prop_assert!(provider.verify(&map, &body, now).is_err(), "{name} accepted a random signature");
        }
    }

    #[test]
    fn verifiers_accept_their_own_signature_over_any_body(body in body(), at in 0i64..4_000_000_000, id in "[a-zA-Z0-9_]{1,40}") {
        let providers = providers();
        let fluid = headers(&[("x-fluid-signature", signature::sign(&Secret::new("fluid-secret"), &body).into_bytes())]);
        prop_assert_eq!(providers.get("fluid").expect("built in").verify(&fluid, &body, at).map(|v| v.key_id), Ok(key_id(b"fluid-secret")));
        let fk = headers(&[
            ("x-webhook-signature", timestamped::sign(&Secret::new("fk-secret"), at, &body).into_bytes()),
            ("x-webhook-timestamp", at.to_string().into_bytes()),
        ]);
        prop_assert_eq!(providers.get("fk").expect("declared").verify(&fk, &body, at).map(|v| v.key_id), Ok(key_id(b"fk-secret")));
        let key = standard::key_bytes(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).expect("key");
        let sw = headers(&[
            ("webhook-id", id.clone().into_bytes()),
            ("webhook-timestamp", at.to_string().into_bytes()),
            ("webhook-signature", standard::sign(&key, &id, at, &body).into_bytes()),
        ]);
        prop_assert_eq!(providers.get("sw").expect("declared").verify(&sw, &body, at + 299).map(|v| v.key_id), Ok(key_id(&key)));
        prop_assert!(providers.get("sw").expect("declared").verify(&sw, &body, at + 301).is_err());
    }

    #[test]
    fn bodies_are_parsed_or_refused_never_panicking(body in body(), event_header in header_value(), id in header_value()) {
        let providers = providers();
        let map = headers(&[("x-fluid-event", event_header), ("webhook-id", id)]);
        for name in ["fluid", "fk", "sw"] {
            let verified = Verified { key_id: "k".into(), signature: "s".into() };
            if let Ok(event) = NewEvent::parse(providers.get(name).expect("provider"), verified, &body, &map) {
                prop_assert!(!event.event_id.is_empty() && event.event_id.len() <= 255);
                prop_assert!(serde_json::from_str::<serde_json::Value>(&event.body).is_ok());
            }
        }
    }

    #[test]
    fn mapping_any_stored_body_gives_an_answer(body in any::<String>(), kind in prop_oneof![
        Just("transaction.completed".to_string()), Just("transaction.timeout".to_string()),
        Just("payout.failed".to_string()), Just("settlement.x".to_string()), ".{0,30}",
    ]) {
        let providers = providers();
        for name in ["fluid", "fk", "sw", "gone"] {
            let stored = StoredEvent { provider: name, event_id: "e", event_type: &kind, payload: &body, received_at: chrono::DateTime::UNIX_EPOCH };
            let _ = mapping::interpret(providers.get(name), stored);
        }
    }

    #[test]
    fn amounts_parse_or_refuse(text in ".{0,60}", digits in 0u32..8) {
        if let Ok(raw) = serde_json::value::RawValue::from_string(text.clone()) {
            let _ = decimal_text(&raw);
            if let Ok(decimal) = minor_to_decimal(&raw, digits) {
                prop_assert!(decimal.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-'));
            }
        }
    }

    #[test]
    fn forwarded_headers_never_panic(forwarded in header_value(), proto in header_value(), peer in any::<[u8; 4]>()) {
        let limits = Limits::new(LimitSettings {
            rate_per_second: 1.0, burst: 1.0, max_concurrent_requests: 1, header_timeout_ms: 1, body_timeout_ms: 1,
            trusted_proxies: vec!["0.0.0.0/0".parse().expect("CIDR")], require_https: true,
        });
        let map = headers(&[("x-forwarded-for", forwarded), ("x-forwarded-proto", proto)]);
        let _ = limits.client_ip(std::net::IpAddr::from(peer), &map);
    }
}
