//! The shape of FLUID's webhook body (see `shared/fluid-webhooks-reference.md`), as far as this
//! service reads it. Unknown fields are allowed everywhere: the inbox keeps the whole body, these
//! types only pick out what the worker applies. Amounts stay as the exact text FLUID sent.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A FLUID event, e.g. `transaction.completed`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FluidEvent {
    /// Event name, e.g. `transaction.completed`.
    pub event: String,
    /// FLUID's id of the event; the idempotency key.
    pub event_id: String,
    /// When FLUID produced the event (RFC 3339); orders events of one transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The transaction and its context.
    pub data: EventData,
}

/// `data` of a transaction event.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventData {
    /// The transaction as FLUID sees it after this event.
    pub transaction: TransactionData,
    /// Status before this event, as FLUID saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    /// Present on failures; its inner fields are not documented, so it is kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Box<RawValue>>,
}

/// `data.transaction`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransactionData {
    /// FLUID's id: `dt_...` for debits, `ct_...` for credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// FLUID's UUID of the transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// FLUID's reference, the key of `GET debit-requests/:reference` and of our `transactions`.
    pub reference: String,
    /// The merchant's own id (order id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_reference: Option<String>,
    /// Status after this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Decimal amount exactly as sent (a JSON number, or a string holding one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Box<RawValue>>,
    /// ISO currency, `GHS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// FLUID's fee, exactly as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Box<RawValue>>,
    /// Text shown to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narration: Option<String>,
    /// How the customer approved, e.g. `ussd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_method: Option<String>,
    /// The customer's bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<Box<RawValue>>,
    /// The customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Box<RawValue>>,
    /// FLUID's timestamps (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When FLUID processed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// The text of a JSON number as sent, or of the string holding one (some senders quote amounts).
fn number_text(raw: &RawValue) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_reference_example_parses_and_unknown_fields_are_allowed() {
        let body = r#"{"event":"transaction.completed","event_id":"evt_9f0c","timestamp":"2026-01-28T10:30:00Z",
            "api_version":"v1","future_field":[1,2],"data":{"transaction":{"id":"dt_8a1b","reference":"FLU-20260128-ABC123",
            "partner_reference":"order_12345","status":"completed","amount":100.0,"currency":"GHS","fee":1.5,
            "bank":{"name":"B","identifier":"TST","country_code":"GH"},"new":true},"previous_status":"processing",
            "metadata":{},"error_details":null}}"#;
        let event: FluidEvent = serde_json::from_str(body).expect("parses");
        assert_eq!(event.data.transaction.reference, "FLU-20260128-ABC123");
        assert_eq!(
            event.data.transaction.amount.map(|a| a.get().to_string()),
            Some("100.0".into())
        );
        assert!(event.data.error_details.is_none());
    }
}

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
