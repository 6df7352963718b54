//! FLUID's API as the poller uses it: `GET /payment-providers/debit-requests/{reference}`, with
//! one HTTP client whose connections are reused, and what its answers mean (a status, a refusal,
//! a pause asked for by its rate limit).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url, header};
use serde_json::Value;

use super::API_KEY_VAR;
use crate::{
    follow_up::{error_chain, http_client},
    intake::envelope::{MAX_DEPTH, nesting_depth},
    secret::Secret,
};

/// Largest answer read from FLUID's API (a debit request is well under 4 KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Longest pause a `Retry-After` or `RateLimit-Reset` is believed for.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// What FLUID's API said about one debit request.
#[derive(Debug)]
pub enum Answer {
    /// The request's status, and the whole body.
    Status {
        /// `data.status`.
        status: String,
        /// The body.
        body: Value,
    },
    /// 404: FLUID does not know the reference.
    NotFound,
    /// 429.
    RateLimited,
    /// 401 or 403: the API key is wrong or lacks the right.
    Unauthorized(u16),
    /// Another HTTP status, or the connection failed.
    Failed(String),
    /// No answer within the timeout.
    Timeout,
    /// An answer that is not the documented JSON.
    Invalid(String),
}

impl Answer {
    /// The `outcome` label of `fluid_webhooks_reconciliation_polls_total` (and of the table).
    /// A status is `changed` or `unchanged` once compared with ours, which `record` does.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Status { .. } => "answered",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized(_) => "unauthorized",
            Self::Failed(_) => "error",
            Self::Timeout => "timeout",
            Self::Invalid(_) => "invalid",
        }
    }

    /// What is kept in `reconciliation.last_error` for answers that are not a status.
    pub(crate) fn error(&self) -> Option<String> {
        match self {
            Self::Status { .. } | Self::RateLimited | Self::Timeout => None,
            Self::NotFound => Some("FLUID does not know this reference".into()),
            Self::Unauthorized(code) => Some(format!(
                "FLUID refused the API key (HTTP {code}); check {API_KEY_VAR}"
            )),
            Self::Failed(e) | Self::Invalid(e) => Some(e.clone()),
        }
    }
}

/// An answer, and how long FLUID asked every client of this key to wait (429's `Retry-After`, or
/// `RateLimit-Reset` once `RateLimit-Remaining` reached 0).
#[derive(Debug)]
pub struct Polled {
    /// What FLUID said.
    pub answer: Answer,
    /// Pause all polling this long.
    pub pause: Option<Duration>,
}

/// FLUID's API, with one HTTP client whose connections are reused.
#[derive(Clone)]
pub struct FluidApi {
    client: reqwest::Client,
    base: Url,
    key: Secret,
}

impl FluidApi {
    /// A client for `base_url`, authenticated with `key`, giving each request `timeout`.
    pub fn new(base: Url, key: Secret, timeout: Duration) -> anyhow::Result<Self> {
        let client = http_client(timeout)?;
        Ok(Self { client, base, key })
    }

    /// The URL of one debit request; the reference is percent-encoded as one path segment.
    pub fn debit_request_url(&self, reference: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["payment-providers", "debit-requests", reference]);
        }
        url
    }

    /// `GET /payment-providers/debit-requests/{reference}`.
    pub async fn debit_request(&self, reference: &str) -> Polled {
        let sent = self
            .client
            .get(self.debit_request_url(reference))
            .bearer_auth(self.key.expose())
            .header(header::ACCEPT, "application/json")
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return unanswered(&e),
        };
        let status = response.status();
        let pause = pause_asked(status, response.headers());
        let answer = match status {
            StatusCode::TOO_MANY_REQUESTS => Answer::RateLimited,
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Answer::Unauthorized(status.as_u16())
            }
            s if !s.is_success() => Answer::Failed(format!("FLUID answered HTTP {}", s.as_u16())),
            _ => {
                let mut body = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                            body.extend_from_slice(&chunk)
                        }
                        Ok(Some(_)) => {
                            break Answer::Invalid(format!(
                                "answer larger than {MAX_ANSWER_BYTES} bytes"
                            ));
                        }
                        Ok(None) => break read_answer(&body),
                        Err(e) => return unanswered(&e),
                    }
                }
            }
        };
        Polled { answer, pause }
    }
}

