//! The error every settings section reports at start: a setting is missing or wrong, and the
//! message names its key (or variable) and the rule it breaks.

/// A setting is missing or wrong; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with this message (which names the key or variable).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The first broken rule of a section, as `(broken, key, rule)`, named by its key.
    pub fn first_broken(rules: &[(bool, &str, &str)]) -> Result<(), Self> {
        match rules.iter().find(|(broken, _, _)| *broken) {
            Some((_, key, rule)) => Err(Self::new(format!("bad setting `{key}`: {rule}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn the_first_broken_rule_names_its_key() {
        let rules = [
            (false, "a.x", "fine"),
            (true, "a.y", "must be 1"),
            (true, "a.z", "must be 2"),
        ];
        let err = ConfigError::first_broken(&rules).expect_err("broken");
        assert_eq!(
            err.to_string(),
            "configuration error: bad setting `a.y`: must be 1"
        );
        assert!(ConfigError::first_broken(&rules[..1]).is_ok());
    }
}
