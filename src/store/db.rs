//! The handle every stage queries through: the pool of connections to PostgreSQL, reached
//! directly or through PgBouncer in transaction-pooling mode (`database.transaction_pooling`).
//!
//! Through PgBouncer a statement outside a transaction is not safe with sqlx: it parses the
//! statement and waits for the answer before binding and executing it, and PgBouncer may hand the
//! server connection to another client in between. So there every statement sent to [`Db`]
//! itself runs in a transaction of its own, which PgBouncer keeps on one server connection. The
//! statements of an explicit transaction ([`Db::begin`]) are on one server anyway. The named
//! statements sqlx leaves behind are cleared by PgBouncer after each transaction
//! (`server_reset_query_always = 1`, README), and never reused by the service (no statement cache).

use futures_util::{FutureExt, StreamExt, TryStreamExt, future::BoxFuture, stream::BoxStream};
use sqlx::{
    Either, Error, Execute, Executor, PgPool, Postgres, Transaction,
    postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo},
};

/// A pool, whether PgBouncer pools its server connections by transaction, and where to LISTEN.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    transaction_pooling: bool,
    /// PostgreSQL itself, for what needs a session (LISTEN, migrations): the pool when direct,
    /// `DATABASE_DIRECT_URL` through PgBouncer, none when that is unset.
    direct: Option<PgPool>,
}

impl Db {
    /// `pool` reached directly (or through a pooler in session mode).
    pub fn direct(pool: PgPool) -> Self {
        Self {
            direct: Some(pool.clone()),
            pool,
            transaction_pooling: false,
        }
    }

    /// `pool` reached through PgBouncer in transaction-pooling mode; `direct` past it, if any.
    pub fn through_transaction_pooling(pool: PgPool, direct: Option<PgPool>) -> Self {
        Self {
            pool,
            transaction_pooling: true,
            direct,
        }
    }

    /// The pool itself, for what needs one (the pool's gauges, closing).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pool on PostgreSQL itself, where a session lasts (LISTEN, migrations), if there is one.
    pub fn session_pool(&self) -> Option<&PgPool> {
        self.direct.as_ref()
    }

    /// Closes the pools, waiting for the connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
        // Direct, it is the same pool.
        if let (true, Some(direct)) = (self.transaction_pooling, &self.direct) {
            direct.close().await;
        }
    }

    /// A transaction: its statements all run on one server connection.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        self.pool.begin().await
    }
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Self::direct(pool)
    }
}

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return self.pool.fetch_many(query);
        }
        // Collected inside the transaction, then handed out: the service's queries are bounded
        // (pages, batches), and a stream cannot keep the transaction open past its consumer.
        async move {
            let mut tx = self.pool.begin().await?;
            let results: Vec<_> = tx.fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, Error>(futures_util::stream::iter(results.into_iter().map(Ok)))
        }
        .into_stream()
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return self.pool.fetch_optional(query);
        }
        // The first row of the statement's own transaction (above).
        let mut rows = self.fetch(query);
        async move { rows.try_next().await }.boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}
