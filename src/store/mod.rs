//! PostgreSQL, below every stage: the handle every query goes through (direct or through
//! PgBouncer), how far behind the queues are, deliveries by minute, the pool and migrations, how a
//! sqlx error is sorted, what a failed connection means, the embedded server, the names states
//! are stored under, and retention.

pub mod backlogs;
pub mod connect;
pub mod database;
pub mod db;
pub mod deliveries;
pub mod embedded_postgres;
pub mod retention;
pub mod rows;
