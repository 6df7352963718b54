//! `fluid-webhooks healthcheck`: exit 0 when the service on this machine answers `/healthz` (the
//! container's HEALTHCHECK, which has no shell or curl).

use std::time::Duration;

use anyhow::Context;

/// GETs `url`, by default `http://127.0.0.1:$PORT/healthz`; fails unless it answers 2xx.
pub async fn run(url: Option<String>) -> anyhow::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}/healthz"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    Ok(())
}
