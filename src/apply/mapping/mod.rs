//! How each provider's events become transaction changes: FLUID's body ([`fluid`],
//! `mapping = "fluid"`), a FundKit-style aggregator's ([`fundkit`], `"fundkit"`), or none (stored
//! and ignored). Events that are not about a transaction's status (settlements, reconciliation
//! reports, future additions) are ignored: stored and acknowledged, touching no transaction.
//! Amounts stay as the exact text the sender wrote, never a float.

pub mod fluid;
pub mod fundkit;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::transactions::{Details, Prepared, parse_time, rules::Status};
use crate::intake::providers::{Mapping, Provider};

/// A stored event, as the worker claimed it.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    /// `webhook_events.provider`.
    pub provider: &'a str,
    /// `webhook_events.event_id`.
    pub event_id: &'a str,
    /// `webhook_events.event_type`.
    pub event_type: &'a str,
    /// The body.
    pub payload: &'a str,
    /// When it was stored.
    pub received_at: DateTime<Utc>,
}

/// What a stored event means for transactions.
#[derive(Debug)]
pub enum Meaning {
    /// A status change to apply through the rules.
    Apply(Box<Prepared>),
    /// Nothing to apply.
    Ignore,
    /// Can never be applied (no reference, an amount that is not a number, ...).
    Invalid(String),
}

/// Reads a stored event with its provider's mapping (`None`: the provider is no longer configured).
pub fn interpret(provider: Option<&Provider>, event: StoredEvent<'_>) -> Meaning {
    let Some(provider) = provider else {
        return Meaning::Invalid(format!("provider `{}` is not configured", event.provider));
    };
    let prepared = match provider.mapping {
        Mapping::None => return Meaning::Ignore,
        Mapping::Fluid => match Status::from_event_type(event.event_type) {
            None => return Meaning::Ignore,
            Some(status) => fluid::prepare(event, status),
        },
        Mapping::Fundkit => match fundkit::status(event.event_type) {
            None => return Meaning::Ignore,
            Some(status) => fundkit::prepare(event, status, provider.minor_unit_digits),
        },
    };
    match prepared {
        Ok(p) => Meaning::Apply(Box::new(p)),
        Err(e) => Meaning::Invalid(e),
    }
}

/// What an event names, read as far as it can be: the transaction's reference and the merchant's
/// partner reference. Used for events that can never be applied, so that a dead letter still shows
/// with the transaction it is about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The provider's reference of the transaction.
    pub reference: Option<String>,
    /// The merchant's own reference (order id).
    pub partner_reference: Option<String>,
}

/// The names in a body, best effort: FLUID's `data.transaction.{reference, partner_reference}`,
/// a FundKit-style `data.{transactionId, externalId}`; nothing when the body is not JSON.
pub fn names(provider: Option<&Provider>, payload: &str) -> Names {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Names::default();
    };
    let text = |value: &serde_json::Value| {
        value
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.chars().take(200).collect::<String>())
    };
    let (reference, partner) = match provider.map(|p| p.mapping) {
        Some(Mapping::Fundkit) => (&body["data"]["transactionId"], &body["data"]["externalId"]),
        _ => (
            &body["data"]["transaction"]["reference"],
            &body["data"]["transaction"]["partner_reference"],
        ),
    };
    Names {
        reference: text(reference),
        partner_reference: text(partner),
    }
}

pub(crate) fn decimal(
    raw: Option<Box<RawValue>>,
    name: &str,
    read: impl Fn(&RawValue) -> Result<String, String>,
) -> Result<Option<String>, String> {
    raw.filter(|r| r.get() != "null")
        .map(|r| read(&r).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

pub(crate) fn prepared(
    event: StoredEvent<'_>,
    status: Status,
    reference: String,
    at: Option<&str>,
    details: Details,
) -> Result<Prepared, String> {
    if reference.trim().is_empty() {
        return Err("the transaction reference is empty".into());
    }
    Ok(Prepared {
        provider: event.provider.to_string(),
        reference,
        event_id: event.event_id.to_string(),
        event_type: event.event_type.to_string(),
        status,
        at: parse_time(at).unwrap_or(event.received_at),
        details,
    })
}

/// The text of a JSON number as sent, or of the string holding one (some senders quote amounts).
pub(crate) fn number_text(raw: &RawValue) -> Result<String, String> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|e| e.to_string())
    } else {
        Ok(text.to_string())
    }
}

