//! One integration-test binary: the real service over real HTTP, against a real PostgreSQL
//! (a private server started from the local binaries, or `DATABASE_URL` when set). Every test
//! gets its own database, created from a migrated template. Logs show when `TEST_LOG` is set.
//!
//! The folders are those of `src/`: `http`, `intake`, `apply`, `follow_up`, `store` and `app`.

mod app;
mod apply;
mod child;
mod follow_up;
mod helpers;
mod http;
mod intake;
mod stand_in;
mod store;
