//! The names the service stores states under are exactly the ones the database's `CHECK`
//! constraints allow, so neither can drift from the other.

use std::collections::BTreeSet;

use fluid_webhooks::{
    apply::transactions::rules::Status,
    store::rows::{EventStatus, Source},
};
use sqlx::PgPool;

use crate::helpers::test_database;

/// The quoted names in a constraint's definition, e.g. `CHECK (status IN ('a', 'b'))`.
async fn allowed(pool: &PgPool, constraint: &str) -> BTreeSet<String> {
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
    )
    .bind(constraint)
    .fetch_one(pool)
    .await
    .expect("the constraint exists");
    definition
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|name| !name.is_empty())
        .collect()
}

fn names(all: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    all.into_iter().map(str::to_string).collect()
}

#[tokio::test]
async fn every_stored_name_is_one_the_database_allows_and_no_other() {
    let pool = PgPool::connect(&test_database().await).await.expect("pool");
    assert_eq!(
        allowed(&pool, "webhook_events_status_check").await,
        names(EventStatus::ALL.map(EventStatus::as_str))
    );
    assert_eq!(
        allowed(&pool, "webhook_events_source_check").await,
        names(Source::ALL.map(Source::as_str))
    );
    assert_eq!(
        allowed(&pool, "transactions_status_check").await,
        names(Status::ALL.map(Status::as_str))
    );
}
