//! One integration-test binary: the real service over real HTTP, against a real PostgreSQL
//! (a private server started from the local binaries, or `DATABASE_URL` when set). Every test
//! gets its own database, created from a migrated template. Logs show when `TEST_LOG` is set.

mod admin;
mod cli;
mod forward;
mod helpers;
mod limits;
mod monitoring;
mod outage;
mod processes;
mod processing;
mod providers;
mod reconciliation;
mod stand_in;
mod under_load;
mod webhooks;
