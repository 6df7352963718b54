//! The connection pool, the embedded migrations, and how a database failure is sorted: the data
//! was refused, the database cannot be reached, or something else (a bug).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use serde::Deserialize;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgListener, PgPoolOptions},
};

use super::{connect, db::Db, embedded_postgres::EmbeddedPostgres};
use crate::secret::Secret;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// `[database]`: the pool and the embedded server; see `config/default.toml`.
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
    /// Whether `DATABASE_URL` is PgBouncer in transaction-pooling mode.
    pub transaction_pooling: bool,
    /// `DATABASE_DIRECT_URL` (environment only): PostgreSQL past PgBouncer, for migrations and
    /// LISTEN. Unset: migrations go through PgBouncer in one transaction, and wake-ups are polls.
    #[serde(skip)]
    pub direct_url: Option<Secret>,
}

impl DatabaseSettings {
    /// The rules of `[database]`; the first broken one is reported with its key.
    pub fn rules(&self) -> Vec<(bool, &'static str, &'static str)> {
        vec![
            (
                self.max_connections < 2,
                "database.max_connections",
                "must be at least 2",
            ),
            (
                self.acquire_timeout_ms == 0,
                "database.acquire_timeout_ms",
                "must be at least 1",
            ),
        ]
    }
}

/// The database a command runs on: `DATABASE_URL`, or, when it is unset, the embedded PostgreSQL
/// started for it (and stopped by [`Database::close`]).
pub struct Database {
    url: Secret,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// `url` when given, else the embedded server with its data in `embedded_data_dir`.
    pub async fn open(url: Option<&Secret>, settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Ok(match url {
            Some(url) => Self {
                url: url.clone(),
                embedded: None,
            },
            None => {
                let pg = EmbeddedPostgres::start(&settings.embedded_data_dir).await?;
                Self {
                    url: pg.url(),
                    embedded: Some(pg),
                }
            }
        })
    }

    /// A pool on it, with the migrations applied (retrying while it is not reachable, up to
    /// `database.startup_timeout_secs`).
    pub async fn migrated_pool(&self, settings: &DatabaseSettings) -> anyhow::Result<Db> {
        let db = pool(&self.url, settings)?;
        migrate(&db, Duration::from_secs(settings.startup_timeout_secs)).await?;
        Ok(db)
    }

    /// Its URL (holds the password).
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// Whether it is the embedded server.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Leaves the embedded server, if this opened one: stopped when no other process uses it.
    pub async fn close(self) -> anyhow::Result<()> {
        match self.embedded {
            Some(pg) => pg.stop().await,
            None => Ok(()),
        }
    }
}

/// A pool that connects on demand: the service starts, and recovers, without the database being
/// up at that moment; requests get 503 while it is away.
pub fn pool(url: &Secret, settings: &DatabaseSettings) -> anyhow::Result<Db> {
    // The URL may hold a password: the error names the variable, never the value.
    let options = connect::options(url)?.application_name("fluid-webhooks");
    let open = |options: sqlx::postgres::PgConnectOptions| {
        PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            // No ping before each use: a connection broken by a database restart fails its one
            // batch (503, FLUID retries) and is replaced; the ping would cost a round trip per batch.
            .test_before_acquire(false)
            .connect_lazy_with(options)
    };
    let statement_timeout = [(
        "statement_timeout",
        settings.statement_timeout_ms.to_string(),
    )];
    if !settings.transaction_pooling {
        return Ok(Db::direct(open(options.options(statement_timeout.clone()))));
    }
    // PgBouncer refuses the startup parameter `options` (set statement_timeout on the role
    // instead, README), and a statement prepared on one of its server connections is not there
    // on the next: no statement cache.
    let through = open(options.statement_cache_capacity(0));
    // Sized like the main pool: each worker task and the forwarder hold one of its connections
    // to LISTEN on.
    let direct = match &settings.direct_url {
        Some(url) => Some(open(
            connect::options(url)
                .context("DATABASE_DIRECT_URL")?
                .application_name("fluid-webhooks")
                .options(statement_timeout),
        )),
        None => None,
    };
    Ok(Db::through_transaction_pooling(through, direct))
}

/// Applies pending migrations, trying again until `timeout` while the database is not reachable.
/// Replicas starting together are safe: sqlx holds an advisory lock while it migrates (through
/// PgBouncer, where a session lock would outlive its server connection's client, the migrations
/// run in one transaction that holds a transaction-level lock until it commits). A cause that
/// waiting cannot cure (a wrong password, an unknown host) ends it at once, and every message says
/// what failed: host, port, user and cause.
pub async fn migrate(db: &Db, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let options = db.session_pool().unwrap_or(db.pool()).connect_options();
    loop {
        match connect::probe(&options, Duration::from_secs(5)).await {
            Ok(()) => break,
            Err(problem) if problem.passing && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %problem, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(problem) => anyhow::bail!(problem),
        }
    }
    loop {
        match run_migrations(db).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e))
                if is_unreachable(&e) && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("applying database migrations"),
        }
    }
}

