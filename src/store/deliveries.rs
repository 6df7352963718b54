//! Deliveries by minute, provider and outcome, with a histogram of acknowledgement times, kept in
//! `delivery_minutes` for the console's overview. Requests only add to an in-memory [`Tally`] (a
//! short mutex, no I/O); [`run`] adds it to the table every few seconds and at shutdown, with an
//! upsert that adds, so every replica's counts sum up in one place.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::db::Db;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

/// Upper bounds (milliseconds) of the acknowledgement histogram; one more bucket counts the rest.
pub const ACK_BOUNDS_MS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
    10000.0,
];

/// How often counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How long minutes are kept (the overview shows the last day).
const KEEP: &str = "2 days";

#[derive(Default)]
struct Minute {
    deliveries: i64,
    ack_buckets: Vec<i64>,
}

/// A minute, a provider and an outcome.
type Key = (DateTime<Utc>, String, &'static str);

/// This process's counts not written yet, shared by every request.
#[derive(Clone, Default)]
pub struct Tally(Arc<Mutex<HashMap<Key, Minute>>>);

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tally")
    }
}

impl Tally {
    /// Counts one answered delivery; `ack` is its time to answer when it was acknowledged (2xx).
    pub fn record(&self, provider: &str, outcome: &'static str, ack: Option<Duration>) {
        let now = Utc::now();
        let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
        let Ok(mut counts) = self.0.lock() else {
            return;
        };
        let entry = counts
            .entry((minute, provider.to_string(), outcome))
            .or_insert_with(|| Minute {
                deliveries: 0,
                ack_buckets: vec![0; ACK_BOUNDS_MS.len() + 1],
            });
        entry.deliveries += 1;
        if let Some(ack) = ack {
            let ms = ack.as_secs_f64() * 1000.0;
            let bucket = ACK_BOUNDS_MS
                .iter()
                .position(|bound| ms <= *bound)
                .unwrap_or(ACK_BOUNDS_MS.len());
            entry.ack_buckets[bucket] += 1;
        }
    }

    /// Adds what was counted to `delivery_minutes`; on failure the counts are kept for the next
    /// try.
    pub async fn flush(&self, pool: &Db) -> Result<(), sqlx::Error> {
        let taken = match self.0.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return Ok(()),
        };
        if taken.is_empty() {
            return Ok(());
        }
        let mut minutes = Vec::with_capacity(taken.len());
        let mut providers = Vec::with_capacity(taken.len());
        let mut outcomes = Vec::with_capacity(taken.len());
        let mut deliveries = Vec::with_capacity(taken.len());
        // A two-dimensional array parameter: one row of buckets per minute.
        let mut buckets = Vec::with_capacity(taken.len() * (ACK_BOUNDS_MS.len() + 1));
        // In key order, so that two replicas adding to the same minutes never wait on each other
        // in opposite orders.
        let mut rows: Vec<_> = taken.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        for ((minute, provider, outcome), counts) in rows {
            minutes.push(*minute);
            providers.push(provider.as_str());
            outcomes.push(*outcome);
            deliveries.push(counts.deliveries);
            buckets.extend_from_slice(&counts.ack_buckets);
        }
        let written = sqlx::query(
            "INSERT INTO delivery_minutes AS d (minute, provider, outcome, deliveries, ack_buckets) \
             SELECT r.minute, r.provider, r.outcome, r.deliveries, \
                    ($5::bigint[])[(r.n - 1) * $6 + 1 : r.n * $6] \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::bigint[]) \
                  WITH ORDINALITY AS r(minute, provider, outcome, deliveries, n) \
             ON CONFLICT (minute, provider, outcome) DO UPDATE SET \
                 deliveries = d.deliveries + excluded.deliveries, \
                 ack_buckets = ARRAY( \
                     SELECT a + b FROM unnest(d.ack_buckets, excluded.ack_buckets) \
                          WITH ORDINALITY AS u(a, b, i) ORDER BY i)",
        )
        .bind(&minutes)
        .bind(&providers)
        .bind(&outcomes)
        .bind(&deliveries)
        .bind(&buckets)
        .bind(i64::try_from(ACK_BOUNDS_MS.len() + 1).unwrap_or(i64::MAX))
        .execute(pool)
        .await;
        if let Err(e) = written {
            // Put them back, added to whatever arrived meanwhile.
            if let Ok(mut counts) = self.0.lock() {
                for (key, minute) in taken {
                    let entry = counts.entry(key).or_default();
                    entry.deliveries += minute.deliveries;
                    if entry.ack_buckets.is_empty() {
                        entry.ack_buckets = minute.ack_buckets;
                    } else {
                        for (a, b) in entry.ack_buckets.iter_mut().zip(minute.ack_buckets) {
                            *a += b;
                        }
                    }
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Writes the tally every few seconds and once more at `shutdown`; deletes minutes older than two
/// days now and then.
pub async fn run(tally: Tally, pool: Db, shutdown: CancellationToken) {
    let mut rounds: u64 = 0;
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(FLUSH_EVERY) => false,
        };
        if let Err(e) = tally.flush(&pool).await {
            tracing::warn!(error = %e, "could not write the delivery counts; will try again");
        }
        if stopping {
            return;
        }
        if rounds.is_multiple_of(720) {
            let purge =
                format!("DELETE FROM delivery_minutes WHERE minute < now() - interval '{KEEP}'");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(purge)).execute(&pool).await {
                tracing::warn!(error = %e, "could not delete old delivery counts");
            }
        }
        rounds += 1;
    }
}

/// Deliveries of one outcome over the last hour and day.
#[derive(Debug, Clone)]
pub struct OutcomeCounts {
    /// accepted, duplicate, bad_signature, ...
    pub outcome: String,
    /// In the last hour.
    pub hour: i64,
    /// In the last day.
    pub day: i64,
}

/// What the overview shows of deliveries.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// By outcome, most frequent first.
    pub outcomes: Vec<OutcomeCounts>,
    /// Acknowledgement p50 and p99 in milliseconds, last hour.
    pub hour_ms: (Option<f64>, Option<f64>),
    /// The same over the last day.
    pub day_ms: (Option<f64>, Option<f64>),
}

