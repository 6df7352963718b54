//! The columns of a `transactions` row, described once: the one `transaction_row!` below makes
//! the [`Details`] an event carries, the column vectors a batch is bound as, and the text of the
//! batch `INSERT` and `UPDATE` (`unnest` of one array parameter per column). Adding a column is
//! one line here (and its migration).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, postgres::PgArguments, query::Query};

/// Describes the row: `set` columns are written as they are (the key, the status, the last
/// event); `details` are what an event may say about the transaction, each kept when an event
/// leaves it out. `=> "text"` is the array parameter's element type, `as "numeric"` the cast to
/// the column's type (amounts are bound as their exact decimal text).
macro_rules! transaction_row {
    (
        set { $($set:ident: $set_ty:ty => $set_sql:literal),+ $(,)? }
        details { $($(#[$doc:meta])* $field:ident: $ty:ty => $sql:literal $(as $cast:literal)?),+ $(,)? }
    ) => {
        /// The details of a transaction an event carries; `None` leaves the stored value.
        #[derive(Debug, Clone, Default)]
        pub struct Details {
            $($(#[$doc])* pub $field: Option<$ty>,)+
        }

        impl Details {
            /// Takes every detail the newer event carries, as applying the two events one after
            /// the other would.
            pub(super) fn merge(&mut self, newer: &Details) {
                $(if newer.$field.is_some() {
                    self.$field.clone_from(&newer.$field);
                })+
            }
        }

        /// Rows to write, column by column, for `unnest`.
        #[derive(Default)]
        pub(super) struct Rows<'a> {
            $($set: Vec<$set_ty>,)+
            $($field: Vec<Option<&'a $ty>>,)+
        }

        impl<'a> Rows<'a> {
            /// Adds one row.
            #[allow(clippy::too_many_arguments)]
            pub(super) fn push(&mut self, $($set: $set_ty,)+ details: &'a Details) {
                $(self.$set.push($set);)+
                $(self.$field.push(details.$field.as_ref());)+
            }

            /// How many rows.
            pub(super) fn len(&self) -> usize {
                [$(self.$set.len()),+][0]
            }

            /// Binds every column, in the order of [`COLUMNS`], as `$1` onwards.
            pub(super) fn bind<'q>(
                &'q self,
                query: Query<'q, Postgres, PgArguments>,
            ) -> Query<'q, Postgres, PgArguments> {
                query$(.bind(&self.$set))+$(.bind(&self.$field))+
            }
        }

        /// Every column: its name, its array parameter's element type, the cast to the column's
        /// type, and whether it is a detail (kept when an event leaves it out).
        const COLUMNS: &[Column] = &[
            $(Column { name: stringify!($set), sql: $set_sql, cast: None, detail: false },)+
            $(Column {
                name: stringify!($field),
                sql: $sql,
                cast: transaction_row!(@cast $($cast)?),
                detail: true,
            },)+
        ];
    };
    (@cast) => { None };
    (@cast $cast:literal) => { Some($cast) };
}

transaction_row! {
    set {
        provider: &'a str => "text",
        reference: &'a str => "text",
        status: &'static str => "text",
        last_event_id: &'a str => "text",
        last_event_type: &'a str => "text",
        last_event_at: DateTime<Utc> => "timestamptz",
        amount_mismatch: bool => "bool",
    }
    details {
        /// FLUID's `id` (`dt_...`).
        fluid_id: String => "text",
        /// FLUID's `uuid`.
        fluid_uuid: String => "text",
        /// The merchant's own reference.
        partner_reference: String => "text",
        /// Exact decimal text.
        amount: String => "text" as "numeric",
        /// Currency code.
        currency: String => "text",
        /// Exact decimal text.
        fee: String => "text" as "numeric",
        /// Narration.
        narration: String => "text",
        /// How the customer approved.
        approval_method: String => "text",
        /// JSON text of the failure details.
        error_details: String => "text" as "jsonb",
        /// The provider's creation time.
        fluid_created_at: DateTime<Utc> => "timestamptz",
        /// When processed.
        processed_at: DateTime<Utc> => "timestamptz",
        /// When completed.
        completed_at: DateTime<Utc> => "timestamptz",
    }
}

/// One column of the row.
struct Column {
    name: &'static str,
    sql: &'static str,
    cast: Option<&'static str>,
    detail: bool,
}

impl Column {
    /// The value of the row `r`, cast to the column's type.
    fn value(&self) -> String {
        match self.cast {
            Some(cast) => format!("r.{}::{cast}", self.name),
            None => format!("r.{}", self.name),
        }
    }
}

/// The key columns: matched by the `UPDATE`, never set.
const KEY: [&str; 2] = ["provider", "reference"];

/// `unnest($1::text[], ...) AS r(provider, ...)`, with `extra` (name, element type) columns after
/// the row's.
fn unnest(extra: &[(&str, &str)]) -> String {
    let all: Vec<(&str, &str)> = COLUMNS
        .iter()
        .map(|c| (c.name, c.sql))
        .chain(extra.iter().copied())
        .collect();
    let params: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, (_, sql))| format!("${}::{sql}[]", i + 1))
        .collect();
    let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
    format!("unnest({}) AS r({})", params.join(", "), names.join(", "))
}

/// Creates the rows (bound by [`Rows::bind`]).
pub(super) static INSERT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let values: Vec<String> = COLUMNS.iter().map(Column::value).collect();
    format!(
        "INSERT INTO transactions ({}) SELECT {} FROM {}",
        names.join(", "),
        values.join(", "),
        unnest(&[])
    )
});

