//! The database: an outage and its recovery, retention, and a role that is no superuser.

mod least_privilege;
mod outage;
mod pgbouncer;
mod retention;
mod rows;