/// On PostgreSQL itself when there is a session to be had (direct, or `DATABASE_DIRECT_URL`);
/// else through PgBouncer, in one transaction.
async fn run_migrations(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    if let Some(session) = db.session_pool() {
        return MIGRATOR.run(session).await;
    }
    // Any number: the key replicas agree on ("fluid-webhooks migrations").
    const KEY: i64 = 0x666c_7569_645f_6d69;
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(KEY)
        .execute(&mut *tx)
        .await?;
    MIGRATOR.run(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A database failure, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// PostgreSQL refused the data itself (the client's fault; trying again will not help).
    #[error("{0}")]
    BadData(String),
    /// The database could not be reached, or went away mid-conversation (try again later).
    #[error("database unavailable: {0}")]
    Unreachable(String),
    /// PostgreSQL gave up on a statement because of other work at the same moment (a deadlock, a
    /// serialization failure, a lock or statement timeout): nothing was written, and the same
    /// request sent again can succeed.
    #[error("database busy: {0}; nothing was written, and trying again can succeed")]
    Contended(String),
    /// Anything else: a bug of ours or a broken promise of the database.
    #[error("database error: {0}")]
    Bug(String),
}

impl Failure {
    /// Sorts a sqlx error. Takes a reference because every request of a failed batch gets its own
    /// copy of the answer.
    pub fn of(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::Database(db) if is_data_error(error) => {
                Self::BadData(format!("the database refused a value: {}", db.message()))
            }
            _ if is_unreachable(error) => Self::Unreachable(error.to_string()),
            _ if is_contended(error) => Self::Contended(error.to_string()),
            _ => Self::Bug(error.to_string()),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::of(&error)
    }
}

/// PostgreSQL refused the data itself: class 22 (data exception, e.g. a `\u0000` jsonb cannot
/// hold) or 54 (program limit exceeded, e.g. nesting too deep for the jsonb parser).
pub fn is_data_error(error: &sqlx::Error) -> bool {
    sqlstate_in(error, &["22", "54"])
}

/// Whether PostgreSQL refused a statement only because of concurrent work, so that running it
/// again can succeed: class 40 (transaction rollback: serialization failure, deadlock detected),
/// 55P03 (lock not available: `lock_timeout`) and 57014 (query canceled: `statement_timeout`).
pub fn is_contended(error: &sqlx::Error) -> bool {
    sqlstate_in(error, &["40", "55P03", "57014"])
}

/// Whether PostgreSQL answered with a SQLSTATE in one of `classes`: each a class ("22"), a
/// subclass ("57P") or a whole code ("55P03").
fn sqlstate_in(error: &sqlx::Error, classes: &[&str]) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| classes.iter().any(|class| code.starts_with(class)))
}

/// Whether an error means the database could not be reached or went away mid-conversation
/// (as opposed to refusing a statement, or a bug in ours).
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08: connection exception; 57P: the server is shutting down or restarting.
        sqlx::Error::Database(_) => sqlstate_in(error, &["08", "57P"]),
        _ => false,
    }
}

/// Wake-ups by `NOTIFY` on one channel, for a loop that otherwise looks for work every so often
/// (the worker, the forwarder). The listening connection is made on [`Wakeups::listen`] and made
/// again after it breaks; until then the loop just sleeps its pause.
pub struct Wakeups {
    /// None through PgBouncer without `DATABASE_DIRECT_URL`: the loop only polls.
    pool: Option<PgPool>,
    channel: &'static str,
    listener: Option<PgListener>,
}

impl Wakeups {
    /// Wake-ups on `channel`, listening on a connection to PostgreSQL itself, when `db` has one.
    pub fn new(db: &Db, channel: &'static str) -> Self {
        Self {
            pool: db.session_pool().cloned(),
            channel,
            listener: None,
        }
    }

    /// Listens on the channel, unless already listening (or there is nowhere to listen).
    pub async fn listen(&mut self) -> Result<(), sqlx::Error> {
        if let (None, Some(pool)) = (&self.listener, &self.pool) {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(self.channel).await?;
            self.listener = Some(listener);
        }
        Ok(())
    }

    /// Drops the listening connection (after a failure): the next [`Wakeups::listen`] makes one.
    pub fn forget(&mut self) {
        self.listener = None;
    }

    /// Returns when a notification arrives or `pause` has passed, whichever is first. The
    /// notifications already received are dropped: they only wake the loop, and one pass of it
    /// serves them all (otherwise a busy loop would wake once for each, long after the work was
    /// done). A broken connection is forgotten.
    pub async fn wait(&mut self, pause: Duration) {
        let notified = async {
            match self.listener.as_mut() {
                Some(listener) => listener
                    .recv()
                    .await
                    .map(|_| while listener.next_buffered().is_some() {}),
                None => std::future::pending().await,
            }
        };
        let broken = tokio::select! {
            () = tokio::time::sleep(pause) => false,
            received = notified => received.is_err(),
        };
        if broken {
            self.forget();
        }
    }
}
