//! The `transactions` table: one row per FLUID transaction, moved by events through [`rules`].
//! [`apply`] runs inside the worker's database transaction and holds the row lock while it
//! decides, so two workers or replicas applying events of one transaction take turns.

pub mod rules;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, postgres::PgArguments, query::Query};

use crate::payload::{FluidEvent, decimal_text};
use rules::{Current, Decision, Incoming, Status};

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The payload cannot ever be applied (missing reference, amount not a number): no retry.
    #[error("invalid payload: {0}")]
    Invalid(String),
    /// The database refused or failed; worth a retry later.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The columns an event writes, read from its payload.
struct Fields {
    reference: String,
    fluid_id: Option<String>,
    fluid_uuid: Option<String>,
    partner_reference: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    fee: Option<String>,
    narration: Option<String>,
    approval_method: Option<String>,
    error_details: Option<String>,
    fluid_created_at: Option<DateTime<Utc>>,
    processed_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

impl Fields {
    fn from_event(event: FluidEvent) -> Result<Self, ApplyError> {
        let tx = event.data.transaction;
        if tx.reference.trim().is_empty() {
            return Err(ApplyError::Invalid(
                "data.transaction.reference is empty".into(),
            ));
        }
        let decimal = |raw: Option<Box<serde_json::value::RawValue>>, name: &str| {
            raw.filter(|r| r.get() != "null")
                .map(|r| decimal_text(&r).map_err(|e| ApplyError::Invalid(format!("{name}: {e}"))))
                .transpose()
        };
        Ok(Self {
            amount: decimal(tx.amount, "data.transaction.amount")?,
            fee: decimal(tx.fee, "data.transaction.fee")?,
            reference: tx.reference,
            fluid_id: tx.id,
            fluid_uuid: tx.uuid,
            partner_reference: tx.partner_reference,
            currency: tx.currency,
            narration: tx.narration,
            approval_method: tx.approval_method,
            error_details: event
                .data
                .error_details
                .map(|r| r.get().to_string())
                .filter(|t| t != "null"),
            fluid_created_at: parse_time(tx.created_at.as_deref()),
            processed_at: parse_time(tx.processed_at.as_deref()),
            completed_at: parse_time(tx.completed_at.as_deref()),
        })
    }
}

/// An RFC 3339 time, or `None` when absent or unreadable (the payload keeps the original text).
pub fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The event being applied, as the worker read it from the inbox.
#[derive(Debug)]
pub struct EventRef<'a> {
    /// `webhook_events.event_id`.
    pub event_id: &'a str,
    /// `webhook_events.event_type`.
    pub event_type: &'a str,
    /// When the event happened: its `timestamp`, or when it was received if it has none.
    pub at: DateTime<Utc>,
}

/// Applies one transaction event inside the caller's database transaction and says what the
/// rules decided. `status` is the status the event sets.
pub async fn apply(
    conn: &mut PgConnection,
    event: &EventRef<'_>,
    status: Status,
    payload: FluidEvent,
) -> Result<Decision, ApplyError> {
    let fields = Fields::from_event(payload)?;
    let incoming = Incoming {
        status,
        at: event.at,
    };
    // Two tries: if the row does not exist yet and another worker creates it between our SELECT
    // and our INSERT, the INSERT does nothing and the second round locks the new row.
    for _ in 0..2 {
        let current = lock(conn, &fields.reference).await?;
        let decision = rules::decide(current, incoming);
        match decision {
            Decision::Create => {
                if insert(conn, &fields, event, status).await? {
                    return Ok(decision);
                }
            }
            Decision::Move => {
                let Some(current) = current else {
                    unreachable!("Move needs a stored transaction")
                };
                update(conn, &fields, event, status, current).await?;
                return Ok(decision);
            }
            Decision::Unchanged | Decision::Stale | Decision::Refused => return Ok(decision),
        }
    }
    Err(ApplyError::Invalid(format!(
        "transaction {} was created and locked concurrently twice",
        fields.reference
    )))
}

/// Reads and locks the transaction row until the caller's transaction ends.
async fn lock(conn: &mut PgConnection, reference: &str) -> Result<Option<Current>, ApplyError> {
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT status, last_event_at FROM transactions WHERE reference = $1 FOR UPDATE",
    )
    .bind(reference)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(status, last_event_at)| {
        let status = Status::parse(&status)
            .ok_or_else(|| ApplyError::Invalid(format!("stored status `{status}` is unknown")))?;
        Ok(Current {
            status,
            last_event_at,
        })
    })
    .transpose()
}

/// Binds the columns both writes set, as `$1` to `$17`.
fn bind_row<'q>(
    query: Query<'q, Postgres, PgArguments>,
    f: &'q Fields,
    event: &'q EventRef<'_>,
    status: Status,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(&f.reference)
        .bind(status.as_str())
        .bind(&f.fluid_id)
        .bind(&f.fluid_uuid)
        .bind(&f.partner_reference)
        .bind(&f.amount)
        .bind(&f.currency)
        .bind(&f.fee)
        .bind(&f.narration)
        .bind(&f.approval_method)
        .bind(&f.error_details)
        .bind(f.fluid_created_at)
        .bind(f.processed_at)
        .bind(f.completed_at)
        .bind(event.event_id)
        .bind(event.event_type)
        .bind(event.at)
}

/// Creates the transaction; `false` when another worker created it first.
async fn insert(
    conn: &mut PgConnection,
    f: &Fields,
    event: &EventRef<'_>,
    status: Status,
) -> Result<bool, ApplyError> {
    let query = sqlx::query(
        "INSERT INTO transactions (reference, status, fluid_id, fluid_uuid, partner_reference, \
             amount, currency, fee, narration, approval_method, error_details, \
             fluid_created_at, processed_at, completed_at, last_event_id, last_event_type, last_event_at) \
         VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8::numeric, $9, $10, $11::jsonb, \
             $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (reference) DO NOTHING",
    );
    let done = bind_row(query, f, event, status)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the locked transaction. The `WHERE` repeats what `decide` saw, so a row that changed
/// under us (impossible while we hold the lock, but cheap to check) is not overwritten. Details
/// an event leaves out keep their stored value.
async fn update(
    conn: &mut PgConnection,
    f: &Fields,
    event: &EventRef<'_>,
    status: Status,
    seen: Current,
) -> Result<(), ApplyError> {
    let query = sqlx::query(
        "UPDATE transactions SET status = $2, \
             fluid_id = COALESCE($3, fluid_id), fluid_uuid = COALESCE($4, fluid_uuid), \
             partner_reference = COALESCE($5, partner_reference), \
             amount = COALESCE($6::numeric, amount), currency = COALESCE($7, currency), \
             fee = COALESCE($8::numeric, fee), narration = COALESCE($9, narration), \
             approval_method = COALESCE($10, approval_method), \
             error_details = COALESCE($11::jsonb, error_details), \
             fluid_created_at = COALESCE($12, fluid_created_at), \
             processed_at = COALESCE($13, processed_at), completed_at = COALESCE($14, completed_at), \
             last_event_id = $15, last_event_type = $16, last_event_at = $17, updated_at = now() \
         WHERE reference = $1 AND status = $18 AND last_event_at = $19",
    );
    let done = bind_row(query, f, event, status)
        .bind(seen.status.as_str())
        .bind(seen.last_event_at)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ApplyError::Database(sqlx::Error::Protocol(format!(
            "transaction {} changed while locked",
            f.reference
        ))))
    }
}
