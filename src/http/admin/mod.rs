//! The admin API under `/admin`, for the engineer on call: list and inspect stored events, replay
//! one or every dead letter (re-applied through the same rules, so a replay is idempotent),
//! statistics over a window, and a transaction with its events. Mounted only when `ADMIN_TOKEN`
//! is set; every request needs `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.
//! Described by `docs/openapi.json`, which a test checks against [`ROUTES`]:
//! [`events`] (list, inspect, replay), [`stats`] and [`transactions`].

mod events;
mod stats;
mod transactions;

use axum::{
    Router,
    extract::Request,
    http::header,
    middleware::{self, Next},
    response::IntoResponse,
    routing::{MethodFilter, MethodRouter, on},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, error::Error};
use crate::secret::Secret;

/// An HTTP method of an admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET: reads.
    Get,
    /// POST: replays.
    Post,
}

impl Method {
    /// The lowercase name, as `docs/openapi.json` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
        }
    }
}

/// One admin route: its method, its path and its handler, named once.
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, with `{param}` segments.
    pub path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// Every admin route; the router and the OpenAPI test both read this table.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/admin/events",
        handler: |m| on(m, events::list),
    },
    Route {
        method: Method::Get,
        path: "/admin/events/{provider}/{event_id}",
        handler: |m| on(m, events::one),
    },
    Route {
        method: Method::Post,
        path: "/admin/events/{provider}/{event_id}/replay",
        handler: |m| on(m, events::replay_one),
    },
    Route {
        method: Method::Post,
        path: "/admin/events/replay-dead",
        handler: |m| on(m, events::replay_dead),
    },
    Route {
        method: Method::Get,
        path: "/admin/stats",
        handler: |m| on(m, stats::stats),
    },
    Route {
        method: Method::Get,
        path: "/admin/transactions",
        handler: |m| on(m, transactions::lookup),
    },
    Route {
        method: Method::Post,
        path: "/admin/transactions",
        handler: |m| on(m, transactions::expected),
    },
];

/// The admin routes, behind the bearer token.
pub fn router(token: Secret) -> Router<AppState> {
    let expected = Sha256::digest(token.expose().as_bytes());
    ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, (route.handler)(route.method.filter()))
        })
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let expected = expected;
            async move {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|t| Sha256::digest(t.trim().as_bytes()));
                // Hashing both sides first makes the comparison constant-time whatever the lengths.
                match presented {
                    Some(p) if bool::from(p.ct_eq(&expected)) => next.run(request).await,
                    _ => Error::Unauthorized.into_response(),
                }
            }
        }))
}
