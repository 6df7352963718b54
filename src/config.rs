//! Typed settings: the commented `config/default.toml`, the `config/<FLUID_ENV>.toml` overlay,
//! `FLUID_WEBHOOKS_<SECTION>__<KEY>` variables and the contract variables (`HOST`, `PORT`,
//! `DATABASE_URL`, `FLUID_WEBHOOK_SECRET`, `FLUID_ENV`), validated once at start.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::{Table, Value};

use ipnet::IpNet;

use crate::{
    forward::{self, ForwardSettings},
    limits::LimitSettings,
    providers::{ProviderSettings, Providers},
    reconciliation::{self, ReconciliationSettings},
    retention::RetentionSettings,
    secret::Secret,
};

/// The name of the variable holding FLUID's webhook signing secret.
pub const SECRET_VAR: &str = "FLUID_WEBHOOK_SECRET";
/// The previous secret, still accepted while FLUID switches to the new one (key rotation).
pub const PREVIOUS_SECRET_VAR: &str = "FLUID_WEBHOOK_SECRET_PREVIOUS";

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const SANDBOX_TOML: &str = include_str!("../config/sandbox.toml");
const PRODUCTION_TOML: &str = include_str!("../config/production.toml");

/// Which FLUID environment this receiver serves (`FLUID_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluidEnv {
    /// FLUID's sandbox and local development (the default).
    Sandbox,
    /// Live money.
    Production,
}

impl FluidEnv {
    /// Reads `FLUID_ENV` from the given value; unset means sandbox.
    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("sandbox") => Ok(Self::Sandbox),
            Some("production") => Ok(Self::Production),
            Some(other) => Err(ConfigError::new(format!(
                "FLUID_ENV must be `sandbox` or `production`, not `{other}`"
            ))),
        }
    }

    /// The lowercase name, also the name of the overlay file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
        }
    }

    fn embedded_toml(self) -> &'static str {
        match self {
            Self::Sandbox => SANDBOX_TOML,
            Self::Production => PRODUCTION_TOML,
        }
    }
}

/// Everything the service reads at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FLUID_ENV`.
    pub env: FluidEnv,
    /// The webhook signing secret (`FLUID_WEBHOOK_SECRET`).
    pub secret: Secret,
    /// The previous secret during a rotation (`FLUID_WEBHOOK_SECRET_PREVIOUS`), also accepted.
    pub previous_secret: Option<Secret>,
    /// `ADMIN_TOKEN`: the bearer token of the admin API, which is off when it is unset.
    pub admin_token: Option<Secret>,
    /// `DATABASE_URL`; `None` starts the embedded PostgreSQL.
    pub database_url: Option<Secret>,
    /// `FLUID_API_KEY`: FLUID's API key; reconciliation by polling is off when it is unset.
    pub fluid_api_key: Option<Secret>,
    /// `FORWARD_SECRET`: the key status changes forwarded to `forward.url` are signed with.
    pub forward_secret: Option<Secret>,
    /// The `[server]` table.
    pub server: ServerSettings,
    /// The `[ingest]` table.
    pub ingest: IngestSettings,
    /// The `[database]` table.
    pub database: DatabaseSettings,
    /// The `[worker]` table.
    pub worker: WorkerSettings,
    /// The `[log]` table.
    pub log: LogSettings,
    /// The `[retention]` table.
    pub retention: RetentionSettings,
    /// The `[limits]` table.
    pub limits: LimitSettings,
    /// The `[reconciliation]` table.
    pub reconciliation: ReconciliationSettings,
    /// The `[forward]` table.
    pub forward: ForwardSettings,
    /// The `[allow_ips]` table: per provider, the networks allowed to deliver (none: anyone).
    pub allow_ips: BTreeMap<String, Vec<IpNet>>,
    /// The `[providers.<name>]` tables (the built-in `fluid` is not among them).
    pub providers: BTreeMap<String, ProviderSettings>,
    /// The values of the variables the providers name in `secrets_env`.
    pub provider_secrets: HashMap<String, Secret>,
}

