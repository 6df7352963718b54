//! `fluid-webhooks verify-stored [--provider P] [--since T] [--until T]`: proves the stored
//! deliveries authentic. Every stored event delivered by its provider is checked again, byte for
//! byte, with the key that verified it (when that key is still configured), by the same verifier
//! code as the live route ([`crate::intake::evidence`]). Rows are read through a cursor, a
//! thousand at a time, so memory stays flat over millions of events. Exits 1 when any fails.

use crate::store::db::Db;
use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{
    app::{config::Settings, telemetry},
    intake::evidence::{StoredDelivery, Verdict},
    store::{database::Database, rows::Source},
};

/// Options of `verify-stored`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Only this provider's events.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only events received at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only events received before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
}

/// How many stored events ended how.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// The signature holds over the stored bytes.
    pub verified: u64,
    /// It does not.
    pub failed: u64,
    /// The key that verified it is no longer configured.
    pub no_key: u64,
    /// Stored before bodies were kept byte for byte.
    pub not_exact: u64,
    /// Answers of FLUID's API to polls.
    pub not_signed: u64,
}

/// Rows fetched from the cursor at a time.
const FETCH: usize = 1000;

/// Checks, prints the failures as they are found and the counts at the end.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log.format);
    let providers = settings.providers()?;
    let database = Database::open(settings.database_url.as_ref(), &settings.database).await?;
    let checked = async {
        let pool = database.migrated_pool(&settings.database).await?;
        let counts = check_all(&pool, &providers, &args).await;
        pool.close().await;
        counts
    }
    .await;
    let closed = database.close().await;
    let counts = checked?;
    closed?;
    println!(
        "verified: {}\nfailed: {}\nno key: {}\nnot exact: {}\nnot signed: {}",
        counts.verified, counts.failed, counts.no_key, counts.not_exact, counts.not_signed
    );
    if counts.failed > 0 {
        anyhow::bail!(
            "{} stored event(s) do not verify: their bytes or signature are not what was received",
            counts.failed
        );
    }
    Ok(())
}

async fn check_all(
    pool: &Db,
    providers: &crate::intake::providers::Providers,
    args: &VerifyArgs,
) -> anyhow::Result<Counts> {
    let mut tx = pool.begin().await?;
    // One snapshot for the whole walk; nothing is written.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DECLARE stored NO SCROLL CURSOR FOR \
         SELECT provider, event_id, source, raw_exact, key_id, signature, delivery_timestamp, \
             raw_body, extract(epoch FROM received_at)::bigint AS received_at \
         FROM webhook_events \
         WHERE ($1::text IS NULL OR provider = $1) \
           AND ($2::timestamptz IS NULL OR received_at >= $2) \
           AND ($3::timestamptz IS NULL OR received_at < $3)",
    )
    .bind(&args.provider)
    .bind(args.since)
    .bind(args.until)
    .execute(&mut *tx)
    .await?;
    let progress = std::io::stderr().is_terminal();
    let mut counts = Counts::default();
    let mut seen = 0u64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("FETCH {FETCH} FROM stored")))
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let provider: String = row.try_get("provider")?;
            let event_id: String = row.try_get("event_id")?;
            let source: String = row.try_get("source")?;
            let key_id: Option<String> = row.try_get("key_id")?;
            let signature: Option<String> = row.try_get("signature")?;
            let timestamp: Option<String> = row.try_get("delivery_timestamp")?;
            let body: Vec<u8> = row.try_get("raw_body")?;
            let verdict = Verdict::of(
                providers,
                &StoredDelivery {
                    provider: &provider,
                    event_id: &event_id,
                    source: Source::parse(&source).unwrap_or(Source::Webhook),
                    raw_exact: row.try_get("raw_exact")?,
                    key_id: key_id.as_deref(),
                    signature: signature.as_deref(),
                    delivery_timestamp: timestamp.as_deref(),
                    body: &body,
                    received_at: row.try_get("received_at")?,
                },
            );
            match verdict {
                Verdict::Verified => counts.verified += 1,
                Verdict::Failed(e) => {
                    counts.failed += 1;
                    if progress {
                        eprint!("\r");
                    }
                    println!("FAILED {provider} {event_id}: {e}");
                }
                Verdict::NoKey => counts.no_key += 1,
                Verdict::NotExact => counts.not_exact += 1,
                Verdict::NotSigned => counts.not_signed += 1,
            }
        }
        seen += rows.len() as u64;
        if progress {
            eprint!("\r{seen} stored events checked");
            let _ = std::io::stderr().flush();
        }
        if rows.len() < FETCH {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    tx.rollback().await?;
    Ok(counts)
}
