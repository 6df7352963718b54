//! `fluid-webhooks healthcheck`: exit 0 when the service on this machine answers `/healthz` (the
//! container's HEALTHCHECK, which has no shell or curl).

use std::time::Duration;

use anyhow::Context;

use crate::app::config::Settings;

/// GETs `url`, by default `/healthz` on the address `serve` listens on with the same settings
/// (`PORT`, `HOST`, `FLUID_WEBHOOKS_SERVER__PORT`, the config files); fails unless it answers 2xx.
pub async fn run(url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => default_url(&Settings::without_secret(&std::env::vars().collect())?),
    };
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

/// Where `serve` with these settings answers: a service listening on every address
/// (`0.0.0.0`, `::`) is asked on the loopback.
fn default_url(settings: &Settings) -> String {
    let host = match settings.server.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        host if host.contains(':') && !host.starts_with('[') => {
            return format!("http://[{host}]:{}/healthz", settings.server.port);
        }
        host => host,
    };
    format!("http://{host}:{}/healthz", settings.server.port)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn url(pairs: &[(&str, &str)]) -> String {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        default_url(&Settings::without_secret(&vars).expect("valid"))
    }

    #[test]
    fn the_probe_goes_where_serve_listens() {
        assert_eq!(url(&[]), "http://127.0.0.1:3000/healthz");
        assert_eq!(
            url(&[("HOST", "0.0.0.0"), ("FLUID_WEBHOOKS_SERVER__PORT", "3007")]),
            "http://127.0.0.1:3007/healthz",
            "the prefixed variable, as serve reads it"
        );
        assert_eq!(
            url(&[("PORT", "3000"), ("FLUID_WEBHOOKS_SERVER__PORT", "3007")]),
            "http://127.0.0.1:3000/healthz",
            "PORT wins over it, as it does for serve"
        );
        assert_eq!(
            url(&[("HOST", "::"), ("PORT", "8080")]),
            "http://[::1]:8080/healthz"
        );
        assert_eq!(url(&[("HOST", "10.0.0.5")]), "http://10.0.0.5:3000/healthz");
    }
}