/// The file-backed part of the settings; see `config/default.toml` for each key's meaning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    server: ServerSettings,
    ingest: IngestSettings,
    database: DatabaseSettings,
    worker: WorkerSettings,
    log: LogSettings,
    retention: RetentionSettings,
    limits: LimitSettings,
    reconciliation: ReconciliationSettings,
    forward: ForwardSettings,
    #[serde(default)]
    allow_ips: BTreeMap<String, Vec<IpNet>>,
    #[serde(default)]
    providers: BTreeMap<String, ProviderSettings>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`HOST`).
    pub host: String,
    /// Port to listen on (`PORT`); 0 picks a free one.
    pub port: u16,
    /// Largest body accepted before 413.
    pub max_body_bytes: usize,
    /// Time allowed to store an event before answering 503.
    pub ingest_timeout_ms: u64,
    /// Time allowed for in-flight work to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

/// `[ingest]`: group commit of incoming events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Tasks storing batches; each holds one commit in flight.
    pub flushers: usize,
    /// Most events stored by one statement and commit.
    pub max_batch: usize,
    /// Events waiting for a flusher before requests wait to hand theirs over.
    pub queue_capacity: usize,
}

/// `[database]`: the pool and the embedded server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Data folder of the embedded PostgreSQL used when `DATABASE_URL` is unset.
    pub embedded_data_dir: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// Wait for a connection before giving up (and answering 503).
    pub acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` for every connection.
    pub statement_timeout_ms: u64,
    /// How long start-up keeps trying to reach the database.
    pub startup_timeout_secs: u64,
}

/// `[worker]`: the background application of stored events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Whether this process applies events at all.
    pub enabled: bool,
    /// Worker tasks in this process.
    pub concurrency: usize,
    /// Events per claiming transaction.
    pub batch_size: i64,
    /// Poll period for due work.
    pub poll_interval_ms: u64,
    /// First retry delay after a failed application.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Failed attempts before an event is parked as `dead`.
    pub max_attempts: i32,
}

impl WorkerSettings {
    /// The poll period as a `Duration`.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// `[log]`: how log lines look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A setting is missing or wrong; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl Settings {
    /// Loads the settings from the process environment and the config files.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Loads the settings from the given variables (tests pass their own) and the config files.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let secret = match vars.get(SECRET_VAR).map(|s| s.trim()) {
            Some(value) if !value.is_empty() => Secret::new(value),
            _ => {
                return Err(ConfigError::new(format!(
                    "{SECRET_VAR} is not set: it must hold the webhook secret FLUID signs deliveries with"
                )));
            }
        };
        let mut settings = Self::without_secret(vars)?;
        settings.secret = secret;
        settings.previous_secret = secret_var(vars, PREVIOUS_SECRET_VAR);
        settings.provider_secrets = settings
            .providers
            .values()
            .flat_map(|p| p.secrets_env.iter())
            .filter_map(|name| {
                let value = vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())?;
                Some((name.clone(), Secret::new(value)))
            })
            .collect();
        settings.providers()?;
        Ok(settings)
    }

    /// Every provider, ready to verify deliveries: the built-in `fluid` and the declared ones.
    pub fn providers(&self) -> Result<Providers, ConfigError> {
        Providers::build(
            self.fluid_keys(),
            &self.providers,
            &self.provider_secrets,
            &self.allow_ips,
        )
    }

    /// The keys FLUID deliveries are checked with: the current secret, then the previous one.
    pub fn fluid_keys(&self) -> Vec<Secret> {
        std::iter::once(self.secret.clone())
            .chain(self.previous_secret.clone())
            .collect()
    }

    /// Loads everything but the webhook secret, for commands that verify no webhook
    /// (`migrate`); the secret is left empty.
    pub fn without_secret(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = FluidEnv::parse(vars.get("FLUID_ENV").map(String::as_str))?;
        let dir = PathBuf::from(
            vars.get(CONFIG_DIR_VAR)
                .map(String::as_str)
                .unwrap_or("config"),
        );

        let mut table = parse_toml(DEFAULT_TOML, "the built-in config/default.toml")?;
        merge(&mut table, read_optional_toml(&dir.join("default.toml"))?);
        merge(
            &mut table,
            parse_toml(env.embedded_toml(), "the built-in overlay")?,
        );
        merge(
            &mut table,
            read_optional_toml(&dir.join(format!("{}.toml", env.name())))?,
        );
        for (name, value) in vars {
            if let Some(path) = name
                .strip_prefix(ENV_PREFIX)
                .filter(|_| name != CONFIG_DIR_VAR)
            {
                let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
                set_path(&mut table, &keys, env_value(value));
            }
        }
        for (name, key) in CONTRACT_VARS {
            if let Some(value) = vars.get(*name) {
                set_path(
                    &mut table,
                    &["server".into(), (*key).into()],
                    env_value(value),
                );
            }
        }

        let file: FileSettings = serde_path_to_error::deserialize(table).map_err(|e| {
            let key = e.path().to_string();
            let source = CONTRACT_VARS
                .iter()
                .find(|(_, k)| key == format!("server.{k}"))
                .map(|(name, _)| (*name).to_string())
                .unwrap_or_else(|| {
                    format!(
                        "config/*.toml or {ENV_PREFIX}{}",
                        key.to_uppercase().replace('.', "__")
                    )
                });
            ConfigError::new(format!("bad setting `{key}` ({source}): {}", e.inner()))
        })?;

        let settings = Self {
            env,
            secret: Secret::new(""),
            previous_secret: None,
            admin_token: secret_var(vars, "ADMIN_TOKEN"),
            database_url: secret_var(vars, "DATABASE_URL"),
            fluid_api_key: secret_var(vars, reconciliation::API_KEY_VAR),
            forward_secret: secret_var(vars, forward::SECRET_VAR),
            server: file.server,
            ingest: file.ingest,
            database: file.database,
            worker: file.worker,
            log: file.log,
            retention: file.retention,
            limits: file.limits,
            reconciliation: file.reconciliation,
            forward: file.forward,
            allow_ips: file.allow_ips,
            providers: file.providers,
            provider_secrets: HashMap::new(),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let (server, ingest, database, worker) =
            (&self.server, &self.ingest, &self.database, &self.worker);
        let limits = &self.limits;
        let retention = &self.retention;
        let (poll, fwd) = (&self.reconciliation, &self.forward);
        let checks: [(bool, &str, &str); 29] = [
            (
                !(1..=10).contains(&poll.max_attempts),
                "reconciliation.max_attempts",
                "must be 1 to 10",
            ),
            (
                !(1..=1000).contains(&poll.rate_per_minute),
                "reconciliation.rate_per_minute",
                "must be 1 to 1000 (FLUID allows 1,000 a minute per key)",
            ),
            (
                !(1..=100).contains(&poll.burst),
                "reconciliation.burst",
                "must be 1 to 100 (FLUID's burst)",
            ),
            (
                !(1..=64).contains(&poll.concurrency),
                "reconciliation.concurrency",
                "must be 1 to 64",
            ),
            (
                poll.timeout_ms == 0 || poll.interval_ms == 0,
                "reconciliation.timeout_ms and interval_ms",
                "must be at least 1",
            ),
            (
                poll.retry_base_ms > poll.retry_max_ms,
                "reconciliation.retry_base_ms",
                "must not exceed reconciliation.retry_max_ms",
            ),
            (
                self.fluid_api_key.is_some() && reqwest::Url::parse(&poll.base_url).is_err(),
                "reconciliation.base_url",
                "must be a URL such as https://api.fluid-network.com/api/v1",
            ),
            (
                !(1..=256).contains(&fwd.concurrency),
                "forward.concurrency",
                "must be 1 to 256",
            ),
            (
                fwd.timeout_ms == 0 || fwd.interval_ms == 0,
                "forward.timeout_ms and interval_ms",
                "must be at least 1",
            ),
            (
                fwd.retry_base_ms > fwd.retry_max_ms,
                "forward.retry_base_ms",
                "must not exceed forward.retry_max_ms",
            ),
            (
                !fwd.url.trim().is_empty() && reqwest::Url::parse(fwd.url.trim()).is_err(),
                "forward.url",
                "must be an http(s) URL, or empty to forward nothing",
            ),
            (
                !(1..=100_000).contains(&retention.batch_size),
                "retention.batch_size",
                "must be 1 to 100000",
            ),
            (
                retention.interval_secs == 0,
                "retention.interval_secs",
                "must be at least 1",
            ),
            (
                !(limits.rate_per_second >= 0.0 && limits.rate_per_second.is_finite()),
                "limits.rate_per_second",
                "must be 0 (off) or more",
            ),
            (
                !(limits.burst >= 1.0 && limits.burst.is_finite()),
                "limits.burst",
                "must be at least 1",
            ),
            (
                limits.max_concurrent_requests == 0,
                "limits.max_concurrent_requests",
                "must be at least 1",
            ),
            (
                !(1..=64).contains(&ingest.flushers),
                "ingest.flushers",
                "must be 1 to 64",
            ),
            (
                !(1..=5_000).contains(&ingest.max_batch),
                "ingest.max_batch",
                "must be 1 to 5000",
            ),
            (
                ingest.queue_capacity == 0,
                "ingest.queue_capacity",
                "must be at least 1",
            ),
            (
                server.host.trim().is_empty(),
                "server.host (HOST)",
                "must not be empty",
            ),
            (
                server.max_body_bytes == 0,
                "server.max_body_bytes",
                "must be at least 1",
            ),
            (
                server.ingest_timeout_ms == 0,
                "server.ingest_timeout_ms",
                "must be at least 1",
            ),
            (
                database.max_connections < 2,
                "database.max_connections",
                "must be at least 2",
            ),
            (
                database.acquire_timeout_ms == 0,
                "database.acquire_timeout_ms",
                "must be at least 1",
            ),
            (
                !(1..=64).contains(&worker.concurrency),
                "worker.concurrency",
                "must be 1 to 64",
            ),
            (
                !(1..=10_000).contains(&worker.batch_size),
                "worker.batch_size",
                "must be 1 to 10000",
            ),
            (
                worker.poll_interval_ms == 0,
                "worker.poll_interval_ms",
                "must be at least 1",
            ),
            (
                worker.max_attempts < 1,
                "worker.max_attempts",
                "must be at least 1",
            ),
            (
                worker.retry_base_ms > worker.retry_max_ms,
                "worker.retry_base_ms",
                "must not exceed worker.retry_max_ms",
            ),
        ];
        if let Some((_, key, rule)) = checks.into_iter().find(|(bad, _, _)| *bad) {
            return Err(ConfigError::new(format!("bad setting `{key}`: {rule}")));
        }
        if !fwd.url.trim().is_empty() {
            let secret = self.forward_secret.as_ref().ok_or_else(|| {
                ConfigError::new(format!(
                    "forward.url is set but {} is not: changes are only forwarded signed",
                    forward::SECRET_VAR
                ))
            })?;
            crate::signature::standard::key_bytes(secret)
                .map_err(|e| ConfigError::new(format!("{}: {e}", forward::SECRET_VAR)))?;
        }
        Ok(())
    }
}

/// Prefix of the variables that override a config key: `FLUID_WEBHOOKS_<SECTION>__<KEY>`.
const ENV_PREFIX: &str = "FLUID_WEBHOOKS_";
/// Where the on-disk config files are looked for.
const CONFIG_DIR_VAR: &str = "FLUID_WEBHOOKS_CONFIG_DIR";
/// The contract variables that set `[server]` keys.
const CONTRACT_VARS: &[(&str, &str)] = &[("HOST", "host"), ("PORT", "port")];

/// A secret from the environment; unset or blank is `None`.
fn secret_var(vars: &HashMap<String, String>, name: &str) -> Option<Secret> {
    vars.get(name)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

fn parse_toml(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>()
        .map_err(|e| ConfigError::new(format!("cannot read {origin}: {e}")))
}

fn read_optional_toml(path: &Path) -> Result<Table, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_toml(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Table::new()),
        Err(e) => Err(ConfigError::new(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Overlays `top` on `base`, table by table, so a file or variable need only name what it changes.
fn merge(base: &mut Table, top: Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(top_inner)) => merge(inner, top_inner),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut Table, keys: &[String], value: Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(inner) = entry else { return };
        current = inner;
    }
    current.insert(last.clone(), value);
}

/// An environment value is read as a TOML value (`200`, `true`, `"x"`), or else as a plain string.
fn env_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn defaults_load_with_only_the_secret() {
        let s = Settings::from_vars(&vars(&[(SECRET_VAR, "s3cret")])).expect("defaults are valid");
        assert_eq!(s.server.port, 3000);
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.env, FluidEnv::Sandbox);
        assert_eq!(s.log.format, LogFormat::Pretty);
        assert!(s.database_url.is_none());
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let err = Settings::from_vars(&vars(&[])).expect_err("secret is required");
        assert!(err.to_string().contains(SECRET_VAR), "{err}");
    }

    #[test]
    fn contract_and_prefixed_variables_override_files() {
        let s = Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            ("HOST", "0.0.0.0"),
            ("PORT", "8080"),
            ("FLUID_ENV", "production"),
            ("FLUID_WEBHOOKS_WORKER__BATCH_SIZE", "7"),
            ("FLUID_WEBHOOKS_WORKER__ENABLED", "false"),
        ]))
        .expect("valid");
        assert_eq!((s.server.host.as_str(), s.server.port), ("0.0.0.0", 8080));
        assert_eq!(s.worker.batch_size, 7);
        assert!(!s.worker.enabled);
        assert_eq!(s.log.format, LogFormat::Json, "production overlay applies");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (("PORT", "eighty"), "PORT"),
            (
                ("FLUID_WEBHOOKS_WORKER__BATCH_SIZE", "0"),
                "worker.batch_size",
            ),
            (("FLUID_WEBHOOKS_WORKER__BACH_SIZE", "5"), "bach_size"),
            (("FLUID_WEBHOOKS_SERVER__PORT", "99999"), "server.port"),
            (("FLUID_ENV", "staging"), "FLUID_ENV"),
        ];
        for ((name, value), expected) in cases {
            let err = Settings::from_vars(&vars(&[(SECRET_VAR, "x"), (name, value)]))
                .expect_err("invalid");
            assert!(err.to_string().contains(expected), "{name}={value}: {err}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = Settings::from_vars(&vars(&[
            (SECRET_VAR, "topsecret"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
            ("FLUID_API_KEY", "test_sk_apikey"),
            ("FORWARD_SECRET", "whsec_Zm9yd2FyZGtleQ=="),
            (
                "FLUID_WEBHOOKS_FORWARD__URL",
                "http://orders.internal/changes",
            ),
        ]))
        .expect("valid");
        assert!(s.fluid_api_key.is_some() && s.forward_secret.is_some());
        let debug = format!("{s:?}");
        for secret in ["topsecret", "pw@", "test_sk_apikey", "Zm9yd2FyZGtleQ"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn forwarding_needs_a_standard_webhooks_secret_and_polling_a_sane_budget() {
        let url = (
            "FLUID_WEBHOOKS_FORWARD__URL",
            "http://orders.internal/changes",
        );
        let err = Settings::from_vars(&vars(&[(SECRET_VAR, "x"), url])).expect_err("no secret");
        assert!(err.to_string().contains("FORWARD_SECRET"), "{err}");
        let err = Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            url,
            ("FORWARD_SECRET", "whsec_!!"),
        ]))
        .expect_err("not base64");
        assert!(err.to_string().contains("FORWARD_SECRET"), "{err}");
        for (name, value, key) in [
            (
                "FLUID_WEBHOOKS_RECONCILIATION__MAX_ATTEMPTS",
                "11",
                "reconciliation.max_attempts",
            ),
            (
                "FLUID_WEBHOOKS_RECONCILIATION__RATE_PER_MINUTE",
                "1001",
                "reconciliation.rate_per_minute",
            ),
            ("FLUID_WEBHOOKS_FORWARD__URL", "not a url", "forward.url"),
        ] {
            let err = Settings::from_vars(&vars(&[(SECRET_VAR, "x"), (name, value)]))
                .expect_err("invalid");
            assert!(err.to_string().contains(key), "{name}={value}: {err}");
        }
        let production =
            Settings::from_vars(&vars(&[(SECRET_VAR, "x"), ("FLUID_ENV", "production")]))
                .expect("valid");
        assert_eq!(
            production.reconciliation.base_url,
            "https://api.fluid-network.com/api/v1"
        );
        let sandbox = Settings::from_vars(&vars(&[(SECRET_VAR, "x")])).expect("valid");
        assert_eq!(
            sandbox.reconciliation.base_url,
            "https://sandbox-api.fluid-network.com/api/v1"
        );
    }
}
