//! A poll's answer as a FLUID-shaped event, so the worker applies it through the same state rules
//! as a webhook: a stale or backward answer changes nothing, and the same answer twice is one
//! event (its id is `poll:<reference>:<status>:<time>`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    apply::transactions::{parse_time, rules::Status},
    intake::{
        envelope::{MAX_KEY_LEN, NewEvent},
        providers::FLUID,
    },
    store::rows::Source,
};

/// A poll's answer as a FLUID-shaped event: what the worker stores and applies.
#[derive(Debug, PartialEq)]
pub struct PollEvent {
    /// `poll:<reference>:<status>:<time>`: the same answer twice is one event.
    pub event_id: String,
    /// `transaction.<status>`.
    pub event_type: String,
    /// FLUID's `meta.request_id`, kept as the delivery id.
    pub request_id: Option<String>,
    /// The body: `data.transaction` from the answer, `data.poll` the whole answer.
    pub payload: Value,
}

impl PollEvent {
    /// The event for `status` of `reference`, from FLUID's answer `body`. Its time is the
    /// answer's (`response.timestamp`, else `completed_at`, `processed_at`, `meta.timestamp`),
    /// else `now`.
    pub fn new(reference: &str, status: Status, body: &Value, now: DateTime<Utc>) -> Self {
        let response = &body["data"]["response"];
        let time = [
            &response["timestamp"],
            &response["completed_at"],
            &response["processed_at"],
            &body["meta"]["timestamp"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|t| parse_time(Some(t)).is_some())
        .map(str::to_string)
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Micros, true));
        let mut transaction = json!({ "reference": reference, "status": status.as_str() });
        for field in [
            "uuid",
            "approval_method",
            "processed_at",
            "completed_at",
            "bank_reference",
        ] {
            if let Some(value) = response.get(field).filter(|v| v.is_string()) {
                transaction[field] = value.clone();
            }
        }
        let mut data = json!({ "transaction": transaction, "poll": body });
        if let Some(message) = response.get("error_message").filter(|v| !v.is_null()) {
            data["error_details"] = json!({ "message": message });
        }
        let event_type = format!("transaction.{}", status.as_str());
        let event_id: String = format!("poll:{reference}:{}:{time}", status.as_str())
            .chars()
            .take(MAX_KEY_LEN)
            .collect();
        Self {
            payload: json!({
                "event": event_type,
                "event_id": event_id,
                "timestamp": time,
                "api_version": "v1",
                "source": "poll",
                "data": data,
            }),
            event_id,
            event_type,
            request_id: body["meta"]["request_id"].as_str().map(str::to_string),
        }
    }

    /// The event as the inbox stores it: from `fluid`, source `poll`, FLUID's request id as its
    /// delivery id.
    pub fn into_event(self) -> NewEvent {
        NewEvent {
            provider: FLUID.to_string(),
            event_id: self.event_id,
            event_type: self.event_type,
            delivery_id: self.request_id,
            delivery_event: None,
            delivery_timestamp: None,
            event_timestamp: self.payload["timestamp"].as_str().map(str::to_string),
            body: self.payload.to_string(),
            source: Source::Poll,
            signature: None,
            key_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow_up::reconciliation::api::{Answer, read_answer};

    const ANSWER: &str = r#"{"success":true,"data":{"reference":"FLU-1","status":"completed","response":{"uuid":"u-1","status":"completed","timestamp":"2026-01-28T10:31:00Z","reference":"FLU-1","processed_at":"2026-01-28T10:30:30Z","completed_at":"2026-01-28T10:31:00Z","bank_reference":"BNK9","approval_method":"ussd","error_message":null}},"meta":{"timestamp":"2026-01-28T10:35:00Z","request_id":"req_7","api_version":"v1"}}"#;

    #[test]
    fn the_documented_answer_becomes_a_fluid_shaped_event() {
        let Answer::Status { status, body } = read_answer(ANSWER.as_bytes()) else {
            panic!("a status")
        };
        assert_eq!(status, "completed");
        let event = PollEvent::new("FLU-1", Status::Completed, &body, Utc::now());
        assert_eq!(event.event_id, "poll:FLU-1:completed:2026-01-28T10:31:00Z");
        assert_eq!(event.event_type, "transaction.completed");
        assert_eq!(event.request_id.as_deref(), Some("req_7"));
        let parsed: crate::apply::mapping::fluid::FluidEvent =
            serde_json::from_value(event.payload.clone()).expect("the worker can read it");
        assert_eq!(parsed.data.transaction.reference, "FLU-1");
        assert_eq!(parsed.timestamp.as_deref(), Some("2026-01-28T10:31:00Z"));
        assert_eq!(event.payload["source"], "poll");
        assert_eq!(
            event.payload["data"]["poll"]["data"]["response"]["bank_reference"],
            "BNK9"
        );
        assert!(event.payload["data"].get("error_details").is_none());
    }

    #[test]
    fn an_answer_without_a_time_is_dated_now_and_keeps_its_error_message() {
        let body: Value = serde_json::from_str(
            r#"{"data":{"status":"failed","response":{"error_message":"Insufficient funds"}}}"#,
        )
        .expect("json");
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("time");
        let event = PollEvent::new("FLU-2", Status::Failed, &body, now);
        assert_eq!(event.payload["timestamp"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(
            event.payload["data"]["error_details"]["message"],
            "Insufficient funds"
        );
    }
}
