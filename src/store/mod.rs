//! PostgreSQL, below every stage: the pool and migrations, how a sqlx error is sorted, the
//! embedded server and retention.

pub mod database;
pub mod embedded_postgres;
pub mod retention;
