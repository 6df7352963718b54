//! Typed settings: the commented `config/default.toml`, the `config/<FLUID_ENV>.toml` overlay,
//! `FLUID_WEBHOOKS_<SECTION>__<KEY>` variables and the contract variables (`HOST`, `PORT`,
//! `DATABASE_URL`, `FLUID_WEBHOOK_SECRET`, `FLUID_ENV`), validated once at start. Every secret
//! variable may instead be given as `<NAME>_FILE`, the path of a file holding it.
//!
//! Each section's type lives beside the code it configures (`[server]` in `http::server`,
//! `[worker]` in `apply::worker`, ...) and knows its own rules; this module only reads the
//! layers ([`layers`]), assembles the sections and the secrets, and checks every section's rules.

mod layers;
mod secrets;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use ipnet::IpNet;

use secrets::{PLACEHOLDER, secret_var};

use super::telemetry::LogSettings;
pub use crate::config_error::ConfigError;
pub use crate::intake::providers::{PREVIOUS_SECRET_VAR, SECRET_VAR};
use crate::{
    apply::worker::WorkerSettings,
    follow_up::{
        forward::{self, ForwardSettings},
        reconciliation::{self, ReconciliationSettings},
    },
    http::{limits::LimitSettings, server::ServerSettings},
    intake::{
        inbox::IngestSettings,
        providers::{ProviderSettings, Providers},
        signature::standard,
    },
    secret::Secret,
    store::{database::DatabaseSettings, retention::RetentionSettings},
};

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
    #[serde(default, deserialize_with = "crate::networks::table")]
    allow_ips: BTreeMap<String, Vec<IpNet>>,
    #[serde(default)]
    providers: BTreeMap<String, ProviderSettings>,
}

impl Settings {
    /// Loads the settings from the process environment and the config files.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Loads the settings from the given variables (tests pass their own) and the config files.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let secret = secret_var(vars, SECRET_VAR)?.ok_or_else(|| {
            ConfigError::new(format!(
                "{SECRET_VAR} is not set: it must hold the webhook secret FLUID signs deliveries \
                 with (or set {SECRET_VAR}_FILE to a file holding it)"
            ))
        })?;
        let mut settings = Self::without_secret(vars)?;
        if settings.env == FluidEnv::Production && secret.expose().starts_with(PLACEHOLDER) {
            return Err(ConfigError::new(format!(
                "{SECRET_VAR} still holds a placeholder (replace-with-...): in production it must \
                 be the webhook secret FLUID gave you"
            )));
        }
        settings.secret = secret;
        settings.previous_secret = secret_var(vars, PREVIOUS_SECRET_VAR)?;
        let mut provider_secrets = HashMap::new();
        for name in settings
            .providers
            .values()
            .flat_map(|p| p.secrets_env.iter())
        {
            if let Some(value) = secret_var(vars, name)? {
                provider_secrets.insert(name.clone(), value);
            }
        }
        settings.provider_secrets = provider_secrets;
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
        let table = layers::table(env, vars)?;
        let file: FileSettings = serde_path_to_error::deserialize(table).map_err(|e| {
            let key = e.path().to_string();
            let source = layers::source_of(&key);
            ConfigError::new(format!("bad setting `{key}` ({source}): {}", e.inner()))
        })?;

        let mut database = file.database;
        database.direct_url = secrets::database_direct_url(vars)?;
        let settings = Self {
            env,
            secret: Secret::new(""),
            previous_secret: None,
            admin_token: secret_var(vars, "ADMIN_TOKEN")?,
            database_url: secrets::database_url(vars)?,
            fluid_api_key: secret_var(vars, reconciliation::API_KEY_VAR)?,
            forward_secret: secret_var(vars, forward::SECRET_VAR)?,
            server: file.server,
            ingest: file.ingest,
            database,
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

    /// Checks every section's rules, then what spans sections (forwarding needs its secret).
    fn validate(&self) -> Result<(), ConfigError> {
        let rules: Vec<_> = [
            self.server.rules(),
            self.ingest.rules(),
            self.database.rules(),
            self.worker.rules(),
            self.retention.rules(),
            self.limits.rules(),
            self.reconciliation.rules(),
            self.forward.rules(),
        ]
        .concat();
        ConfigError::first_broken(&rules)?;
        let fwd = &self.forward;
        if fwd.url.is_some() {
            let secret = self.forward_secret.as_ref().ok_or_else(|| {
                ConfigError::new(format!(
                    "forward.url is set but {} is not: changes are only forwarded signed",
                    forward::SECRET_VAR
                ))
            })?;
            standard::key_bytes(secret)
                .map_err(|e| ConfigError::new(format!("{}: {e}", forward::SECRET_VAR)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::telemetry::LogFormat;

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
    fn lists_come_from_the_environment_comma_separated() {
        let s = Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            (
                "FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES",
                "127.0.0.1/32,10.0.0.0/8",
            ),
            (
                "FLUID_WEBHOOKS_ALLOW_IPS__FLUID",
                "203.0.113.7, 198.51.100.0/24",
            ),
        ]))
        .expect("valid");
        let text = |nets: &[ipnet::IpNet]| nets.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            text(&s.limits.trusted_proxies),
            ["127.0.0.1/32", "10.0.0.0/8"]
        );
        assert_eq!(
            text(&s.allow_ips["fluid"]),
            ["203.0.113.7/32", "198.51.100.0/24"]
        );
        let err = Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            (
                "FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES",
                "127.0.0.1/32;10.0.0.0/8",
            ),
        ]))
        .expect_err("not a list");
        let err = err.to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("CIDR block (10.0.0.0/8)"),
            "{err}"
        );
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
            production.reconciliation.base_url.as_str(),
            "https://api.fluid-network.com/api/v1"
        );
        let sandbox = Settings::from_vars(&vars(&[(SECRET_VAR, "x")])).expect("valid");
        assert_eq!(
            sandbox.reconciliation.base_url.as_str(),
            "https://sandbox-api.fluid-network.com/api/v1"
        );
    }

    #[test]
    fn production_refuses_the_example_placeholder_secret() {
        let placeholder = "replace-with-your-fluid-webhook-secret";
        let err = Settings::from_vars(&vars(&[
            (SECRET_VAR, placeholder),
            ("FLUID_ENV", "production"),
        ]))
        .expect_err("placeholder");
        assert!(err.to_string().contains("placeholder"), "{err}");
        assert!(
            !err.to_string().contains(placeholder),
            "the value is not echoed: {err}"
        );
        Settings::from_vars(&vars(&[(SECRET_VAR, placeholder)])).expect("sandbox may try it");
    }

    #[test]
    fn require_https_without_a_trusted_proxy_refuses_to_start() {
        let err = Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            ("FLUID_WEBHOOKS_LIMITS__REQUIRE_HTTPS", "true"),
        ]))
        .expect_err("no proxy");
        assert!(err.to_string().contains("limits.trusted_proxies"), "{err}");
        Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            ("FLUID_WEBHOOKS_LIMITS__REQUIRE_HTTPS", "true"),
            ("FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES", "172.16.0.0/12"),
        ]))
        .expect("behind a proxy");
    }
}
