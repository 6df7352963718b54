//! `POST /webhooks/{provider}` (`/webhooks/fluid` for FLUID): verify the signature over the raw
//! body with the provider's scheme, store the event once, and acknowledge with
//! `{"received":true}` as soon as the row is committed. Processing happens later, in the worker.

use std::{net::SocketAddr, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, Path, State, rejection::BytesRejection},
    http::HeaderMap,
    routing::post,
};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    inbox::{NewEvent, Stored},
    startup::AppState,
};

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{provider}", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let started = Instant::now();
    let body = body.map_err(|r| Error::from_body(r, state.max_body_bytes))?;
    let provider = state
        .providers
        .get(&provider)
        .ok_or(Error::UnknownProvider)?;
    let now = chrono::Utc::now().timestamp();
    let key = match provider.verify(&headers, &body, now) {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(provider = %provider.name, client = %client.ip(), reason = %e, bytes = body.len(), "webhook rejected: signature");
            return Err(e.into());
        }
    };
    let event = NewEvent::parse(provider, &body, &headers).inspect_err(|e| {
        tracing::warn!(client = %client.ip(), reason = %e, "webhook rejected: payload");
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
        key,
        ack_ms = started.elapsed().as_secs_f64() * 1000.0,
        "webhook acknowledged"
    );
    Ok(Json(json!({ "received": true })))
}
