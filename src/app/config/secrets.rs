//! Secrets from the environment: each variable may instead name a file (`<NAME>_FILE`), as Docker
//! and Kubernetes secrets are mounted.

use std::collections::HashMap;

use super::ConfigError;
use crate::secret::Secret;

/// How example secrets begin (`replace-with-...`); production refuses to start with one.
pub(super) const PLACEHOLDER: &str = "replace-with-";

/// A secret from the variable `name`, or from the file `<name>_FILE` names (Docker and
/// Kubernetes secrets; surrounding whitespace, such as the final newline, is dropped). Unset or
/// blank is `None`; both set, a file that cannot be read or is empty, an error naming them.
pub(super) fn secret_var(
    vars: &HashMap<String, String>,
    name: &str,
) -> Result<Option<Secret>, ConfigError> {
    let given = |n: &str| vars.get(n).map(|s| s.trim()).filter(|s| !s.is_empty());
    let file_var = format!("{name}_FILE");
    match (given(name), given(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::new(format!(
            "both {name} and {file_var} are set: keep one of them"
        ))),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!(
                    "{file_var} names {path}, which cannot be read ({e}): mount the secret there \
                     or unset {file_var}"
                ))
            })?;
            match text.trim() {
                "" => Err(ConfigError::new(format!(
                    "{file_var} names {path}, which is empty: write the secret into it"
                ))),
                value => Ok(Some(Secret::new(value))),
            }
        }
    }
}

/// `DATABASE_URL` with `DATABASE_PASSWORD` (or `DATABASE_PASSWORD_FILE`) put in as its password,
/// percent-encoded, so a password holding `@ / : # ? %` (as generated ones do) needs no encoding
/// by hand, and can come from a secret file. The URL must name a user and no password.
pub(super) fn database_url(vars: &HashMap<String, String>) -> Result<Option<Secret>, ConfigError> {
    let url = secret_var(vars, "DATABASE_URL")?;
    if url.is_none() && secret_var(vars, "DATABASE_PASSWORD")?.is_some() {
        return Err(ConfigError::new(
            "DATABASE_PASSWORD is set but DATABASE_URL is not: set DATABASE_URL to \
             postgres://user@host:5432/database",
        ));
    }
    with_password(vars, "DATABASE_URL", url)
}

/// `DATABASE_DIRECT_URL`: PostgreSQL itself, past PgBouncer, for what needs a session
/// (migrations, LISTEN). `DATABASE_PASSWORD` goes into it as into `DATABASE_URL`.
pub(super) fn database_direct_url(
    vars: &HashMap<String, String>,
) -> Result<Option<Secret>, ConfigError> {
    let url = secret_var(vars, "DATABASE_DIRECT_URL")?;
    with_password(vars, "DATABASE_DIRECT_URL", url)
}

fn with_password(
    vars: &HashMap<String, String>,
    name: &str,
    url: Option<Secret>,
) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let Some(password) = secret_var(vars, "DATABASE_PASSWORD")? else {
        return Ok(Some(url));
    };
    let text = url.expose();
    let start = text.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let Some(at) = text[start..authority_end].rfind('@').map(|i| start + i) else {
        return Err(ConfigError::new(format!(
            "DATABASE_PASSWORD is set but {name} names no user: write it as \
             postgres://user@host:5432/database"
        )));
    };
    if text[start..at].contains(':') {
        return Err(ConfigError::new(format!(
            "both DATABASE_PASSWORD and a password in {name} are set: keep one of them"
        )));
    }
    let encoded: String = password
        .expose()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(Some(Secret::new(format!(
        "{}:{encoded}{}",
        &text[..at],
        &text[at..]
    ))))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::{app::config::SECRET_VAR, secret::Secret};

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn every_secret_may_come_from_a_file_but_not_from_both() {
        let dir = tempfile::tempdir().expect("dir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("written");
            path.display().to_string()
        };
        let (secret, token, url) = (
            file("secret", "from-a-file\n"),
            file("token", "admin-from-file"),
            file("url", "postgres://u:p%40ss@db:5432/x\n"),
        );
        let s = super::super::Settings::from_vars(&vars(&[
            ("FLUID_WEBHOOK_SECRET_FILE", &secret),
            ("ADMIN_TOKEN_FILE", &token),
            ("DATABASE_URL_FILE", &url),
            ("FLUID_WEBHOOK_SECRET_PREVIOUS_FILE", &token),
        ]))
        .expect("valid");
        assert_eq!(
            s.secret.expose(),
            "from-a-file",
            "the final newline dropped"
        );
        assert_eq!(
            s.admin_token.as_ref().map(Secret::expose),
            Some("admin-from-file")
        );
        assert_eq!(
            s.database_url.as_ref().map(Secret::expose),
            Some("postgres://u:p%40ss@db:5432/x")
        );
        assert!(s.previous_secret.is_some());

        let both = super::super::Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            ("FORWARD_SECRET", "y"),
            ("FORWARD_SECRET_FILE", &token),
        ]))
        .expect_err("both");
        assert!(
            both.to_string()
                .contains("FORWARD_SECRET and FORWARD_SECRET_FILE"),
            "{both}"
        );
        let missing = super::super::Settings::from_vars(&vars(&[(
            "FLUID_WEBHOOK_SECRET_FILE",
            "/nonexistent/s",
        )]))
        .expect_err("unreadable");
        assert!(
            missing.to_string().contains("/nonexistent/s")
                && missing.to_string().contains("cannot be read"),
            "{missing}"
        );
        let empty = file("empty", "\n");
        let err = super::super::Settings::from_vars(&vars(&[
            (SECRET_VAR, "x"),
            ("FLUID_API_KEY_FILE", &empty),
        ]))
        .expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn a_database_password_of_its_own_is_encoded_into_the_url() {
        let url = super::database_url(&vars(&[
            ("DATABASE_URL", "postgres://fluid@db:5432/x?sslmode=disable"),
            ("DATABASE_PASSWORD", "p@ss/:#w%rd?"),
        ]))
        .expect("valid")
        .expect("a URL");
        assert_eq!(
            url.expose(),
            "postgres://fluid:p%40ss%2F%3A%23w%25rd%3F@db:5432/x?sslmode=disable"
        );
        for (pairs, says) in [
            (
                vec![
                    ("DATABASE_URL", "postgres://fluid:x@db/x"),
                    ("DATABASE_PASSWORD", "s3cr3t-value"),
                ],
                "keep one",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://db/x"),
                    ("DATABASE_PASSWORD", "s3cr3t-value"),
                ],
                "no user",
            ),
            (
                vec![("DATABASE_PASSWORD", "s3cr3t-value")],
                "DATABASE_URL is not",
            ),
        ] {
            let err = super::database_url(&vars(&pairs)).expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
            assert!(
                !err.to_string().contains("s3cr3t"),
                "never the value: {err}"
            );
        }
        assert_eq!(
            super::database_url(&vars(&[("DATABASE_URL", "postgres://u:p@h/d")]))
                .expect("valid")
                .map(|u| u.expose().to_string()),
            Some("postgres://u:p@h/d".to_string())
        );
    }
}
