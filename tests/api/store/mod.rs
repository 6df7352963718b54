//! The database: an outage and its recovery, and retention.

mod outage;
mod retention;
mod rows;