impl Summary {
    /// Reads the last day's minutes (at most 1,440 rows per provider and outcome).
    pub async fn read(pool: &Db) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, bool, i64, Vec<i64>)> = sqlx::query_as(
            "SELECT outcome, minute > now() - interval '1 hour', deliveries, ack_buckets \
             FROM delivery_minutes WHERE minute > now() - interval '1 day'",
        )
        .fetch_all(pool)
        .await?;
        let mut outcomes: HashMap<String, (i64, i64)> = HashMap::new();
        let mut hour = vec![0; ACK_BOUNDS_MS.len() + 1];
        let mut day = vec![0; ACK_BOUNDS_MS.len() + 1];
        for (outcome, in_hour, deliveries, buckets) in rows {
            let counts = outcomes.entry(outcome).or_default();
            counts.1 += deliveries;
            add(&mut day, &buckets);
            if in_hour {
                counts.0 += deliveries;
                add(&mut hour, &buckets);
            }
        }
        let mut outcomes: Vec<OutcomeCounts> = outcomes
            .into_iter()
            .map(|(outcome, (hour, day))| OutcomeCounts { outcome, hour, day })
            .collect();
        outcomes.sort_by(|a, b| b.day.cmp(&a.day).then_with(|| a.outcome.cmp(&b.outcome)));
        Ok(Self {
            outcomes,
            hour_ms: (quantile(&hour, 0.5), quantile(&hour, 0.99)),
            day_ms: (quantile(&day, 0.5), quantile(&day, 0.99)),
        })
    }
}

fn add(into: &mut [i64], buckets: &[i64]) {
    for (a, b) in into.iter_mut().zip(buckets) {
        *a += b;
    }
}

/// The `q` quantile of a histogram, interpolated inside its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations. Beyond the last bound it is that bound.
pub fn quantile(buckets: &[i64], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0i64;
    for (i, count) in buckets.iter().enumerate() {
        if (below + count) as f64 >= rank && *count > 0 {
            let Some(upper) = ACK_BOUNDS_MS.get(i) else {
                return ACK_BOUNDS_MS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { ACK_BOUNDS_MS[i - 1] };
            let within = (rank - below as f64) / *count as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    ACK_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(observations_ms: &[f64]) -> Vec<i64> {
        let tally = Tally::default();
        for ms in observations_ms {
            tally.record(
                "fluid",
                "accepted",
                Some(Duration::from_secs_f64(ms / 1000.0)),
            );
        }
        let counts = tally.0.lock().expect("lock");
        counts
            .values()
            .next()
            .expect("a minute")
            .ack_buckets
            .clone()
    }

    #[test]
    fn quantiles_fall_in_the_bucket_that_holds_them() {
        // 98 fast acknowledgements and 2 slow ones: the median is under a millisecond, the p99 in
        // the slow bucket.
        let mut observed = vec![0.8; 98];
        observed.extend([40.0, 45.0]);
        let buckets = histogram(&observed);
        let p50 = quantile(&buckets, 0.5).expect("observed");
        let p99 = quantile(&buckets, 0.99).expect("observed");
        assert!((0.5..=1.0).contains(&p50), "p50 {p50}");
        assert!((25.0..=50.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn no_observation_has_no_quantile_and_the_slowest_are_capped() {
        assert_eq!(quantile(&[0; 17], 0.5), None);
        let buckets = histogram(&[60_000.0]);
        assert_eq!(buckets[ACK_BOUNDS_MS.len()], 1);
        assert_eq!(quantile(&buckets, 0.99), Some(10000.0));
    }

    #[test]
    fn a_refused_delivery_is_counted_without_a_time() {
        let tally = Tally::default();
        tally.record("fluid", "bad_signature", None);
        let counts = tally.0.lock().expect("lock");
        let minute = counts.values().next().expect("a minute");
        assert_eq!(minute.deliveries, 1);
        assert_eq!(minute.ack_buckets.iter().sum::<i64>(), 0);
    }
}
