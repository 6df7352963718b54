//! The load: signed FLUID events (pending then completed for each transaction), duplicates and
//! forged copies in a reproducible order, and the load generator that sends them over keep-alive
//! connections and records every answer.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use fluid_webhooks::{intake::signature, secret::Secret};

/// The webhook secret the benchmark's service verifies with.
pub const SECRET: &str = "whsec_bench_secret";

/// A signed FLUID event whose id is `event_id`, for the transaction `reference`.
pub fn signed_body(event: &str, event_id: &str, reference: &str, step: usize) -> (String, String) {
    let status = event.strip_prefix("transaction.").unwrap_or("completed");
    let body = format!(
        r#"{{"event":"{event}","event_id":"{event_id}","timestamp":"2026-01-28T10:30:0{step}Z","api_version":"v1","data":{{"transaction":{{"id":"dt_{reference}","uuid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","reference":"FLU-BENCH-{reference}","partner_reference":"order_{reference}","status":"{status}","amount":100.00,"currency":"GHS","fee":1.50,"narration":"Order {reference}","approval_method":"ussd","bank":{{"name":"Test Bank","identifier":"TST","country_code":"GH"}},"customer":{{"name":"Kofi Mensah","phone_number":"+233241234567"}},"created_at":"2026-01-28T10:29:00Z"}},"previous_status":null,"metadata":{{}}}}}}"#
    );
    let signature = signature::sign(&Secret::new(SECRET), body.as_bytes());
    (body, signature)
}

/// One request of the load: which event, and whether it is meant to fail verification.
pub struct Request {
    pub event_id: String,
    pub body: String,
    pub signature: String,
    pub forged: bool,
}

/// `events` unique events (pending then completed for each transaction), plus duplicates of
/// earlier ones and forged copies, in a shuffled but reproducible order.
pub fn workload(events: usize, duplicates: f64, bad_signatures: f64) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000_000) as f64 / 1_000_000.0
    };
    for i in 0..events {
        let (reference, step) = (i / 2, i % 2);
        let event = if step == 0 {
            "transaction.pending"
        } else {
            "transaction.completed"
        };
        let event_id = format!("evt_bench_{i:08}");
        let (body, signature) = signed_body(event, &event_id, &format!("{reference:08}"), step);
        requests.push(Request {
            event_id,
            body,
            signature,
            forged: false,
        });
    }
    let unique = requests.len();
    let extra_dup = (unique as f64 * duplicates / (1.0 - duplicates).max(0.01)) as usize;
    for _ in 0..extra_dup {
        let original = &requests[(random() * unique as f64) as usize];
        let copy = Request {
            event_id: original.event_id.clone(),
            body: original.body.clone(),
            signature: original.signature.clone(),
            forged: false,
        };
        requests.push(copy);
    }
    let forged = (unique as f64 * bad_signatures) as usize;
    for k in 0..forged {
        let original = &requests[k % unique];
        let copy = Request {
            event_id: original.event_id.clone(),
            body: original.body.clone(),
            signature: "0".repeat(64),
            forged: true,
        };
        requests.push(copy);
    }
    // Fisher-Yates with the same generator, keeping each transaction's two events roughly in order.
    for i in (unique..requests.len()).rev() {
        let j = unique + (random() * (i - unique + 1) as f64) as usize;
        requests.swap(i, j.min(i));
    }
    let mut mixed = Vec::with_capacity(requests.len());
    let mut extras = requests.split_off(unique).into_iter();
    for (i, r) in requests.into_iter().enumerate() {
        mixed.push(r);
        if i % 4 == 3 {
            mixed.extend(extras.next());
        }
    }
    mixed.extend(extras);
    mixed
}

pub struct Outcome {
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
    pub acked: HashSet<String>,
    /// 200, 401, 503, other 4xx, other, transport error.
    pub statuses: [usize; 6], // 200, 401, 503, other 4xx, other, transport error
}

pub async fn load(address: &str, requests: Arc<Vec<Request>>, concurrency: usize) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{address}/webhooks/fluid");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, requests) =
                (client.clone(), url.clone(), next.clone(), requests.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut acked = Vec::new();
                let mut statuses = [0usize; 6];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = requests.get(i) else { break };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-fluid-signature", &r.signature)
                        .header("x-fluid-event", "transaction.completed")
                        .header("x-fluid-delivery-id", "dlv_bench")
                        .body(r.body.clone())
                        .send()
                        .await;
                    let status = match response {
                        Ok(resp) => {
                            let code = resp.status().as_u16();
                            let _ = resp.bytes().await;
                            code
                        }
                        Err(_) => 0,
                    };
                    latencies.push(sent.elapsed().as_micros() as u64);
                    let slot = match status {
                        200 => 0,
                        401 => 1,
                        503 => 2,
                        400..=499 => 3,
                        0 => 5,
                        _ => 4,
                    };
                    statuses[slot] += 1;
                    if status == 200 {
                        assert!(!r.forged, "a forged delivery was acknowledged");
                        acked.push(r.event_id.clone());
                    }
                }
                (latencies, acked, statuses)
            })
        })
        .collect();
    let mut outcome = Outcome {
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        acked: HashSet::new(),
        statuses: [0; 6],
    };
    for task in tasks {
        let (latencies, acked, statuses) = task.await.expect("load task");
        outcome.latencies_us.extend(latencies);
        outcome.acked.extend(acked);
        for (total, n) in outcome.statuses.iter_mut().zip(statuses) {
            *total += n;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}
