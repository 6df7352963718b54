//! `fluid-webhooks expect`: record a debit the merchant initiated with FLUID, so that it is
//! watched (and settled from FLUID's API) even if no webhook ever arrives, and an event with
//! another amount is flagged. Goes through the database, like `migrate`: no admin token needed.

use crate::{
    app::{config::Settings, telemetry},
    apply::expected::{ExpectError, Expectation, Expected, expect},
    store::database::Database,
};

/// Options of `expect`.
#[derive(Debug, clap::Args)]
pub struct ExpectArgs {
    /// FLUID's reference of the debit request.
    #[arg(long)]
    pub reference: String,
    /// The merchant's own id (order id).
    #[arg(long)]
    pub partner_reference: String,
    /// The amount, exactly as initiated (e.g. 100.00).
    #[arg(long)]
    pub amount: String,
    /// The currency.
    #[arg(long, default_value = "GHS")]
    pub currency: String,
}

/// Records the expectation and prints the stored transaction as JSON; fails on a conflict.
pub async fn run(args: ExpectArgs) -> anyhow::Result<()> {
    let settings = Settings::without_secret(&std::env::vars().collect())?;
    telemetry::init(settings.log.format);
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let result = async {
        let pool = database.migrated_pool(&settings.database).await?;
        let expectation = Expectation {
            reference: args.reference,
            partner_reference: args.partner_reference,
            amount: args.amount,
            currency: args.currency,
        };
        let outcome = expect(&pool, &expectation).await;
        pool.close().await;
        match outcome {
            Ok(Expected::Created(row)) => Ok(("created", row)),
            Ok(Expected::Agreed(row)) => Ok(("already expected", row)),
            Err(ExpectError::Conflict(message)) => anyhow::bail!("conflict: {message}"),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    let closed = database.close().await;
    let (what, row) = result?;
    closed?;
    println!("{what}: {}", serde_json::to_string(&row)?);
    Ok(())
}
