//! How each provider's events become transaction changes: FLUID's body (`mapping = "fluid"`), a
//! FundKit-style aggregator's (`"fundkit"`), or none (stored and ignored). Events that are not
//! about a transaction's status (settlements, reconciliation reports, future additions) are
//! ignored: stored and acknowledged, touching no transaction.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::{
    payload::{FluidEvent, FundKitEvent, decimal_text, minor_to_decimal},
    providers::{Mapping, Provider},
    transactions::{Details, Prepared, parse_time, rules::Status},
};

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
            Some(status) => from_fluid(event, status),
        },
        Mapping::Fundkit => match fundkit_status(event.event_type) {
            None => return Meaning::Ignore,
            Some(status) => from_fundkit(event, status, provider.minor_unit_digits),
        },
    };
    match prepared {
        Ok(p) => Meaning::Apply(Box::new(p)),
        Err(e) => Meaning::Invalid(e),
    }
}

/// The status a FundKit-style event sets. A timeout or a cancellation is a failed payment (the
/// reason is kept in `error_details`); payouts follow the same statuses.
pub fn fundkit_status(event_type: &str) -> Option<Status> {
    let (kind, outcome) = event_type.split_once('.')?;
    if kind != "transaction" && kind != "payout" {
        return None;
    }
    match outcome {
        "pending" => Some(Status::Pending),
        "completed" => Some(Status::Completed),
        "failed" | "timeout" | "cancelled" => Some(Status::Failed),
        _ => None,
    }
}

fn decimal(
    raw: Option<Box<RawValue>>,
    name: &str,
    read: impl Fn(&RawValue) -> Result<String, String>,
) -> Result<Option<String>, String> {
    raw.filter(|r| r.get() != "null")
        .map(|r| read(&r).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

fn prepared(
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

fn from_fluid(event: StoredEvent<'_>, status: Status) -> Result<Prepared, String> {
    let body: FluidEvent = serde_json::from_str(event.payload).map_err(|e| e.to_string())?;
    let tx = body.data.transaction;
    let details = Details {
        amount: decimal(tx.amount, "data.transaction.amount", decimal_text)?,
        fee: decimal(tx.fee, "data.transaction.fee", decimal_text)?,
        fluid_id: tx.id,
        fluid_uuid: tx.uuid,
        partner_reference: tx.partner_reference,
        currency: tx.currency,
        narration: tx.narration,
        approval_method: tx.approval_method,
        error_details: body
            .data
            .error_details
            .map(|r| r.get().to_string())
            .filter(|t| t != "null"),
        fluid_created_at: parse_time(tx.created_at.as_deref()),
        processed_at: parse_time(tx.processed_at.as_deref()),
        completed_at: parse_time(tx.completed_at.as_deref()),
    };
    prepared(
        event,
        status,
        tx.reference,
        body.timestamp.as_deref(),
        details,
    )
}

fn from_fundkit(event: StoredEvent<'_>, status: Status, digits: u32) -> Result<Prepared, String> {
    let body: FundKitEvent = serde_json::from_str(event.payload).map_err(|e| e.to_string())?;
    let data = body.data;
    let minor = |raw: &RawValue| minor_to_decimal(raw, digits);
    let reason = event
        .event_type
        .split_once('.')
        .map(|(_, outcome)| outcome)
        .filter(|o| *o == "timeout" || *o == "cancelled");
    let error_details = (data.error_code.is_some() || data.error_message.is_some() || reason.is_some())
        .then(|| serde_json::json!({ "code": data.error_code, "message": data.error_message, "reason": reason }).to_string());
    let happened = body
        .timestamp
        .or(data.completed_at.clone())
        .or(data.failed_at)
        .or(data.timeout_at)
        .or(data.cancelled_at)
        .or(data.pending_at);
    let details = Details {
        amount: decimal(data.amount, "data.amount", minor)?,
        fee: decimal(data.fees, "data.fees", minor)?,
        partner_reference: data.external_id,
        currency: data.currency,
        error_details,
        completed_at: parse_time(data.completed_at.as_deref()),
        ..Details::default()
    };
    prepared(
        event,
        status,
        data.transaction_id,
        happened.as_deref(),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{providers::Providers, secret::Secret};

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
            fundkit_status("transaction.completed"),
            Some(Status::Completed)
        );
        assert_eq!(fundkit_status("transaction.timeout"), Some(Status::Failed));
        assert_eq!(
            fundkit_status("transaction.cancelled"),
            Some(Status::Failed)
        );
        assert_eq!(fundkit_status("payout.pending"), Some(Status::Pending));
        assert_eq!(fundkit_status("reconciliation.ready"), None);
        assert_eq!(fundkit_status("settlement.completed"), None);
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
