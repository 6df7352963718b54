//! The layers settings are read from, each overriding the one before: the built-in
//! `config/default.toml`, that file on disk, the `FLUID_ENV` overlay (built in, then on disk),
//! `FLUID_WEBHOOKS_<SECTION>__<KEY>` variables, then the contract variables `HOST` and `PORT`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use toml::{Table, Value};

use super::{ConfigError, FluidEnv};

const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");
const SANDBOX_TOML: &str = include_str!("../../../config/sandbox.toml");
const PRODUCTION_TOML: &str = include_str!("../../../config/production.toml");

/// Prefix of the variables that override a config key: `FLUID_WEBHOOKS_<SECTION>__<KEY>`.
const ENV_PREFIX: &str = "FLUID_WEBHOOKS_";
/// Where the on-disk config files are looked for.
const CONFIG_DIR_VAR: &str = "FLUID_WEBHOOKS_CONFIG_DIR";
/// The contract variables that set `[server]` keys.
const CONTRACT_VARS: &[(&str, &str)] = &[("HOST", "host"), ("PORT", "port")];

/// Every layer merged into one table, ready to be read into the sections.
pub(super) fn table(env: FluidEnv, vars: &HashMap<String, String>) -> Result<Table, ConfigError> {
    let dir = PathBuf::from(
        vars.get(CONFIG_DIR_VAR)
            .map(String::as_str)
            .unwrap_or("config"),
    );
    let mut table = parse_toml(DEFAULT_TOML, "the built-in config/default.toml")?;
    merge(&mut table, read_optional_toml(&dir.join("default.toml"))?);
    merge(
        &mut table,
        parse_toml(embedded_toml(env), "the built-in overlay")?,
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
    Ok(table)
}

/// Where a bad key was set, for the error message: its contract variable, or the files and its
/// `FLUID_WEBHOOKS_` variable.
pub(super) fn source_of(key: &str) -> String {
    CONTRACT_VARS
        .iter()
        .find(|(_, k)| key == format!("server.{k}"))
        .map(|(name, _)| (*name).to_string())
        .unwrap_or_else(|| {
            format!(
                "config/*.toml or {ENV_PREFIX}{}",
                key.to_uppercase().replace('.', "__")
            )
        })
}

/// The built-in overlay of an environment.
fn embedded_toml(env: FluidEnv) -> &'static str {
    match env {
        FluidEnv::Sandbox => SANDBOX_TOML,
        FluidEnv::Production => PRODUCTION_TOML,
    }
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
