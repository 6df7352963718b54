//! A FundKit-style aggregator's body (HoneyCoin, EasyPay, Tola): `id`, `type`,
//! `data.transactionId`, `data.externalId`, amounts in minor units.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{StoredEvent, decimal, number_text, prepared};
use crate::apply::transactions::{Details, Prepared, parse_time, rules::Status};

/// A FundKit-style aggregator's event (HoneyCoin, EasyPay, Tola): amounts in minor units.
#[derive(Debug, Deserialize)]
pub struct FundKitEvent {
    /// Event name, e.g. `transaction.completed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event happened, if the sender says (RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The transaction.
    pub data: FundKitData,
}

/// `data` of a FundKit-style event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundKitData {
    /// The aggregator's id of the transaction: our reference.
    pub transaction_id: String,
    /// The merchant's own reference (order id).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Amount in minor units (an integer).
    #[serde(default)]
    pub amount: Option<Box<RawValue>>,
    /// Currency, e.g. `UGX`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Fees in minor units.
    #[serde(default)]
    pub fees: Option<Box<RawValue>>,
    /// Per-status times (RFC 3339).
    #[serde(default)]
    pub completed_at: Option<String>,
    /// When it failed.
    #[serde(default)]
    pub failed_at: Option<String>,
    /// When it started waiting for the customer.
    #[serde(default)]
    pub pending_at: Option<String>,
    /// When it timed out.
    #[serde(default)]
    pub timeout_at: Option<String>,
    /// When it was cancelled.
    #[serde(default)]
    pub cancelled_at: Option<String>,
    /// The aggregator's error code of a failure.
    #[serde(default)]
    pub error_code: Option<String>,
    /// The aggregator's error message of a failure.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// The status a FundKit-style event sets. A timeout or a cancellation is a failed payment (the
/// reason is kept in `error_details`); payouts follow the same statuses.
pub fn status(event_type: &str) -> Option<Status> {
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

/// A minor-unit integer amount as an exact decimal: `10000` with 2 digits is `100.00`.
pub fn minor_to_decimal(raw: &RawValue, digits: u32) -> Result<String, String> {
    let text = number_text(raw)?;
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    if magnitude.is_empty()
        || magnitude.len() > 30
        || !magnitude.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "`{}` is not an amount in minor units",
            text.chars().take(40).collect::<String>()
        ));
    }
    let digits = digits as usize;
    if digits == 0 {
        return Ok(format!("{sign}{magnitude}"));
    }
    let padded = format!("{magnitude:0>width$}", width = digits + 1);
    let (whole, fraction) = padded.split_at(padded.len() - digits);
    Ok(format!("{sign}{whole}.{fraction}"))
}

/// The change a FundKit-style event makes; amounts have `digits` minor-unit digits.
pub(crate) fn prepare(
    event: StoredEvent<'_>,
    status: Status,
    digits: u32,
) -> Result<Prepared, String> {
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
mod minor_unit_tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid JSON")
    }

    #[test]
    fn minor_units_become_exact_decimals() {
        assert_eq!(minor_to_decimal(&raw("10000"), 2), Ok("100.00".into()));
        assert_eq!(minor_to_decimal(&raw("5"), 2), Ok("0.05".into()));
        assert_eq!(minor_to_decimal(&raw("\"250\""), 2), Ok("2.50".into()));
        assert_eq!(minor_to_decimal(&raw("-150"), 2), Ok("-1.50".into()));
        assert_eq!(minor_to_decimal(&raw("10000"), 0), Ok("10000".into()));
        for bad in ["1.5", "\"x\"", "true", "\"\"", "1e3"] {
            assert!(minor_to_decimal(&raw(bad), 2).is_err(), "{bad}");
        }
    }
}
