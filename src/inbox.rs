//! The durable inbox: every verified delivery becomes one row of `webhook_events`, keyed by its
//! event id under a unique constraint, so a redelivery (also many at the same instant) is a no-op.
//! A delivery is acknowledged only after its row is committed; the table is also the worker's queue.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::error::Error;

/// Longest event id or event type stored; longer ones are refused with 400.
const MAX_KEY_LEN: usize = 255;

/// A verified delivery, ready to store.
#[derive(Debug)]
pub struct NewEvent<'a> {
    /// `event_id` from the body, or `sha256:<hex of the body>` when the body has none.
    pub event_id: String,
    /// `event` from the body, else the `X-FLUID-Event` header, else `unknown`.
    pub event_type: String,
    /// `X-FLUID-Delivery-ID` of this attempt.
    pub delivery_id: Option<String>,
    /// `X-FLUID-Event` as sent (not signed, kept for the record).
    pub delivery_event: Option<String>,
    /// `X-FLUID-Timestamp` as sent (not signed, kept for the record).
    pub delivery_timestamp: Option<String>,
    /// The body as text; PostgreSQL stores it as `jsonb`.
    pub body: &'a str,
}

/// The top-level fields the inbox needs; the rest of the body is kept as it is.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
}

impl<'a> NewEvent<'a> {
    /// Reads a verified body and its delivery headers. Not JSON, not an object, or an id that
    /// cannot be a key: 400.
    pub fn parse(body: &'a [u8], headers: &HeaderMap) -> Result<Self, Error> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
            Error::BadRequest(match e.classify() {
                serde_json::error::Category::Data => {
                    format!("body must be a JSON object with string `event` and `event_id`: {e}")
                }
                _ => format!("body is not valid JSON: {e}"),
            })
        })?;
        // serde would also read a struct from a JSON array; a webhook body is an object.
        if !body.trim_ascii_start().starts_with(b"{") {
            return Err(Error::BadRequest("body must be a JSON object".into()));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| Error::BadRequest("body is not valid UTF-8".into()))?;
        let header = |name: &str| {
            headers.get(name).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(MAX_KEY_LEN)
                    .collect::<String>()
            })
        };
        let delivery_event = header("x-fluid-event");
        let event_id = match envelope.event_id {
            Some(id) if !id.trim().is_empty() => id,
            _ => format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes()))),
        };
        let event_type = envelope
            .event
            .filter(|e| !e.trim().is_empty())
            .or_else(|| delivery_event.clone())
            .unwrap_or_else(|| "unknown".into());
        for (name, value) in [("event_id", &event_id), ("event", &event_type)] {
            if value.len() > MAX_KEY_LEN {
                return Err(Error::BadRequest(format!(
                    "`{name}` is longer than {MAX_KEY_LEN} bytes"
                )));
            }
        }
        Ok(Self {
            event_id,
            event_type,
            delivery_id: header("x-fluid-delivery-id"),
            delivery_event,
            delivery_timestamp: header("x-fluid-timestamp"),
            body,
        })
    }
}

/// What storing a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new row was committed.
    New,
    /// The event id was already stored (a redelivery); nothing changed.
    Duplicate,
}

impl Stored {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "accepted",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Stores the event once, committing before it returns. Gives up with 503 after `timeout`, so
/// FLUID retries instead of waiting: a retry of an insert that did commit meanwhile is a duplicate.
pub async fn store(
    pool: &PgPool,
    event: &NewEvent<'_>,
    timeout: Duration,
) -> Result<Stored, Error> {
    let insert = sqlx::query(
        "INSERT INTO webhook_events \
             (event_id, event_type, delivery_id, delivery_event, delivery_timestamp, payload) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.event_id)
    .bind(&event.event_type)
    .bind(&event.delivery_id)
    .bind(&event.delivery_event)
    .bind(&event.delivery_timestamp)
    .bind(event.body)
    .execute(pool);
    let result = tokio::time::timeout(timeout, insert).await.map_err(|_| {
        Error::Unavailable(anyhow::anyhow!("storing the event took over {timeout:?}"))
    })?;
    match result {
        Ok(done) if done.rows_affected() == 1 => Ok(Stored::New),
        Ok(_) => Ok(Stored::Duplicate),
        Err(e) => Err(classify(e)),
    }
}

/// Sorts a database failure into the client's fault (400: PostgreSQL refused the data, e.g. a
/// `\u0000` escape jsonb cannot hold), unreachable (503, FLUID retries) or a bug (500).
pub fn classify(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
            Error::BadRequest(format!("payload cannot be stored: {}", db.message()))
        }
        _ if crate::database::is_unreachable(&error) => Error::Unavailable(error.into()),
        _ => Error::Internal(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_comes_from_the_body_or_the_body_hash() {
        let headers = HeaderMap::new();
        let with_id = NewEvent::parse(
            br#"{"event":"transaction.completed","event_id":"evt_1"}"#,
            &headers,
        )
        .expect("valid");
        assert_eq!(
            (with_id.event_id.as_str(), with_id.event_type.as_str()),
            ("evt_1", "transaction.completed")
        );

        let body = br#"{"event":"settlement.created"}"#;
        let without = NewEvent::parse(body, &headers).expect("valid");
        assert_eq!(
            without.event_id,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
    }

    #[test]
    fn event_type_falls_back_to_the_header_then_unknown() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            NewEvent::parse(b"{}", &headers).expect("valid").event_type,
            "unknown"
        );
        headers.insert(
            "x-fluid-event",
            "transaction.failed".parse().expect("header"),
        );
        assert_eq!(
            NewEvent::parse(b"{}", &headers).expect("valid").event_type,
            "transaction.failed"
        );
    }

    #[test]
    fn non_objects_and_broken_json_are_bad_requests() {
        let headers = HeaderMap::new();
        let long_id = format!(r#"{{"event_id":"{}"}}"#, "x".repeat(300));
        for body in [
            "",
            "{",
            "[]",
            "\"x\"",
            "42",
            r#"{"event_id":5}"#,
            "{} trailing",
            long_id.as_str(),
        ] {
            assert!(
                matches!(
                    NewEvent::parse(body.as_bytes(), &headers),
                    Err(Error::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
