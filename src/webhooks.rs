//! `POST /webhooks/fluid`: verify the signature over the raw body, store the event once, and
//! acknowledge with `{"received":true}` as soon as the row is committed. Processing happens later,
//! in the worker.

use std::{net::SocketAddr, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, State, rejection::BytesRejection},
    http::HeaderMap,
    routing::post,
};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    inbox::{NewEvent, Stored},
    signature,
    startup::AppState,
};

/// The webhook routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/fluid", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let started = Instant::now();
    let body = body.map_err(|r| Error::from_body(r, state.max_body_bytes))?;
    let header = headers.get(signature::HEADER).map(|v| v.as_bytes());
    let key = match signature::verify(&state.keys, header, &body) {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(client = %client.ip(), reason = %e, bytes = body.len(), "webhook rejected: signature");
            return Err(e.into());
        }
    };
    let event = NewEvent::parse(&body, &headers).inspect_err(|e| {
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
