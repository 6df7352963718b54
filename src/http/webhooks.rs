//! `POST /webhooks/{provider}` (`/webhooks/fluid` for FLUID): verify the signature over the raw
//! body with the provider's scheme, store the event once, and acknowledge with
//! `{"received":true}` as soon as the row is committed. Processing happens later, in the worker.

use std::time::{Duration, Instant};

use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::HeaderMap,
    middleware,
    response::{IntoResponse, Response},
    routing::post,
};
use http_body_util::BodyExt;
use serde_json::json;

use super::{
    AppState,
    error::{Error, Result},
    extract::Path,
    limits::{self, ClientIp, Limits},
};
use crate::intake::{envelope::NewEvent, inbox::Stored};

/// The webhook routes, behind the abuse limits, every answer counted.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/webhooks/{provider}", post(receive))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::guard))
        .route_layer(middleware::from_fn_with_state(state.clone(), count))
}

/// What the route did with a delivery, for the `fluid_webhooks_received_total` counter.
#[derive(Debug, Clone)]
struct Counted {
    event_type: String,
    outcome: &'static str,
}

/// Counts every answer of the webhook route by provider, event type and outcome, and times the
/// acknowledgements.
async fn count(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let (event_type, outcome) = match response.extensions().get::<Counted>() {
        Some(counted) => (counted.event_type.clone(), counted.outcome),
        None => {
            let outcome = match response.status().as_u16() {
                401 => "bad_signature",
                429 => "rate_limited",
                403 => "forbidden",
                404 => "unknown_provider",
                503 => "unavailable",
                _ => "rejected",
            };
            (String::new(), outcome)
        }
    };
    // Only configured providers get their own label, whatever the outcome (a rate-limited flood
    // to /webhooks/<random> included): a client must not be able to mint label values.
    let provider = if state.providers.get(&provider).is_some() {
        provider
    } else {
        "unknown".to_string()
    };
    let acknowledged = response.status().is_success().then(|| started.elapsed());
    if let Some(took) = acknowledged {
        metrics::histogram!("fluid_webhooks_ack_seconds", "provider" => provider.clone())
            .record(took.as_secs_f64());
    }
    state.deliveries.record(&provider, outcome, acknowledged);
    metrics::counter!("fluid_webhooks_received_total", "provider" => provider, "event_type" => event_type, "outcome" => outcome)
        .increment(1);
    response
}

async fn receive(
    State(state): State<AppState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let provider = state
        .providers
        .get(&provider)
        .ok_or(Error::UnknownProvider)?;
    if !Limits::allowed(&provider.allow_ips, client) {
        tracing::warn!(provider = %provider.name, client = %client, "webhook refused: address not allowed");
        return Err(Error::Forbidden(
            "this address may not deliver for this provider",
        ));
    }
    let body = read_body(body, state.max_body_bytes, state.limits.body_timeout()).await?;
    let now = chrono::Utc::now().timestamp();
    let verified = match provider.verify(&headers, &body, now) {
        Ok(verified) => verified,
        Err(e) => {
            tracing::warn!(provider = %provider.name, client = %client, reason = %e, bytes = body.len(), "webhook rejected: signature");
            return Err(e.into());
        }
    };
    let key_id = verified.key_id.clone();
    let event = NewEvent::parse(provider, verified, &body, &headers).inspect_err(|e| {
        tracing::warn!(provider = %provider.name, client = %client, reason = %e, "webhook rejected: payload");
    })?;
    let (event_id, event_type, delivery_id) = (
        event.event_id.clone(),
        event.event_type.clone(),
        event.delivery_id.clone(),
    );
    let stored = state.inbox.store(event).await?;
    if stored == Stored::New {
        state.wake.notify_one();
    }
    tracing::info!(
        provider = %provider.name,
        event_id = %event_id,
        event_type = %event_type,
        delivery_id = delivery_id.as_deref().unwrap_or(""),
        outcome = stored.as_str(),
        key_id = %key_id,
        ack_ms = started.elapsed().as_secs_f64() * 1000.0,
        "webhook acknowledged"
    );
    let mut response = Json(json!({ "received": true })).into_response();
    response.extensions_mut().insert(Counted {
        event_type,
        outcome: stored.as_str(),
    });
    Ok(response)
}

/// Reads the whole body, at most `limit` bytes (413) within `timeout` (408).
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes> {
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Error::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Error::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}
