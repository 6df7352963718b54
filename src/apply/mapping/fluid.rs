//! FLUID's webhook body (see `shared/fluid-webhooks-reference.md`), as far as this service reads
//! it, and how it becomes a change of a transaction. Unknown fields are allowed everywhere: the
//! inbox keeps the whole body, these types only pick out what the worker applies.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{StoredEvent, decimal, decimal_text, prepared};
use crate::apply::transactions::{Details, Prepared, parse_time, rules::Status};

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

/// The change a FLUID event makes.
pub(crate) fn prepare(event: StoredEvent<'_>, status: Status) -> Result<Prepared, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
