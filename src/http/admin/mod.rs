//! The admin API under `/admin`, for the engineer on call: list and inspect stored events, replay
//! one or every dead letter (re-applied through the same rules, so a replay is idempotent),
//! statistics over a window, and a transaction with its events. Mounted only when `ADMIN_TOKEN`
//! is set; every request needs `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.
//! Described by `docs/openapi.json`, which a test checks against [`ROUTES`]:
//! [`events`] (list, inspect, replay), [`stats`] and [`transactions`].

pub(crate) mod events;
mod stats;
pub(crate) mod transactions;

use axum::{
    Router,
    extract::Request,
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
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

/// The admin routes. They sit behind [`Guard`], which the whole router wears.
pub fn router() -> Router<AppState> {
    ROUTES.iter().fold(Router::new(), |router, route| {
        router.route(route.path, (route.handler)(route.method.filter()))
    })
}

/// The bearer-token check of every path under `/admin`, run before any routing: an anonymous
/// caller gets 401 for an admin path that does not exist, or a method it does not take, as for
/// one that does, and so learns nothing of which admin paths exist.
#[derive(Clone)]
pub struct Guard {
    /// SHA-256 of the token: hashing both sides first makes the comparison constant-time
    /// whatever the lengths.
    expected: [u8; 32],
}

impl Guard {
    /// A guard for `token`.
    pub fn new(token: &Secret) -> Self {
        Self {
            expected: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }

    /// Whether a path is the admin API's.
    fn guards(path: &str) -> bool {
        path == "/admin" || path.starts_with("/admin/")
    }

    /// The middleware: admin paths need `Authorization: Bearer <ADMIN_TOKEN>`; others pass.
    pub async fn check(self, request: Request, next: Next) -> Response {
        if !Self::guards(request.uri().path()) {
            return next.run(request).await;
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Sha256::digest(t.trim().as_bytes()));
        match presented {
            Some(p) if bool::from(p.ct_eq(&self.expected)) => next.run(request).await,
            _ => Error::Unauthorized.into_response(),
        }
    }
}
