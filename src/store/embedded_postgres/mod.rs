//! The embedded default: with no `DATABASE_URL`, `serve` runs a private PostgreSQL from the
//! locally installed server binaries, with its data in `./.data/postgres` (kept between runs),
//! and stops it on exit. It listens on 127.0.0.1 only, on a free port, with a generated password.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` OS user, which
//! must be able to reach the data folder ([`access`] checks that before creating anything).
//! Several processes may use one server ([`users`]): the first starts it, the last one to leave
//! stops it.

mod access;
mod users;

use std::{
    net::TcpListener,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use nix::unistd::{Uid, User, chown};
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use crate::secret::Secret;
use users::{Turn, Users};

/// The database the service uses inside the embedded server.
pub const DATABASE: &str = "fluid_webhooks";

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<User>,
    port: u16,
    password: Secret,
    /// This process's shared hold on the server: it is not stopped while another process uses it.
    users: Users,
}

impl EmbeddedPostgres {
    /// Starts (creating on first use) the server whose data lives in `data_dir`, and makes sure
    /// the database [`DATABASE`] exists. A server left running there by a killed run is reused.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir().ok_or_else(|| {
            anyhow::anyhow!(
                "DATABASE_URL is not set and no PostgreSQL server binaries (initdb, pg_ctl) were found \
                 on PATH or under /usr/lib/postgresql/*/bin. Install PostgreSQL (e.g. `apt-get install \
                 postgresql`), set DATABASE_URL to an existing database, or run `docker compose up`."
            )
        })?;
        let run_as = if Uid::effective().is_root() {
            Some(User::from_name("postgres")?.ok_or_else(|| {
                anyhow::anyhow!(
                    "running as root, but there is no `postgres` OS user to run PostgreSQL as"
                )
            })?)
        } else {
            None
        };
        let data_dir = std::path::absolute(data_dir).context("resolving the data folder")?;
        access::check(&data_dir, run_as.as_ref())?;
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // Starting happens in turn: no other process starts or stops it meanwhile.
        let turn = Turn::take(&data_dir).await?;
        let users = Users::join(&data_dir, &turn)?;
        let mut server = Self {
            data_dir,
            bin_dir,
            run_as,
            port: 0,
            password: Secret::new(""),
            users,
        };
        if !server.data_dir.join("PG_VERSION").exists() {
            server.init().await?;
        }
        server.password = Secret::new(
            std::fs::read_to_string(server.password_file())
                .with_context(|| format!("reading {}", server.password_file().display()))?
                .trim(),
        );
        server.port = server.running_or_started().await?;
        server.ensure_database(DATABASE).await?;
        drop(turn);
        Ok(server)
    }

    /// The port of the server on this data folder: one that is running and answers (started by
    /// another process, or left by a killed one), else a new one. A server that is running but
    /// does not answer is shutting down or starting: it is waited for, not reused.
    async fn running_or_started(&self) -> anyhow::Result<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.running_port().await {
                Some(port) if self.answers(port).await => {
                    tracing::info!(
                        data_dir = %self.data_dir.display(),
                        port,
                        "using the embedded PostgreSQL already running (another process uses it, or a killed one left it)"
                    );
                    return Ok(port);
                }
                Some(port) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(
                        port,
                        "the embedded PostgreSQL is running but does not answer yet"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(port) => bail!(
                    "the embedded PostgreSQL in {} runs on port {port} but has not answered for 60 s; \
                     look at its log {}/server.log, or stop it with `pg_ctl stop -D {}`",
                    self.data_dir.display(),
                    self.data_dir.display(),
                    self.data_dir.display()
                ),
                None => return self.launch_retrying().await,
            }
        }
    }

    /// Whether the server on `port` accepts a connection now.
    async fn answers(&self, port: u16) -> bool {
        let url = format!(
            "postgres://postgres:{}@127.0.0.1:{port}/postgres",
            self.password.expose()
        );
        let connect = PgConnection::connect(&url);
        match tokio::time::timeout(Duration::from_secs(3), connect).await {
            Ok(Ok(conn)) => {
                conn.close().await.ok();
                true
            }
            _ => false,
        }
    }

    /// Starts the server; after a `kill -9` its old processes may hold the shared memory for a
    /// moment, so a failed start is tried again twice.
    async fn launch_retrying(&self) -> anyhow::Result<u16> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.launch().await {
                Ok(port) => return Ok(port),
                Err(e) if tries < 3 => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "the embedded PostgreSQL did not start; trying again"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The URL of a database on this server (holds the password, hence a `Secret`).
    pub fn url_for(&self, database: &str) -> Secret {
        Secret::new(format!(
            "postgres://postgres:{}@127.0.0.1:{}/{database}",
            self.password.expose(),
            self.port
        ))
    }

    /// The URL of [`DATABASE`].
    pub fn url(&self) -> Secret {
        self.url_for(DATABASE)
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding `pg_ctl`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The OS user the server runs as when we are root.
    pub fn server_user(&self) -> Option<&str> {
        self.run_as.as_ref().map(|u| u.name.as_str())
    }

    /// Leaves the server: stops it (fast shutdown: open sessions are ended, data is flushed) when
    /// no other process uses it, else leaves it running for them.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let (_turn, last) = self.users.leave().await?;
        if !last {
            tracing::info!(
                data_dir,
                "embedded PostgreSQL left running: another process uses it"
            );
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &["stop", "-D", &data_dir, "-m", "fast", "-w", "-t", "60"],
        )
        .await?;
        tracing::info!(data_dir, "embedded PostgreSQL stopped");
        Ok(())
    }

    /// Restarts the server on the same port (fast shutdown: open sessions are ended). For tests
    /// of how clients live through a database restart.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("server.log").display().to_string();
        let options = format!("-p {}", self.port);
        self.run(
            "pg_ctl",
            &[
                "restart", "-D", &data_dir, "-l", &log, "-m", "fast", "-w", "-t", "60", "-o",
                &options,
            ],
        )
        .await
    }

    fn password_file(&self) -> PathBuf {
        let mut name = self.data_dir.file_name().unwrap_or_default().to_os_string();
        name.push(".password");
        self.data_dir.with_file_name(name)
    }

    async fn init(&self) -> anyhow::Result<()> {
        if !self.data_dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.data_dir)
                .with_context(|| format!("creating {}", self.data_dir.display()))?;
        }
        let password = uuid::Uuid::new_v4().simple().to_string();
        let pw_file = self.password_file();
        {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&pw_file)
                .with_context(|| format!("writing {}", pw_file.display()))?;
            file.write_all(password.as_bytes())?;
        }
        if let Some(user) = &self.run_as {
            for path in [&self.data_dir, &pw_file] {
                chown(path.as_path(), Some(user.uid), Some(user.gid))
                    .with_context(|| format!("handing {} to the postgres user", path.display()))?;
            }
        }
        tracing::info!(data_dir = %self.data_dir.display(), "creating the embedded PostgreSQL (first run)");
        let data_dir = self.data_dir.display().to_string();
        let pw_arg = format!("--pwfile={}", pw_file.display());
        self.run(
            "initdb",
            &[
                "-D",
                &data_dir,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &pw_arg,
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        .await?;
        // Loopback TCP only: no socket file, so no path-length or permission trouble.
        let conf = "\n# Added by fluid-webhooks: a private server on loopback only.\n\
                    listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 300\n";
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).context("reading postgresql.conf")?;
        text.push_str(conf);
        std::fs::write(&conf_path, text).context("writing postgresql.conf")?;
        Ok(())
    }

    /// The port of a server already running on this data folder, if any.
    async fn running_port(&self) -> Option<u16> {
        let data_dir = self.data_dir.display().to_string();
        self.run("pg_ctl", &["status", "-D", &data_dir])
            .await
            .ok()?;
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    async fn launch(&self) -> anyhow::Result<u16> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("server.log").display().to_string();
        let options = format!("-p {port}");
        self.run(
            "pg_ctl",
            &[
                "start", "-D", &data_dir, "-l", &log, "-w", "-t", "60", "-o", &options,
            ],
        )
        .await
        .with_context(|| format!("starting PostgreSQL (its log: {log})"))?;
        tracing::info!(
            data_dir,
            port,
            "embedded PostgreSQL started (DATABASE_URL is not set)"
        );
        Ok(port)
    }

    async fn ensure_database(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(self.url_for("postgres").expose())
            .await
            .context("connecting to the embedded PostgreSQL")?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Runs one of the server's programs, as the `postgres` user when we are root.
    async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .args(args)
            .current_dir(&self.data_dir)
            .kill_on_drop(true);
        if let Some(user) = &self.run_as {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .with_context(|| format!("{program} did not finish in 120 s"))?
            .with_context(|| format!("running {program}"))?;
        if output.status.success() {
            return Ok(());
        }
        let mut message = format!(
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
        if self.run_as.is_some() {
            message.push_str(&format!(
                " (as root, PostgreSQL runs as the `postgres` user, which must be able to reach {}; \
                 set FLUID_WEBHOOKS_DATABASE__EMBEDDED_DATA_DIR to a folder it can reach, or DATABASE_URL)",
                self.data_dir.display()
            ));
        }
        bail!(message)
    }
}

/// The folder with `initdb` and `pg_ctl`: from `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| has_tools(dir));
    from_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_tools(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}
