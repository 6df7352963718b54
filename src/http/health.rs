//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: the database answers, so
//! a load balancer stops sending deliveries we would have to refuse with 503).

use std::time::Duration;

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use super::{
    AppState,
    error::{Error, Result},
};
use crate::store::{connect, database::is_unreachable};

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(Duration::from_secs(3).min(state.ingest_timeout), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        // The pool only says it timed out; one direct connection says why (host, port, cause).
        Ok(Err(e)) if is_unreachable(&e) => {
            let options = state.pool.pool().connect_options();
            let why = match connect::probe(&options, Duration::from_secs(2)).await {
                Err(problem) => problem.message,
                Ok(()) => e.to_string(),
            };
            Err(Error::Unavailable(anyhow::anyhow!(why)))
        }
        Ok(Err(e)) => Err(Error::Unavailable(e.into())),
        Err(_) => Err(Error::Unavailable(anyhow::anyhow!(
            "database did not answer in time"
        ))),
    }
}
