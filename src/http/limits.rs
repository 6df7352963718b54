//! Abuse limits in front of the webhook routes, so the receiver stays safe on the open internet:
//! who the client is (its address, or the one a trusted proxy forwarded), HTTPS at the proxy,
//! a per-client token bucket, a cap on requests in flight, and per-provider IP allowlists.
//! Every refusal is a JSON error; none of them touches the database.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{AppState, error::Error};

/// `[limits]`: see `config/default.toml` for each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Sustained requests per second per client address; 0 turns the rate limit off.
    pub rate_per_second: f64,
    /// Requests a client may send at once before the rate applies.
    pub burst: f64,
    /// Requests handled at once; beyond, 503.
    pub max_concurrent_requests: usize,
    /// Time a client has to send its request head; slower, the connection is closed.
    pub header_timeout_ms: u64,
    /// Time a client has to send the body; slower, 408.
    pub body_timeout_ms: u64,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    #[serde(deserialize_with = "crate::networks::list")]
    pub trusted_proxies: Vec<IpNet>,
    /// Refuse webhook requests that did not reach the proxy over HTTPS.
    pub require_https: bool,
}

impl LimitSettings {
    /// The rules of `[limits]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                !(self.rate_per_second >= 0.0 && self.rate_per_second.is_finite()),
                "limits.rate_per_second",
                "must be 0 (off) or more",
            ),
            (
                !(self.burst >= 1.0 && self.burst.is_finite()),
                "limits.burst",
                "must be at least 1",
            ),
            (
                self.max_concurrent_requests == 0,
                "limits.max_concurrent_requests",
                "must be at least 1",
            ),
            // The service speaks plain HTTP: only a trusted proxy can say a request came over
            // HTTPS. Without one every delivery would be refused.
            (
                self.require_https && self.trusted_proxies.is_empty(),
                "limits.require_https",
                "needs limits.trusted_proxies: the service itself speaks plain HTTP, so only a \
                 trusted proxy's X-Forwarded-Proto can say a request came over HTTPS (set the \
                 proxy's network, or turn require_https off)",
            ),
        ]
    }
}

/// The client address of a request, as [`guard`] determined it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The shared state of the limits.
#[derive(Debug)]
pub struct Limits {
    settings: LimitSettings,
    in_flight: Arc<Semaphore>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most client addresses tracked at once; beyond, buckets that have refilled are forgotten.
const MAX_TRACKED: usize = 100_000;

impl Limits {
    /// Limits with these settings.
    pub fn new(settings: LimitSettings) -> Self {
        let permits = settings.max_concurrent_requests.max(1);
        Self {
            settings,
            in_flight: Arc::new(Semaphore::new(permits)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The time a client has to send its body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.body_timeout_ms)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// The client: the peer, or, when the peer is a trusted proxy, the right-most address in
    /// `X-Forwarded-For` that is not itself a trusted proxy (the left part can be forged).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|part| part.trim().parse::<IpAddr>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !self.trusted(*ip))
            .or(forwarded.first().copied())
            .unwrap_or(peer)
    }

    /// Whether the request reached us over HTTPS (at a trusted proxy that says so).
    pub fn arrived_over_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        self.trusted(peer)
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    /// Takes a token from the client's bucket; `Err` holds the seconds until one is back.
    pub fn take_token(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let (rate, burst) = (self.settings.rate_per_second, self.settings.burst.max(1.0));
        if rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&client) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Whether `client` may deliver for a provider whose allowlist is `allowed` (empty: anyone).
    pub fn allowed(allowed: &[IpNet], client: IpAddr) -> bool {
        allowed.is_empty() || allowed.iter().any(|net| net.contains(&client))
    }
}

/// The middleware of the webhook routes: requests in flight, HTTPS, who the client is, its rate.
pub async fn guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let limits = &state.limits;
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(peer = %peer.ip(), "webhook refused: too many requests in flight");
        return Error::Busy.into_response();
    };
    if limits.settings.require_https && !limits.arrived_over_https(peer.ip(), request.headers()) {
        tracing::warn!(peer = %peer.ip(), "webhook refused: not HTTPS at a trusted proxy");
        return Error::Forbidden("HTTPS is required").into_response();
    }
    let client = limits.client_ip(peer.ip(), request.headers());
    if let Err(retry_after) = limits.take_token(client, Instant::now()) {
        tracing::warn!(client = %client, "webhook refused: rate limit");
        return Error::RateLimited { retry_after }.into_response();
    }
    request.extensions_mut().insert(ClientIp(client));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: f64, trusted: &[&str]) -> Limits {
        Limits::new(LimitSettings {
            rate_per_second: rate,
            burst,
            max_concurrent_requests: 10,
            header_timeout_ms: 1000,
            body_timeout_ms: 1000,
            trusted_proxies: trusted.iter().map(|n| n.parse().expect("CIDR")).collect(),
            require_https: false,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("IP")
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let l = limits(2.0, 3.0, &[]);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take_token(ip("10.0.0.1"), start), Ok(()));
        }
        assert_eq!(l.take_token(ip("10.0.0.1"), start), Err(1));
        assert_eq!(
            l.take_token(ip("10.0.0.2"), start),
            Ok(()),
            "another client has its own bucket"
        );
        assert_eq!(
            l.take_token(ip("10.0.0.1"), start + Duration::from_millis(600)),
            Ok(())
        );
        assert!(
            limits(0.0, 1.0, &[])
                .take_token(ip("10.0.0.1"), start)
                .is_ok(),
            "0 turns it off"
        );
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let l = limits(1.0, 1.0, &["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.1.1.1".parse().expect("header"),
        );
        assert_eq!(
            l.client_ip(ip("10.0.0.5"), &headers),
            ip("203.0.113.7"),
            "right-most untrusted"
        );
        assert_eq!(
            l.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1"),
            "untrusted peer"
        );
        headers.insert("x-forwarded-for", "not-an-ip".parse().expect("header"));
        assert_eq!(l.client_ip(ip("10.0.0.5"), &headers), ip("10.0.0.5"));
    }

    #[test]
    fn https_is_what_a_trusted_proxy_says() {
        let l = limits(1.0, 1.0, &["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().expect("header"));
        assert!(l.arrived_over_https(ip("10.0.0.5"), &headers));
        assert!(
            !l.arrived_over_https(ip("198.51.100.1"), &headers),
            "anyone can send the header"
        );
        assert!(!l.arrived_over_https(ip("10.0.0.5"), &HeaderMap::new()));
    }

    #[test]
    fn allowlists() {
        let nets: Vec<IpNet> = vec!["203.0.113.0/24".parse().expect("CIDR")];
        assert!(Limits::allowed(&nets, ip("203.0.113.9")));
        assert!(!Limits::allowed(&nets, ip("198.51.100.1")));
        assert!(Limits::allowed(&[], ip("198.51.100.1")));
    }
}
