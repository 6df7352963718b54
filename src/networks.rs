//! A list of networks as the settings give it: a TOML array, or one string of comma-separated
//! entries, which is how an environment variable writes a list
//! (`FLUID_WEBHOOKS_LIMITS__TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8`). Each entry is a CIDR block
//! (`10.0.0.0/8`) or a single address (`10.0.0.1`, one host).

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de::Error};

/// The forms an entry may take, for error messages.
const FORMS: &str = "write a CIDR block (10.0.0.0/8), an address (10.0.0.1), or several of them \
                     comma-separated (127.0.0.1/32,10.0.0.0/8)";

/// A list as given: one string, or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Given {
    One(String),
    Many(Vec<String>),
}

/// One entry: a CIDR block, or an address taken as its own /32 (/128).
pub fn parse(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{entry}` is not a network: {FORMS}"))
}

/// Reads every entry of a list as given.
fn read(given: Given) -> Result<Vec<IpNet>, String> {
    let entries: Vec<String> = match given {
        Given::One(text) => text.split(',').map(str::to_string).collect(),
        Given::Many(entries) => entries,
    };
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| parse(e))
        .collect()
}

/// `deserialize_with` for a `Vec<IpNet>` setting.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let given = Given::deserialize(deserializer)
        .map_err(|_| D::Error::custom(format!("expected a list of networks: {FORMS}")))?;
    read(given).map_err(D::Error::custom)
}

/// `deserialize_with` for a table of lists (`[allow_ips]`: provider -> networks).
pub fn table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<IpNet>>, D::Error> {
    let given = BTreeMap::<String, Given>::deserialize(deserializer)?;
    given
        .into_iter()
        .map(|(name, list)| {
            read(list)
                .map(|nets| (name.clone(), nets))
                .map_err(|e| D::Error::custom(format!("{name}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Settings {
        #[serde(deserialize_with = "list")]
        nets: Vec<IpNet>,
    }

    fn nets(toml_value: &str) -> Result<Vec<String>, String> {
        toml::from_str::<Settings>(&format!("nets = {toml_value}"))
            .map(|s| s.nets.iter().map(ToString::to_string).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_is_an_array_or_a_comma_separated_string_of_blocks_and_addresses() {
        let want = vec!["127.0.0.1/32".to_string(), "10.0.0.0/8".to_string()];
        for given in [
            r#"["127.0.0.1/32", "10.0.0.0/8"]"#,
            r#""127.0.0.1/32,10.0.0.0/8""#,
            r#"" 127.0.0.1 , 10.0.0.0/8 ,""#,
        ] {
            assert_eq!(nets(given), Ok(want.clone()), "{given}");
        }
        assert_eq!(nets(r#""""#), Ok(vec![]));
        assert_eq!(nets(r#""::1""#), Ok(vec!["::1/128".to_string()]));
        for bad in [r#""10.0.0.0/8,localhost""#, r#"["10.0.0.0/33"]"#, "7"] {
            let error = nets(bad).expect_err(bad);
            assert!(error.contains("CIDR block (10.0.0.0/8)"), "{bad}: {error}");
        }
    }
}
