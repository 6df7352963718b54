//! Expected debits. The merchant's own system initiates each debit with FLUID and knows its
//! reference before any webhook can arrive; saying so (`POST /admin/transactions`,
//! `fluid-webhooks expect`) creates the transaction as `created`. From then on reconciliation
//! watches it like any non-final transaction, so a debit whose every webhook was missed is still
//! settled from FLUID's API; and the amount and currency expected are kept, so an event that says
//! otherwise is applied as FLUID says but flagged (`transactions.amount_mismatch`).
//!
//! Saying the same again changes nothing; saying something else about a stored reference (another
//! amount, currency or partner reference than stored or expected) is a conflict.

use crate::store::db::Db;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    mapping::is_decimal,
    transactions::{self, rules::Status},
};
use crate::{intake::providers::FLUID, store::database::Failure};

/// What the merchant says it initiated with FLUID.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// FLUID's reference of the debit request.
    pub reference: String,
    /// The merchant's own id (order id).
    pub partner_reference: String,
    /// The amount, as exact decimal text.
    pub amount: String,
    /// The currency, e.g. `GHS`.
    pub currency: String,
}

impl Expectation {
    /// Checks the values, naming the first bad one.
    fn validate(&self) -> Result<(), ExpectError> {
        let text = |name: &str, value: &str| {
            if value.trim().is_empty() || value.len() > 255 {
                Err(ExpectError::Invalid(format!(
                    "`{name}` must be 1 to 255 characters"
                )))
            } else {
                Ok(())
            }
        };
        text("reference", &self.reference)?;
        text("partner_reference", &self.partner_reference)?;
        if !is_decimal(&self.amount) {
            return Err(ExpectError::Invalid(format!(
                "`amount` must be a decimal number such as 100.00, not `{}`",
                self.amount.chars().take(40).collect::<String>()
            )));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ExpectError::Invalid(format!(
                "`currency` must be a three-letter ISO code such as GHS, not `{}`",
                self.currency.chars().take(40).collect::<String>()
            )));
        }
        Ok(())
    }
}

/// An expected transaction as stored (amounts exactly as stored).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ExpectedRow {
    /// Always `fluid`: the merchant initiates debits with FLUID.
    pub provider: String,
    /// FLUID's reference.
    pub reference: String,
    /// The merchant's own id.
    pub partner_reference: Option<String>,
    /// The status; `created` until an event or a poll says more.
    pub status: String,
    /// What FLUID says the amount is (`null` until it says).
    pub amount: Option<String>,
    /// What FLUID says the currency is.
    pub currency: Option<String>,
    /// What the merchant expected.
    pub expected_amount: Option<String>,
    /// The currency the merchant expected.
    pub expected_currency: Option<String>,
    /// FLUID's amount or currency differs from the expected ones.
    pub amount_mismatch: bool,
    /// When the row was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The columns of [`ExpectedRow`].
const ROW: &str = "provider, reference, partner_reference, status, amount::text AS amount, currency, \
                   expected_amount::text AS expected_amount, expected_currency, amount_mismatch, \
                   created_at, updated_at";

/// What an expectation did.
#[derive(Debug, Clone)]
pub enum Expected {
    /// The transaction was created, as `created`.
    Created(ExpectedRow),
    /// It was stored already, and agrees: nothing changed but what was not known yet.
    Agreed(ExpectedRow),
}

/// Why an expectation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// A value is missing or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The reference is stored with another amount, currency or partner reference.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] Failure),
}

impl From<sqlx::Error> for ExpectError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(Failure::of(&error))
    }
}

/// Records an expected debit of FLUID (see the module's doc). Takes the same lock as the worker
/// applying the transaction's events, so the two take turns.
pub async fn expect(pool: &Db, expectation: &Expectation) -> Result<Expected, ExpectError> {
    expectation.validate()?;
    let e = expectation;
    let mut tx = pool.begin().await?;
    transactions::lock(&mut tx, &[(FLUID, e.reference.as_str())]).await?;
    let created: Option<ExpectedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO transactions (provider, reference, partner_reference, status, expected_amount, \
             expected_currency) \
         VALUES ($1, $2, $3, $6, $4::numeric, $5) ON CONFLICT (provider, reference) DO NOTHING \
         RETURNING {ROW}"
    )))
    .bind(FLUID)
    .bind(&e.reference)
    .bind(&e.partner_reference)
    .bind(&e.amount)
    .bind(&e.currency)
    .bind(Status::Created.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = created {
        tx.commit().await?;
        return Ok(Expected::Created(row));
    }
    // Stored already (by an earlier expectation, or by FLUID's events): it must agree with what
    // was expected before, else with what FLUID said.
    let (amount, currency, partner): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT coalesce(expected_amount, amount)::text, coalesce(expected_currency, currency), \
                 partner_reference \
             FROM transactions WHERE provider = $1 AND reference = $2",
        )
        .bind(FLUID)
        .bind(&e.reference)
        .fetch_one(&mut *tx)
        .await?;
    let mut differs = Vec::new();
    if let Some(stored) = amount.filter(|a| !super::mapping::same_decimal(a, &e.amount)) {
        differs.push(format!("amount {stored} (not {})", e.amount));
    }
    if let Some(stored) = currency.filter(|c| !c.eq_ignore_ascii_case(&e.currency)) {
        differs.push(format!("currency {stored} (not {})", e.currency));
    }
    if let Some(stored) = partner.filter(|p| *p != e.partner_reference) {
        differs.push(format!(
            "partner reference {stored} (not {})",
            e.partner_reference
        ));
    }
    if !differs.is_empty() {
        return Err(ExpectError::Conflict(format!(
            "reference {} is stored with {}; correct the request, or look at the transaction",
            e.reference,
            differs.join(", ")
        )));
    }
    let row: ExpectedRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE transactions SET expected_amount = coalesce(expected_amount, $3::numeric), \
             expected_currency = coalesce(expected_currency, $4), \
             partner_reference = coalesce(partner_reference, $5) \
         WHERE provider = $1 AND reference = $2 RETURNING {ROW}"
    )))
    .bind(FLUID)
    .bind(&e.reference)
    .bind(&e.amount)
    .bind(&e.currency)
    .bind(&e.partner_reference)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Expected::Agreed(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expectation() -> Expectation {
        Expectation {
            reference: "FLU-1".into(),
            partner_reference: "order_1".into(),
            amount: "100.00".into(),
            currency: "GHS".into(),
        }
    }

    #[test]
    fn each_bad_value_is_named() {
        for (change, named) in [
            (
                Expectation {
                    reference: " ".into(),
                    ..expectation()
                },
                "reference",
            ),
            (
                Expectation {
                    amount: "1,000.00".into(),
                    ..expectation()
                },
                "amount",
            ),
            (
                Expectation {
                    currency: "cedi".into(),
                    ..expectation()
                },
                "currency",
            ),
        ] {
            let err = change.validate().expect_err("invalid");
            assert!(err.to_string().contains(named), "{err}");
        }
        assert!(expectation().validate().is_ok());
    }
}