/// The text of a decimal amount exactly as sent, checked to be a plain decimal number so that
/// PostgreSQL's `numeric` stores it digit for digit. Accepts a JSON number or a string holding one.
pub fn decimal_text(raw: &RawValue) -> Result<String, String> {
    let text = number_text(raw)?;
    if is_decimal(&text) {
        Ok(text)
    } else {
        Err(format!(
            "`{}` is not a decimal amount",
            text.chars().take(40).collect::<String>()
        ))
    }
}

/// A plain decimal: optional sign, digits, optional fraction, optional exponent; at most 40 chars.
pub fn is_decimal(text: &str) -> bool {
    if text.is_empty() || text.len() > 40 {
        return false;
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mantissa = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !int.is_empty() && digits(int) && digits(frac) && !(mantissa.ends_with('.'));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= 3 && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Whether two decimal texts are the same number: `100`, `100.00` and `1.0e2` are; an
/// unreadable text equals only itself.
pub fn same_decimal(a: &str, b: &str) -> bool {
    match (canonical_decimal(a), canonical_decimal(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

/// A decimal as (negative, significant digits, power of ten): `-1.50` is (true, "15", -1), zero
/// is (false, "", 0).
fn canonical_decimal(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    if !is_decimal(text) {
        return None;
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = exponent - frac.len() as i64 + (significant.len() - trimmed.len()) as i64;
    Some((negative, trimmed.to_string(), power))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_bodies_that_cannot_be_applied() {
        let fluid = r#"{"event":"transaction.completed","data":{"transaction":{"reference":"FLU-9","partner_reference":"order_900","amount":"1,000.00"}}}"#;
        assert_eq!(
            names(None, fluid),
            Names {
                reference: Some("FLU-9".into()),
                partner_reference: Some("order_900".into())
            }
        );
        let no_reference =
            r#"{"data":{"transaction":{"reference":"","partner_reference":"order_901"}}}"#;
        assert_eq!(
            names(None, no_reference),
            Names {
                reference: None,
                partner_reference: Some("order_901".into())
            }
        );
        for nothing in [
            "not json",
            "[]",
            r#"{"data":{"transaction":{"reference":7}}}"#,
        ] {
            assert_eq!(names(None, nothing), Names::default(), "{nothing}");
        }
    }

    #[test]
    fn the_same_number_written_differently_is_the_same_amount() {
        for (a, b) in [
            ("100", "100.00"),
            ("100.00", "1.0e2"),
            ("0.50", ".5e0x"),
            ("-1.50", "-1.5"),
            ("0", "-0.000"),
            ("12345678901234567.89", "12345678901234567.890"),
        ] {
            if b == ".5e0x" {
                assert!(!same_decimal(a, b), "{a} {b}: unreadable");
                continue;
            }
            assert!(same_decimal(a, b), "{a} = {b}");
        }
        for (a, b) in [
            ("100.00", "100.01"),
            ("1.5", "-1.5"),
            ("10", "1"),
            ("1e2", "1e3"),
        ] {
            assert!(!same_decimal(a, b), "{a} != {b}");
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid JSON")
    }

    #[test]
    fn amounts_keep_their_exact_text() {
        assert_eq!(decimal_text(&raw("100.00")), Ok("100.00".into()));
        assert_eq!(decimal_text(&raw("0.1")), Ok("0.1".into()));
        assert_eq!(decimal_text(&raw("\"5000\"")), Ok("5000".into()));
        assert_eq!(decimal_text(&raw("1e3")), Ok("1e3".into()));
        assert_eq!(decimal_text(&raw("-1.5")), Ok("-1.5".into()));
    }

    #[test]
    fn non_decimals_are_refused() {
        for bad in [
            "\"abc\"",
            "true",
            "\"1.\"",
            "\"NaN\"",
            "\".5\"",
            "\"1e\"",
            "\"1e99999\"",
            "{}",
            "\"\"",
        ] {
            assert!(decimal_text(&raw(bad)).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;
    use crate::{intake::providers::Providers, secret::Secret};

    fn stored<'a>(event_type: &'a str, payload: &'a str) -> StoredEvent<'a> {
        StoredEvent {
            provider: "honeycoin",
            event_id: "e1",
            event_type,
            payload,
            received_at: DateTime::UNIX_EPOCH,
        }
    }

    fn honeycoin() -> Providers {
        let declared = toml::from_str("[honeycoin]\nscheme = \"timestamped\"\nsecrets_env = [\"HC\"]\nmapping = \"fundkit\"\n")
            .expect("valid");
        let secrets = std::collections::HashMap::from([("HC".to_string(), Secret::new("x"))]);
        Providers::build(
            vec![Secret::new("f")],
            &declared,
            &secrets,
            &Default::default(),
        )
        .expect("valid")
    }

    #[test]
    fn fundkit_types_map_to_statuses() {
        assert_eq!(
            fundkit::status("transaction.completed"),
            Some(Status::Completed)
        );
        assert_eq!(fundkit::status("transaction.timeout"), Some(Status::Failed));
        assert_eq!(
            fundkit::status("transaction.cancelled"),
            Some(Status::Failed)
        );
        assert_eq!(fundkit::status("payout.pending"), Some(Status::Pending));
        assert_eq!(fundkit::status("reconciliation.ready"), None);
        assert_eq!(fundkit::status("settlement.completed"), None);
    }

    #[test]
    fn a_fundkit_event_becomes_a_change_with_decimal_amounts() {
        let providers = honeycoin();
        let body = r#"{"id":"e1","type":"transaction.timeout","data":{"transactionId":"txn_1","externalId":"order_9","status":"timeout","amount":10000,"currency":"UGX","fees":150,"timeoutAt":"2024-01-15T10:30:00Z"}}"#;
        let Meaning::Apply(p) = interpret(
            providers.get("honeycoin"),
            stored("transaction.timeout", body),
        ) else {
            panic!("a transaction event applies")
        };
        assert_eq!((p.reference.as_str(), p.status), ("txn_1", Status::Failed));
        assert_eq!(
            (p.details.amount.as_deref(), p.details.fee.as_deref()),
            (Some("100.00"), Some("1.50"))
        );
        assert_eq!(p.details.partner_reference.as_deref(), Some("order_9"));
        assert!(
            p.details
                .error_details
                .as_deref()
                .is_some_and(|d| d.contains("timeout"))
        );
        assert_eq!(p.at.to_rfc3339(), "2024-01-15T10:30:00+00:00");
    }

    #[test]
    fn unmapped_unknown_and_broken_events() {
        let providers = honeycoin();
        let honeycoin = providers.get("honeycoin");
        assert!(matches!(
            interpret(honeycoin, stored("reconciliation.ready", "{}")),
            Meaning::Ignore
        ));
        assert!(matches!(
            interpret(honeycoin, stored("transaction.completed", "{}")),
            Meaning::Invalid(_)
        ));
        let fractional =
            r#"{"type":"transaction.completed","data":{"transactionId":"t","amount":10.5}}"#;
        assert!(
            matches!(interpret(honeycoin, stored("transaction.completed", fractional)), Meaning::Invalid(e) if e.contains("amount"))
        );
        assert!(
            matches!(interpret(None, stored("transaction.completed", "{}")), Meaning::Invalid(e) if e.contains("not configured"))
        );
    }
}
