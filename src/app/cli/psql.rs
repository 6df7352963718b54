//! `fluid-webhooks psql` and `fluid-webhooks database-url`: the service's database for a person,
//! embedded or `DATABASE_URL`. `psql` passes the connection through the environment (`PGHOST`,
//! `PGPASSWORD`, ...), never on its command line, where any user could read it in `ps`.

use std::{path::PathBuf, process::Stdio};

use anyhow::Context;

use crate::{
    app::config::Settings,
    secret::Secret,
    store::{database::Database, embedded_postgres::find_bin_dir},
};

/// The database's URL, as `database-url` prints it: the password as `****` unless asked for.
pub fn shown(url: &Secret, show_password: bool) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url.expose())
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid URL"))?;
    if !show_password && parsed.password().is_some() {
        parsed
            .set_password(Some("****"))
            .map_err(|()| anyhow::anyhow!("DATABASE_URL cannot hold a password"))?;
    }
    Ok(parsed.to_string())
}

/// The libpq variables for `url`: host, port, user, password, database, and TLS settings.
pub fn libpq_env(url: &Secret) -> anyhow::Result<Vec<(&'static str, String)>> {
    let parsed = reqwest::Url::parse(url.expose())
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid URL"))?;
    let mut env = Vec::new();
    if let Some(host) = parsed.host_str() {
        env.push(("PGHOST", percent_decode(host)));
    }
    if let Some(port) = parsed.port() {
        env.push(("PGPORT", port.to_string()));
    }
    if !parsed.username().is_empty() {
        env.push(("PGUSER", percent_decode(parsed.username())));
    }
    if let Some(password) = parsed.password() {
        env.push(("PGPASSWORD", percent_decode(password)));
    }
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        env.push(("PGDATABASE", percent_decode(database)));
    }
    for (key, value) in parsed.query_pairs() {
        let name = match key.as_ref() {
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            _ => continue,
        };
        env.push((name, value.into_owned()));
    }
    Ok(env)
}

/// Decodes `%XX` escapes (a URL's user, password, host and path keep them).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `psql` to run: beside the embedded server's programs, else on `PATH`.
fn psql_program() -> PathBuf {
    find_bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// `fluid-webhooks database-url`: prints the URL. An embedded server it had to start is left
/// running, so the URL works; `serve` uses it and, being the last user, stops it.
pub async fn database_url(show_password: bool) -> anyhow::Result<()> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    println!("{}", shown(database.url(), show_password)?);
    if database.is_embedded() {
        eprintln!(
            "the embedded PostgreSQL keeps running; its password is in {}.password \
             (or use `fluid-webhooks psql`)",
            settings.database.embedded_data_dir.display()
        );
    }
    Ok(())
}

/// `fluid-webhooks psql [ARGS]`: runs psql on the service's database with `ARGS`; its exit code.
pub async fn psql(args: Vec<String>) -> anyhow::Result<std::process::ExitStatus> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let program = psql_program();
    let status = tokio::process::Command::new(&program)
        .args(&args)
        .envs(libpq_env(database.url())?)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .with_context(|| {
            format!(
                "running {} (install the PostgreSQL client, e.g. `apt-get install postgresql-client`)",
                program.display()
            )
        });
    let closed = database.close().await;
    let status = status?;
    closed?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_becomes_libpq_variables_and_is_shown_masked() {
        let url =
            Secret::new("postgres://fw:p%40ss%2Fw%3Ard%23@db.internal:6432/fluid?sslmode=require");
        let env = libpq_env(&url).expect("env");
        let get = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PGHOST"), Some("db.internal"));
        assert_eq!(get("PGPORT"), Some("6432"));
        assert_eq!(get("PGUSER"), Some("fw"));
        assert_eq!(get("PGPASSWORD"), Some("p@ss/w:rd#"));
        assert_eq!(get("PGDATABASE"), Some("fluid"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
        assert_eq!(
            shown(&url, false).expect("shown"),
            "postgres://fw:****@db.internal:6432/fluid?sslmode=require"
        );
        assert!(shown(&url, true).expect("shown").contains("p%40ss"));
    }
}