fn unanswered(e: &reqwest::Error) -> Polled {
    let answer = if e.is_timeout() {
        Answer::Timeout
    } else {
        // The error names the URL (the reference, never the key) and its causes.
        Answer::Failed(error_chain(e))
    };
    Polled {
        answer,
        pause: None,
    }
}

/// FLUID's documented answer: `{"success": true, "data": {"reference", "status", "response": {...}}}`.
pub(crate) fn read_answer(body: &[u8]) -> Answer {
    if nesting_depth(body) > MAX_DEPTH {
        return Answer::Invalid(format!("answer nested deeper than {MAX_DEPTH} levels"));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Answer::Invalid(format!("answer is not JSON: {e}")),
    };
    let data = &value["data"];
    let status = data["status"]
        .as_str()
        .or_else(|| data["response"]["status"].as_str());
    match status {
        _ if value["success"] == Value::Bool(false) => {
            Answer::Invalid(format!("FLUID answered success=false: {}", value["error"]))
        }
        Some(status) => Answer::Status {
            status: status.to_string(),
            body: value,
        },
        None => Answer::Invalid("answer has no data.status".into()),
    }
}

/// How long FLUID asks us to wait: `Retry-After` on a 429 (60 s when absent), or `RateLimit-Reset`
/// once `RateLimit-Remaining` is 0. Capped at an hour.
fn pause_asked(status: StatusCode, headers: &header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let pause = if status == StatusCode::TOO_MANY_REQUESTS {
        Some(
            text("retry-after")
                .and_then(seconds_or_date)
                .unwrap_or(Duration::from_secs(60)),
        )
    } else if text("ratelimit-remaining") == Some("0") {
        text("ratelimit-reset").and_then(seconds_or_date)
    } else {
        None
    };
    pause.map(|p| p.min(MAX_PAUSE))
}

/// Delta-seconds, a Unix time (a reset given as an epoch), or an HTTP date.
fn seconds_or_date(text: &str) -> Option<Duration> {
    let now = Utc::now();
    if let Ok(n) = text.parse::<u64>() {
        return Some(if n > 1_000_000_000 {
            let at = DateTime::<Utc>::from_timestamp(i64::try_from(n).ok()?, 0)?;
            (at - now).to_std().unwrap_or_default()
        } else {
            Duration::from_secs(n)
        });
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow_up::http_url;

    #[test]
    fn broken_answers_are_invalid() {
        for body in [
            "not json",
            r#"{"success":true,"data":{}}"#,
            r#"{"success":false,"error":{"code":3009,"message":"x"}}"#,
            &format!("{}{}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert!(
                matches!(read_answer(body.as_bytes()), Answer::Invalid(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn fluid_asks_for_pauses_with_retry_after_or_an_exhausted_rate_limit() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = header::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().expect("header value"));
            }
            map
        };
        let limited = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            pause_asked(limited, &headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            pause_asked(limited, &headers(&[])),
            Some(Duration::from_secs(60)),
            "a 429 without Retry-After waits a minute"
        );
        assert_eq!(
            pause_asked(limited, &headers(&[("retry-after", "999999")])),
            Some(MAX_PAUSE)
        );
        let date = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let pause = pause_asked(limited, &headers(&[("retry-after", &date)])).expect("a pause");
        assert!((28..=30).contains(&pause.as_secs()), "{pause:?}");
        let ok = StatusCode::OK;
        assert_eq!(
            pause_asked(
                ok,
                &headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "12")])
            ),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            pause_asked(
                ok,
                &headers(&[("ratelimit-remaining", "5"), ("ratelimit-reset", "12")])
            ),
            None
        );
    }

    #[test]
    fn the_reference_is_one_encoded_path_segment() {
        let base = http_url("https://sandbox-api.fluid-network.com/api/v1/").expect("a URL");
        let api = FluidApi::new(base, Secret::new("k"), Duration::from_secs(1)).expect("valid");
        assert_eq!(
            api.debit_request_url("FLU/../x y").as_str(),
            "https://sandbox-api.fluid-network.com/api/v1/payment-providers/debit-requests/FLU%2F..%2Fx%20y"
        );
        assert!(http_url("ftp://x").is_err() && http_url("mailto:a@b").is_err());
    }
}
