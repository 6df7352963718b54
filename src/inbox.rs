//! The durable inbox: every verified delivery becomes one row of `webhook_events`, keyed by its
//! event id under a unique constraint, so a redelivery (also many at the same instant) is a no-op.
//! A delivery is acknowledged only after its row is committed; the table is also the worker's queue.
//!
//! Group commit: a commit costs a disk flush, so concurrent deliveries are stored together. Each
//! request hands its event to a small set of flusher tasks; a flusher takes every event waiting
//! (up to `ingest.max_batch`), stores them with one multi-row `INSERT ... ON CONFLICT DO NOTHING
//! RETURNING event_id` and one commit, and answers each request from what came back. Nobody waits
//! for a batch to fill: a lone delivery is stored at once, and under load the deliveries that
//! arrive during one commit form the next batch. A batch that fails fails only its own requests.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinSet,
};

use crate::{config::IngestSettings, error::Error, providers::Provider};

/// Longest event id or event type stored; longer ones are refused with 400.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Deepest nesting of arrays and objects accepted. FLUID's bodies are 4 deep; PostgreSQL's jsonb
/// parser runs out of stack far below the 1 MiB body limit (found by the hostile-input tests).
pub(crate) const MAX_DEPTH: usize = 64;

/// The deepest nesting of `[` and `{` in a JSON text, outside strings. A byte scan: cheap enough
/// for every delivery, unlike parsing into a tree.
pub(crate) fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
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
    deepest
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
    /// The body as text; PostgreSQL stores it as `jsonb`.
    pub body: String,
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
}

