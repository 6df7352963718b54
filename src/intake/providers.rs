//! The senders this service accepts webhooks from. `fluid` is built in (secret from
//! `FLUID_WEBHOOK_SECRET`, rotation through `FLUID_WEBHOOK_SECRET_PREVIOUS`); others are declared
//! as `[providers.<name>]` tables in the configuration and reached at `POST /webhooks/<name>`.
//! Each names its verification scheme, the environment variables holding its secrets (current
//! first), and how its events map onto transactions.

use std::collections::{BTreeMap, HashMap};

use http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::signature::{self, SignatureError, standard, timestamped};
use crate::{config_error::ConfigError, secret::Secret};

/// The name of the built-in provider.
pub const FLUID: &str = "fluid";

/// The variable holding FLUID's webhook signing secret.
pub const SECRET_VAR: &str = "FLUID_WEBHOOK_SECRET";
/// The previous secret, still accepted while FLUID switches to the new one (key rotation).
pub const PREVIOUS_SECRET_VAR: &str = "FLUID_WEBHOOK_SECRET_PREVIOUS";

/// How a provider signs its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Hex HMAC-SHA256 of the body in one header (FLUID).
    Fluid,
    /// Hex HMAC-SHA256 of `"{timestamp}.{body}"`, with a timestamp header (FundKit-style).
    Timestamped,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
}

/// How a provider's events map onto transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// FLUID's body: `event`, `event_id`, `timestamp`, `data.transaction`.
    Fluid,
    /// FundKit-style body: `id`, `type`, `data.transactionId`, `data.externalId`, minor units.
    Fundkit,
    /// Stored and acknowledged, never applied (for senders whose events are only kept).
    None,
}

/// A `[providers.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `fluid`, `timestamped` or `standard-webhooks`.
    pub scheme: Scheme,
    /// Environment variables holding the secrets, current first; the first must be set.
    pub secrets_env: Vec<String>,
    /// `fluid`, `fundkit` or `none`.
    pub mapping: Mapping,
    /// Signature header (`timestamped`; default `x-webhook-signature`).
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Timestamp header (`timestamped`; default `x-webhook-timestamp`).
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// How far a signed timestamp may be from now, either way (default 300 s).
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// Decimal digits of the minor unit amounts are sent in (`fundkit`; default 2).
    #[serde(default = "default_minor_digits")]
    pub minor_unit_digits: u32,
}

fn default_tolerance() -> u64 {
    300
}

fn default_minor_digits() -> u32 {
    2
}

/// A provider ready to verify deliveries.
#[derive(Debug)]
pub struct Provider {
    /// Its name, also the last segment of its route.
    pub name: String,
    /// How it signs.
    pub scheme: Scheme,
    /// How its events map onto transactions.
    pub mapping: Mapping,
    keys: Vec<Secret>,
    /// For Standard Webhooks: the keys' decoded bytes.
    key_bytes: Vec<Vec<u8>>,
    /// Each key's fingerprint, in the order of the keys.
    key_ids: Vec<String>,
    signature_header: String,
    timestamp_header: String,
    tolerance_secs: u64,
    /// Decimal digits of minor-unit amounts.
    pub minor_unit_digits: u32,
    /// Networks allowed to deliver for this provider; empty: anyone (the signature still decides).
    pub allow_ips: Vec<IpNet>,
}

/// A delivery whose signature holds: which key verified it, and the signature as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The fingerprint of the key (see [`key_id`]).
    pub key_id: String,
    /// The signature header's value exactly as received.
    pub signature: String,
}

/// A key's fingerprint, stored with every event it verified: the first 16 hex digits of the
/// SHA-256 of the key bytes. It names the key without revealing it.
pub fn key_id(key: &[u8]) -> String {
    let mut id = hex::encode(Sha256::digest(key));
    id.truncate(16);
    id
}

