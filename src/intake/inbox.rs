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

use std::{
    collections::HashSet,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::store::db::Db;
use serde::Deserialize;
use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinSet,
};

use super::envelope::NewEvent;
use crate::store::database::{Failure, is_contended, is_data_error};

/// `[ingest]`: group commit of incoming events; see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Tasks storing batches; each holds one commit in flight.
    pub flushers: usize,
    /// Most events stored by one statement and commit.
    pub max_batch: usize,
    /// Events waiting for a flusher before requests wait to hand theirs over.
    pub queue_capacity: usize,
}

impl IngestSettings {
    /// The rules of `[ingest]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(1..=64).contains(&self.flushers),
                "ingest.flushers",
                "must be 1 to 64",
            ),
            (
                !(1..=5_000).contains(&self.max_batch),
                "ingest.max_batch",
                "must be 1 to 5000",
            ),
            (
                self.queue_capacity == 0,
                "ingest.queue_capacity",
                "must be at least 1",
            ),
        ]
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

/// When this process's flushers last stored a batch. The worker claims larger batches once
/// deliveries have stopped arriving (`worker.catch_up_batch_size`): while they arrive, a large
/// batch is a long burst of PostgreSQL work next to their commits, and their acknowledgements wait.
/// Only this process's deliveries are seen; it decides a batch size, nothing that must be right.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<AtomicU64>);

/// The clock of [`Activity`]: milliseconds since the first use, plus one (0 is "never").
fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

impl Activity {
    /// A batch was stored now.
    fn stored(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether no batch was stored for `quiet` (or ever).
    pub fn quiet_for(&self, quiet: Duration) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        last == 0 || now_ms().saturating_sub(last) >= quiet.as_millis() as u64
    }
}

/// A delivery waiting for its batch, and where to send the answer.
struct Waiting {
    event: NewEvent,
    reply: oneshot::Sender<Result<Stored, Failure>>,
}

/// The handle requests store their events through.
#[derive(Clone)]
pub struct Inbox {
    queue: mpsc::Sender<Waiting>,
    timeout: Duration,
    activity: Activity,
}

impl Inbox {
    /// Starts `settings.flushers` flusher tasks on `pool`. They stop once every `Inbox` handle is
    /// dropped and the events already handed over are stored.
    pub fn start(pool: Db, settings: &IngestSettings, timeout: Duration) -> (Self, JoinSet<()>) {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let activity = Activity::default();
        let mut flushers = JoinSet::new();
        for _ in 0..settings.flushers {
            flushers.spawn(flush_loop(
                pool.clone(),
                receiver.clone(),
                settings.max_batch,
                activity.clone(),
            ));
        }
        (
            Self {
                queue,
                timeout,
                activity,
            },
            flushers,
        )
    }

    /// When the flushers last stored a batch.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Stores the event once and returns after the commit that holds it. Gives up with 503 after
    /// the ingest timeout, so FLUID retries instead of waiting; if the event did commit meanwhile,
    /// the retry is a duplicate.
    pub async fn store(&self, event: NewEvent) -> Result<Stored, Failure> {
        let (reply, answer) = oneshot::channel();
        let timeout = self.timeout;
        let waited = tokio::time::timeout(timeout, async {
            self.queue
                .send(Waiting { event, reply })
                .await
                .map_err(|_| Failure::Unreachable("the inbox is shutting down".into()))?;
            answer
                .await
                .map_err(|_| Failure::Bug("the inbox dropped a delivery".into()))?
        })
        .await;
        waited
            .map_err(|_| Failure::Unreachable(format!("storing the event took over {timeout:?}")))?
    }
}

/// Takes whatever is waiting (at least one event, at most `max_batch`) and stores it, until the
/// queue is closed and empty.
async fn flush_loop(
    pool: Db,
    receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    max_batch: usize,
    activity: Activity,
) {
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
        activity.stored();
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
/// first of several deliveries of one event id in the batch is the new one. Refused only because
/// of other work at that moment (a deadlock, a lock timeout), nothing was stored, so the statement
/// runs once more; refused again, the error is the answer (503: the senders retry).
async fn insert_batch(pool: &Db, events: &[&NewEvent]) -> Result<Vec<Stored>, sqlx::Error> {
    match insert_once(pool, events).await {
        Err(e) if is_contended(&e) => {
            tracing::debug!(error = %e, "inbox: batch refused for contention; storing it once more");
            insert_once(pool, events).await
        }
        answered => answered,
    }
}

/// One try of [`insert_batch`].
async fn insert_once(pool: &Db, events: &[&NewEvent]) -> Result<Vec<Stored>, sqlx::Error> {
    let column = |f: fn(&NewEvent) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    // The body is stored as the bytes received: PostgreSQL parses no JSON here. Rows go in in key
    // order: two replicas storing the same events at once (a redelivery racing its first delivery)
    // then wait for each other's keys in the same order, never in a cycle (a deadlock, where
    // PostgreSQL fails one of the batches). Among deliveries of one key, the first received is the
    // one stored.
    // So within one batch the ids follow the keys, not the arrival: those deliveries were in
    // flight together and stored by one commit; between batches the ids still follow arrival.
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO webhook_events \
             (provider, event_id, event_type, delivery_id, delivery_event, delivery_timestamp, raw_body, source, \
              signature, key_id, event_timestamp) \
         SELECT e.provider, e.event_id, e.event_type, e.delivery_id, e.delivery_event, e.delivery_timestamp, \
             e.raw_body, e.source, e.signature, e.key_id, e.event_timestamp \
         FROM unnest($7::text[], $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], \
                     $8::text[], $9::text[], $10::text[], $11::text[]) \
             WITH ORDINALITY \
             AS e(provider, event_id, event_type, delivery_id, delivery_event, delivery_timestamp, raw_body, source, \
                  signature, key_id, event_timestamp, n) \
         ORDER BY e.provider, e.event_id, e.n \
         ON CONFLICT (provider, event_id) DO NOTHING \
         RETURNING provider, event_id",
    )
    .bind(column(|e| Some(&e.event_id)))
    .bind(column(|e| Some(&e.event_type)))
    .bind(column(|e| e.delivery_id.as_deref()))
    .bind(column(|e| e.delivery_event.as_deref()))
    .bind(column(|e| e.delivery_timestamp.as_deref()))
    .bind(events.iter().map(|e| e.body.as_bytes()).collect::<Vec<_>>())
    .bind(column(|e| Some(&e.provider)))
    .bind(column(|e| Some(e.source.as_str())))
    .bind(column(|e| e.signature.as_deref()))
    .bind(column(|e| e.key_id.as_deref()))
    .bind(column(|e| e.event_timestamp.as_deref()))
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

/// Sorts a failed insert: data PostgreSQL refused (e.g. a `\u0000` escape jsonb cannot hold) is
/// the payload's fault, said so; unreachable and bugs as the store sorts them.
fn classify(error: &sqlx::Error) -> Failure {
    match Failure::of(error) {
        Failure::BadData(_) => Failure::BadData(format!(
            "payload cannot be stored: {}",
            error
                .as_database_error()
                .map(|db| db.message().to_string())
                .unwrap_or_default()
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_is_quiet_until_a_batch_is_stored_then_again_once_the_quiet_time_has_passed() {
        let activity = Activity::default();
        assert!(
            activity.quiet_for(Duration::from_secs(3600)),
            "never stored"
        );
        activity.stored();
        assert!(!activity.quiet_for(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.quiet_for(Duration::from_millis(10)));
    }
}
