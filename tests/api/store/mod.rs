//! The database: an outage and its recovery, contention, retention, and a role that is no superuser.

mod contention;
mod least_privilege;
mod outage;
mod pgbouncer;
mod retention;
mod rows;