impl Provider {
    /// Checks a delivery's signature over the raw body with every key of the provider.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, SignatureError> {
        let index = self.check(0..self.key_ids.len(), headers, body, now)?;
        let signature = headers
            .get(self.signature_header())
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(Verified {
            key_id: self.key_ids[index].clone(),
            signature: signature.to_string(),
        })
    }

    /// Checks a stored delivery again, with the one key `key_id` names, as the route checked it
    /// when the delivery arrived (`at`, Unix seconds). `None`: that key is not configured now.
    pub fn verify_again(
        &self,
        key_id: &str,
        headers: &HeaderMap,
        body: &[u8],
        at: i64,
    ) -> Option<Result<(), SignatureError>> {
        let index = self.key_ids.iter().position(|id| id == key_id)?;
        Some(self.check(index..index + 1, headers, body, at).map(|_| ()))
    }

    /// The headers a stored delivery was verified with, rebuilt from what is stored: the
    /// signature, the timestamp header, and (Standard Webhooks) the signed message id.
    pub fn stored_headers(
        &self,
        signature: &str,
        timestamp: Option<&str>,
        event_id: &str,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str| {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        };
        put(self.signature_header(), signature);
        if let Some(timestamp) = timestamp {
            put(&self.timestamp_header, timestamp);
        }
        if let Some(id_header) = self.signed_id_header() {
            put(id_header, event_id);
        }
        headers
    }

    /// The header the signature comes in.
    pub fn signature_header(&self) -> &str {
        match self.scheme {
            Scheme::StandardWebhooks => "webhook-signature",
            _ => &self.signature_header,
        }
    }

    /// Checks the signature with the keys in `keys` (indexes); returns the index that matched.
    fn check(
        &self,
        keys: std::ops::Range<usize>,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<usize, SignatureError> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let first = keys.start;
        let found = match self.scheme {
            Scheme::Fluid => {
                signature::verify(&self.keys[keys], header(&self.signature_header), body)
            }
            Scheme::Timestamped => timestamped::verify(
                &self.keys[keys],
                header(&self.signature_header),
                header(&self.timestamp_header),
                body,
                now,
                self.tolerance_secs,
            ),
            Scheme::StandardWebhooks => standard::verify(
                &self.key_bytes[keys],
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
                body,
                now,
                self.tolerance_secs,
            ),
        };
        found.map(|index| first + index)
    }

    /// The header holding the (signed or not) delivery timestamp, kept with the event.
    pub fn timestamp_header(&self) -> &str {
        &self.timestamp_header
    }

    /// The header carrying the message id, when the scheme signs one (Standard Webhooks).
    pub fn signed_id_header(&self) -> Option<&'static str> {
        (self.scheme == Scheme::StandardWebhooks).then_some("webhook-id")
    }
}

/// Every provider, by name.
#[derive(Debug, Default)]
pub struct Providers(HashMap<String, Provider>);