/// Moves the rows (bound by [`Rows::bind`], then the status and last event time each row had when
/// it was read): only a row still as it was read is changed, and a detail an event leaves out
/// keeps its stored value.
pub(super) static UPDATE: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = COLUMNS
        .iter()
        .filter(|c| !KEY.contains(&c.name))
        .map(|c| match c.detail {
            true => format!("{0} = COALESCE({1}, t.{0})", c.name, c.value()),
            false => format!("{} = {}", c.name, c.value()),
        })
        .collect();
    format!(
        "UPDATE transactions AS t SET {}, updated_at = now() FROM {} \
         WHERE t.provider = r.provider AND t.reference = r.reference \
             AND t.status = r.seen_status AND t.last_event_at IS NOT DISTINCT FROM r.seen_at",
        sets.join(", "),
        unnest(&[("seen_status", "text"), ("seen_at", "timestamptz")])
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_name_every_column_once_with_its_cast() {
        let insert = INSERT.as_str();
        assert!(insert.starts_with(
            "INSERT INTO transactions (provider, reference, status, last_event_id, last_event_type, \
             last_event_at, amount_mismatch, fluid_id,"
        ));
        assert!(insert.contains("r.amount::numeric, r.currency, r.fee::numeric"));
        assert!(insert.contains("$19::timestamptz[]) AS r(provider, reference,"));
        let update = UPDATE.as_str();
        assert!(update.contains("amount = COALESCE(r.amount::numeric, t.amount)"));
        assert!(update.contains("status = r.status, last_event_id = r.last_event_id"));
        assert!(
            !update.contains("provider = r.provider,"),
            "the key is not set"
        );
        assert!(update.contains("$20::text[], $21::timestamptz[]) AS r("));
    }

    #[test]
    fn a_newer_event_overrides_only_what_it_carries() {
        let mut older = Details {
            amount: Some("100.00".into()),
            currency: Some("GHS".into()),
            ..Details::default()
        };
        older.merge(&Details {
            amount: Some("90.00".into()),
            ..Details::default()
        });
        assert_eq!(older.amount.as_deref(), Some("90.00"));
        assert_eq!(older.currency.as_deref(), Some("GHS"));
    }
}
