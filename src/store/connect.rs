//! Reaching PostgreSQL, and what a failure to reach it means, in words an operator can act on:
//! which host and port, which user, and the cause (refused, authentication failed, unknown host,
//! no such database, TLS, no answer), never the password. A pool only says "pool timed out while
//! waiting for an open connection"; one direct connection says why.

use std::{str::FromStr, time::Duration};

use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};

use crate::secret::Secret;

/// Why PostgreSQL could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unreachable {
    /// What failed and what to do, naming host, port and user, never the password.
    pub message: String,
    /// Whether waiting can help (refused, no answer, starting up); false for a wrong password,
    /// an unknown host, a missing database or a TLS failure, which start-up reports at once.
    pub passing: bool,
}

/// The advice for a password with characters a URL reserves.
const ENCODE: &str = "percent-encode `@ / : # ? %` in the user name and password \
                      (`@` is %40, `/` %2F, `:` %3A, `#` %23, `?` %3F, `%` %25)";

/// Reads `DATABASE_URL`, refusing what is not a PostgreSQL URL. The error names the variable and
/// the expected form, never the value (it may hold a password).
pub fn options(url: &Secret) -> anyhow::Result<PgConnectOptions> {
    let text = url.expose().trim();
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        anyhow::bail!(
            "DATABASE_URL must be a URL such as postgres://user:password@host:5432/database \
             (it starts with postgres:// or postgresql://); {ENCODE}"
        );
    }
    let options = PgConnectOptions::from_str(text).map_err(|_| {
        anyhow::anyhow!(
            "DATABASE_URL is not a valid PostgreSQL URL (postgres://user:password@host:5432/database); \
             {}",
            if looks_unencoded(text) {
                format!("it looks like the password is not encoded: {ENCODE}")
            } else {
                ENCODE.to_string()
            }
        )
    })?;
    Ok(options)
}

/// Whether the part before the host holds characters that should have been percent-encoded: a
/// second `@`, or a `#` or `?` before the last `@`.
fn looks_unencoded(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            credentials.contains(['@', '#', '?', '/'])
        }
        None => rest.contains('#'),
    }
}

/// Opens one connection and closes it; `Err` says why it could not, within `within`.
pub async fn probe(options: &PgConnectOptions, within: Duration) -> Result<(), Unreachable> {
    match tokio::time::timeout(within, options.connect()).await {
        Ok(Ok(connection)) => {
            connection.close().await.ok();
            Ok(())
        }
        Ok(Err(error)) => Err(explain(&error, options)),
        Err(_) => Err(Unreachable {
            message: format!(
                "{}: no answer within {} s; is the host reachable from here (firewall, network)?",
                target(options),
                within.as_secs()
            ),
            passing: true,
        }),
    }
}

/// "PostgreSQL at host:port as user".
fn target(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(socket) => format!("the socket {}", socket.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!(
        "cannot connect to PostgreSQL at {place} as `{}`",
        options.get_username()
    )
}

/// What a failed connection attempt means.
pub fn explain(error: &sqlx::Error, options: &PgConnectOptions) -> Unreachable {
    let target = target(options);
    let lasting = |message: String| Unreachable {
        message,
        passing: false,
    };
    let passing = |message: String| Unreachable {
        message,
        passing: true,
    };
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            passing(format!(
                "{target}: connection refused; is PostgreSQL running and listening on that port?"
            ))
        }
        sqlx::Error::Io(io) if is_unknown_host(io) => lasting(format!(
            "{target}: unknown host `{}` ({io}); check the host in DATABASE_URL",
            options.get_host()
        )),
        sqlx::Error::Io(io) => passing(format!("{target}: {io}")),
        sqlx::Error::Tls(tls) => lasting(format!(
            "{target}: TLS failed ({tls}); check `sslmode` in DATABASE_URL and the server's certificate"
        )),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "28P01" => lasting(format!(
                    "{target}: authentication failed (wrong password for `{}`); check the password in \
                     DATABASE_URL, and {ENCODE}",
                    options.get_username()
                )),
                "28000" => lasting(format!(
                    "{target}: the server refuses this user or address ({}); check pg_hba.conf and \
                     the user in DATABASE_URL",
                    db.message()
                )),
                "3D000" => lasting(format!(
                    "{target}: the database `{}` does not exist; create it or fix its name in DATABASE_URL",
                    options.get_database().unwrap_or("")
                )),
                // Starting up, shutting down, recovering, or out of connections: it may pass.
                "57P03" | "53300" | "57P01" => passing(format!("{target}: {}", db.message())),
                _ => lasting(format!("{target}: {} (SQLSTATE {code})", db.message())),
            }
        }
        sqlx::Error::Configuration(e) => lasting(format!("{target}: {e}")),
        other => passing(format!("{target}: {other}")),
    }
}

/// Whether an I/O error is a failed name lookup (the resolver's words differ by platform).
fn is_unknown_host(io: &std::io::Error) -> bool {
    let text = io.to_string().to_ascii_lowercase();
    [
        "failed to lookup address",
        "name or service not known",
        "no address associated",
        "nodename nor servname",
        "temporary failure in name resolution",
    ]
    .iter()
    .any(|words| text.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_are_not_postgres_urls_are_refused_naming_the_form_never_the_value() {
        for url in [
            "localhost:5432",
            "host=localhost user=x",
            "mysql://u:p@h/db",
            "",
        ] {
            let error = options(&Secret::new(url)).expect_err(url).to_string();
            assert!(
                error.contains("postgres://user:password@host:5432/database"),
                "{error}"
            );
            assert!(url.is_empty() || !error.contains(url), "{error}");
        }
        assert!(options(&Secret::new("postgres://u:p%40ss@db:5432/x")).is_ok());
        assert!(options(&Secret::new("postgresql://u@db/x")).is_ok());
    }

    #[test]
    fn an_unencoded_password_is_recognised() {
        for url in [
            "postgres://u:p@ss@db/x",
            "postgres://u:pa#ss@db/x",
            "postgres://u:p/ss@db/x",
        ] {
            assert!(looks_unencoded(url), "{url}");
        }
        for url in [
            "postgres://u:p%40ss@db/x",
            "postgres://db/x",
            "postgres://u@db/x#",
        ] {
            assert!(!looks_unencoded(url), "{url}");
        }
    }
}