impl Providers {
    /// Builds the registry: the built-in `fluid` from `fluid_keys`, the rest from the
    /// configuration, their secrets from `vars`. A declared provider whose first secret variable is
    /// unset, or whose secret cannot be used, stops the start with a message naming it.
    pub fn build(
        fluid_keys: Vec<Secret>,
        declared: &BTreeMap<String, ProviderSettings>,
        secrets: &HashMap<String, Secret>,
        allow_ips: &BTreeMap<String, Vec<IpNet>>,
    ) -> Result<Self, ConfigError> {
        let mut providers = HashMap::new();
        providers.insert(
            FLUID.to_string(),
            Provider {
                name: FLUID.into(),
                scheme: Scheme::Fluid,
                mapping: Mapping::Fluid,
                key_ids: fluid_keys
                    .iter()
                    .map(|k| key_id(k.expose().as_bytes()))
                    .collect(),
                keys: fluid_keys,
                key_bytes: Vec::new(),
                signature_header: signature::HEADER.into(),
                timestamp_header: "x-fluid-timestamp".into(),
                tolerance_secs: default_tolerance(),
                minor_unit_digits: default_minor_digits(),
                allow_ips: Vec::new(),
            },
        );
        for (name, settings) in declared {
            let key = format!("providers.{name}");
            if name == FLUID {
                return Err(ConfigError::new(format!(
                    "`{key}` is built in: its secrets are {SECRET_VAR} and {PREVIOUS_SECRET_VAR}"
                )));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new(format!(
                    "`{key}`: a provider name is lowercase letters, digits, - and _"
                )));
            }
            let mut keys = Vec::new();
            for (i, var) in settings.secrets_env.iter().enumerate() {
                match secrets.get(var) {
                    Some(value) => keys.push(value.clone()),
                    None if i == 0 => {
                        return Err(ConfigError::new(format!(
                            "{var} is not set: `{key}.secrets_env` names it as the current secret"
                        )));
                    }
                    None => {}
                }
            }
            if keys.is_empty() {
                return Err(ConfigError::new(format!(
                    "`{key}.secrets_env` must name at least one variable"
                )));
            }
            let key_bytes = if settings.scheme == Scheme::StandardWebhooks {
                keys.iter()
                    .map(standard::key_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ConfigError::new(format!("`{key}`: {e}")))?
            } else {
                Vec::new()
            };
            let key_ids = if key_bytes.is_empty() {
                keys.iter().map(|k| key_id(k.expose().as_bytes())).collect()
            } else {
                key_bytes.iter().map(|k| key_id(k)).collect()
            };
            let (default_signature, default_timestamp) = match settings.scheme {
                Scheme::Fluid => (signature::HEADER, "x-fluid-timestamp"),
                Scheme::Timestamped => ("x-webhook-signature", "x-webhook-timestamp"),
                Scheme::StandardWebhooks => ("webhook-signature", "webhook-timestamp"),
            };
            let lower = |h: &Option<String>, default: &str| {
                h.as_deref().unwrap_or(default).to_ascii_lowercase()
            };
            providers.insert(
                name.clone(),
                Provider {
                    name: name.clone(),
                    scheme: settings.scheme,
                    mapping: settings.mapping,
                    key_ids,
                    keys,
                    key_bytes,
                    signature_header: lower(&settings.signature_header, default_signature),
                    timestamp_header: lower(&settings.timestamp_header, default_timestamp),
                    tolerance_secs: settings.tolerance_secs,
                    minor_unit_digits: settings.minor_unit_digits,
                    allow_ips: Vec::new(),
                },
            );
        }
        for (name, nets) in allow_ips {
            let provider = providers.get_mut(name).ok_or_else(|| {
                ConfigError::new(format!("`allow_ips.{name}`: there is no provider `{name}`"))
            })?;
            provider.allow_ips.clone_from(nets);
        }
        Ok(Self(providers))
    }

    /// The provider of that name.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.0.get(name)
    }

    /// Every provider's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(toml: &str) -> BTreeMap<String, ProviderSettings> {
        toml::from_str(toml).expect("valid TOML")
    }

    #[test]
    fn declared_providers_get_their_secrets_from_the_environment() {
        let table = declared(
            "[honeycoin]\nscheme = \"timestamped\"\nsecrets_env = [\"HC_NOW\", \"HC_OLD\"]\nmapping = \"fundkit\"\n",
        );
        let vars = HashMap::from([("HC_NOW".to_string(), Secret::new("now"))]);
        let providers = Providers::build(vec![Secret::new("f")], &table, &vars, &BTreeMap::new())
            .expect("valid");
        let honeycoin = providers.get("honeycoin").expect("declared");
        assert_eq!(
            (honeycoin.scheme, honeycoin.mapping, honeycoin.keys.len()),
            (Scheme::Timestamped, Mapping::Fundkit, 1)
        );
        assert_eq!(honeycoin.timestamp_header(), "x-webhook-timestamp");
        assert!(providers.get("fluid").is_some() && providers.get("nope").is_none());
    }

    #[test]
    fn bad_declarations_name_the_key_or_variable() {
        let cases = [
            (
                "[honeycoin]\nscheme = \"timestamped\"\nsecrets_env = [\"HC_NOW\"]\nmapping = \"fundkit\"\n",
                "HC_NOW",
            ),
            (
                "[fluid]\nscheme = \"fluid\"\nsecrets_env = [\"X\"]\nmapping = \"fluid\"\n",
                "providers.fluid",
            ),
            (
                "[Bad]\nscheme = \"fluid\"\nsecrets_env = [\"X\"]\nmapping = \"fluid\"\n",
                "providers.Bad",
            ),
            (
                "[sw]\nscheme = \"standard-webhooks\"\nsecrets_env = [\"X\"]\nmapping = \"none\"\n",
                "providers.sw",
            ),
        ];
        let vars = HashMap::from([("X".to_string(), Secret::new("not base64!"))]);
        for (toml, expected) in cases {
            let err = Providers::build(vec![], &declared(toml), &vars, &BTreeMap::new())
                .expect_err("invalid");
            assert!(err.to_string().contains(expected), "{toml}: {err}");
        }
    }
}