impl NewEvent {
    /// Reads a verified body and its delivery headers. Not JSON, not an object, or an id that
    /// cannot be a key: 400.
    pub fn parse(provider: &Provider, body: &[u8], headers: &HeaderMap) -> Result<Self, Error> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
            Error::BadRequest(match e.classify() {
                serde_json::error::Category::Data => {
                    format!(
                        "body must be a JSON object with string `event`/`type` and `event_id`: {e}"
                    )
                }
                _ => format!("body is not valid JSON: {e}"),
            })
        })?;
        if nesting_depth(body) > MAX_DEPTH {
            return Err(Error::BadRequest(format!(
                "body is nested deeper than {MAX_DEPTH} levels"
            )));
        }
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
                return Err(Error::BadRequest(format!(
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
            body: body.to_string(),
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

/// A delivery waiting for its batch, and where to send the answer.
struct Waiting {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored, Error>>,
}

/// The handle requests store their events through.
#[derive(Clone)]
pub struct Inbox {
    queue: mpsc::Sender<Waiting>,
    timeout: Duration,
}

impl Inbox {
    /// Starts `settings.flushers` flusher tasks on `pool`. They stop once every `Inbox` handle is
    /// dropped and the events already handed over are stored.
    pub fn start(
        pool: PgPool,
        settings: &IngestSettings,
        timeout: Duration,
    ) -> (Self, JoinSet<()>) {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut flushers = JoinSet::new();
        for _ in 0..settings.flushers {
            flushers.spawn(flush_loop(
                pool.clone(),
                receiver.clone(),
                settings.max_batch,
            ));
        }
        (Self { queue, timeout }, flushers)
    }

    /// Stores the event once and returns after the commit that holds it. Gives up with 503 after
    /// the ingest timeout, so FLUID retries instead of waiting; if the event did commit meanwhile,
    /// the retry is a duplicate.
    pub async fn store(&self, event: NewEvent) -> Result<Stored, Error> {
        let (reply, answer) = oneshot::channel();
        let timeout = self.timeout;
        let waited = tokio::time::timeout(timeout, async {
            self.queue
                .send(Waiting { event, reply })
                .await
                .map_err(|_| Error::Unavailable(anyhow::anyhow!("the inbox is shutting down")))?;
            answer
                .await
                .map_err(|_| Error::Internal(anyhow::anyhow!("the inbox dropped a delivery")))?
        })
        .await;
        waited.map_err(|_| {
            Error::Unavailable(anyhow::anyhow!("storing the event took over {timeout:?}"))
        })?
    }
}

/// Takes whatever is waiting (at least one event, at most `max_batch`) and stores it, until the
/// queue is closed and empty.
async fn flush_loop(pool: PgPool, receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        // A request that gave up (timed out) no longer needs its event stored now; FLUID retries.
        batch.retain(|w| !w.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let events: Vec<&NewEvent> = batch.iter().map(|w| &w.event).collect();
        let answers = match insert_batch(&pool, &events).await {
            Ok(answers) => answers,
            // One bad row (data PostgreSQL refuses) must not fail its neighbours: store one by one.
            Err(e) if is_data_error(&e) && batch.len() > 1 => {
                let mut answers = Vec::with_capacity(batch.len());
                for event in &events {
                    answers.push(
                        insert_batch(&pool, &[event])
                            .await
                            .map(|mut a| a.remove(0))
                            .map_err(|e| classify(&e)),
                    );
                }
                for (waiting, answer) in batch.into_iter().zip(answers) {
                    let _ = waiting.reply.send(answer);
                }
                continue;
            }
            Err(e) => {
                for waiting in batch {
                    let _ = waiting.reply.send(Err(classify(&e)));
                }
                continue;
            }
        };
        for (waiting, answer) in batch.into_iter().zip(answers) {
            let _ = waiting.reply.send(Ok(answer));
        }
    }
}

/// Stores the events in one statement (one commit) and says, for each, whether it is new. The
/// first of several deliveries of one event id in the batch is the new one.
async fn insert_batch(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<Stored>, sqlx::Error> {
    let column = |f: fn(&NewEvent) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO webhook_events \
             (provider, event_id, event_type, delivery_id, delivery_event, delivery_timestamp, payload) \
         SELECT e.provider, e.event_id, e.event_type, e.delivery_id, e.delivery_event, e.delivery_timestamp, \
             e.payload::jsonb \
         FROM unnest($7::text[], $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             WITH ORDINALITY \
             AS e(provider, event_id, event_type, delivery_id, delivery_event, delivery_timestamp, payload, n) \
         ORDER BY e.n \
         ON CONFLICT (provider, event_id) DO NOTHING \
         RETURNING provider, event_id",
    )
    .bind(column(|e| Some(&e.event_id)))
    .bind(column(|e| Some(&e.event_type)))
    .bind(column(|e| e.delivery_id.as_deref()))
    .bind(column(|e| e.delivery_event.as_deref()))
    .bind(column(|e| e.delivery_timestamp.as_deref()))
    .bind(column(|e| Some(&e.body)))
    .bind(column(|e| Some(&e.provider)))
    .fetch_all(pool)
    .await?;
    let mut new: HashSet<(String, String)> = inserted.into_iter().collect();
    Ok(events
        .iter()
        .map(|e| {
            // The first delivery of a key in the batch is the new one.
            if new.remove(&(e.provider.clone(), e.event_id.clone())) {
                Stored::New
            } else {
                Stored::Duplicate
            }
        })
        .collect())
}

/// PostgreSQL refused the data itself: class 22 (data exception, e.g. a `\u0000` jsonb cannot
/// hold) or 54 (program limit exceeded, e.g. nesting too deep for the jsonb parser).
fn is_data_error(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("54")))
}

/// Sorts a database failure into the client's fault (400: PostgreSQL refused the data, e.g. a
/// `\u0000` escape jsonb cannot hold), unreachable (503, FLUID retries) or a bug (500). Takes a
/// reference because every request of a failed batch gets its own copy of the answer.
pub fn classify(error: &sqlx::Error) -> Error {
    match error {
        sqlx::Error::Database(db) if is_data_error(error) => {
            Error::BadRequest(format!("payload cannot be stored: {}", db.message()))
        }
        _ if crate::database::is_unreachable(error) => {
            Error::Unavailable(anyhow::anyhow!("{error}"))
        }
        _ => Error::Internal(anyhow::anyhow!("{error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{providers::Providers, secret::Secret};

    fn fluid() -> Providers {
        Providers::build(
            vec![Secret::new("k")],
            &Default::default(),
            &Default::default(),
            &Default::default(),
        )
        .expect("built in")
    }

    #[test]
    fn event_id_comes_from_the_body_or_the_body_hash() {
        let headers = HeaderMap::new();
        let with_id = NewEvent::parse(
            fluid().get("fluid").expect("fluid"),
            br#"{"event":"transaction.completed","event_id":"evt_1"}"#,
            &headers,
        )
        .expect("valid");
        assert_eq!(
            (with_id.event_id.as_str(), with_id.event_type.as_str()),
            ("evt_1", "transaction.completed")
        );

        let body = br#"{"event":"settlement.created"}"#;
        let without =
            NewEvent::parse(fluid().get("fluid").expect("fluid"), body, &headers).expect("valid");
        assert_eq!(
            without.event_id,
            format!("sha256:{}", hex::encode(Sha256::digest(body)))
        );
    }

    #[test]
    fn event_type_falls_back_to_the_header_then_unknown() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            NewEvent::parse(fluid().get("fluid").expect("fluid"), b"{}", &headers)
                .expect("valid")
                .event_type,
            "unknown"
        );
        headers.insert(
            "x-fluid-event",
            "transaction.failed".parse().expect("header"),
        );
        assert_eq!(
            NewEvent::parse(fluid().get("fluid").expect("fluid"), b"{}", &headers)
                .expect("valid")
                .event_type,
            "transaction.failed"
        );
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
        ] {
            assert!(
                matches!(
                    NewEvent::parse(
                        fluid().get("fluid").expect("fluid"),
                        body.as_bytes(),
                        &headers
                    ),
                    Err(Error::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
