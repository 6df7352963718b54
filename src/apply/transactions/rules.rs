//! The state rules of a transaction, as one pure function: given the stored state and an incoming
//! event, what happens. No I/O here; `transactions::apply` loads, calls [`decide`] and stores.
//!
//! The project's decisions (shared/fluid-webhooks-reference.md):
//! - forward moves along created -> pending -> processing -> completed | failed are applied,
//!   also skipping steps (events arrive out of order, some never arrive);
//! - completed -> reversed is applied; a reversal seen before the completion it implies is too;
//! - failed -> pending | processing | completed | reversed (a retry and its outcome) is applied only
//!   for an event strictly newer than the one that set failed;
//! - nothing moves a transaction out of reversed, completed never goes back to
//!   pending / processing / failed, and nothing moves back to created;
//! - an event older (by its timestamp) than the last one applied is stored but not applied.

use chrono::{DateTime, Utc};

/// A transaction's status, as FLUID names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// FLUID created the debit request.
    Created,
    /// Waiting for the customer's approval.
    Pending,
    /// Approved, being processed by the bank.
    Processing,
    /// Money taken.
    Completed,
    /// Not taken (may be retried by FLUID).
    Failed,
    /// Taken and given back; final.
    Reversed,
}

impl Status {
    /// Every status, in the order of the flow.
    pub const ALL: [Status; 6] = [
        Self::Created,
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Reversed,
    ];

    /// The name stored in `transactions.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Reversed => "reversed",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the payment has ended: completed, failed or reversed (reconciliation stops
    /// watching it; a failed one may still be retried by a newer event).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Reversed)
    }

    /// The status a FLUID event sets: `transaction.completed` -> completed. Other events
    /// (settlements, future additions) set none.
    pub fn from_event_type(event_type: &str) -> Option<Self> {
        event_type
            .strip_prefix("transaction.")
            .and_then(Self::parse)
    }

    /// Position along the flow; completed and failed are alternative ends of the same step.
    fn rank(self) -> u8 {
        match self {
            Self::Created => 0,
            Self::Pending => 1,
            Self::Processing => 2,
            Self::Completed | Self::Failed => 3,
            Self::Reversed => 4,
        }
    }
}

/// What is stored about a transaction, as far as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    /// Its status.
    pub status: Status,
    /// The timestamp of the last event applied to it.
    pub last_event_at: DateTime<Utc>,
}

/// The event being applied.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    /// The status the event sets.
    pub status: Status,
    /// The event's timestamp.
    pub at: DateTime<Utc>,
}

/// What to do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// First event of an unknown transaction: create it with the event's status.
    Create,
    /// Move the transaction to the event's status.
    Move,
    /// The transaction already has this status: nothing to change.
    Unchanged,
    /// Older than what was applied last (or, for a retry after failed, not newer): keep as is.
    Stale,
    /// A move the rules forbid (out of reversed, completed going back, back to created).
    Refused,
}

impl Decision {
    /// Whether the transaction row is written.
    pub fn changes_status(self) -> bool {
        matches!(self, Self::Create | Self::Move)
    }

    /// The outcome recorded on the event: `applied`, `unchanged`, `stale` or `refused`.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Create | Self::Move => "applied",
            Self::Unchanged => "unchanged",
            Self::Stale => "stale",
            Self::Refused => "refused",
        }
    }
}

/// Decides what an incoming event does to a transaction (`None`: not seen before).
pub fn decide(current: Option<Current>, incoming: Incoming) -> Decision {
    use Status::*;
    let Some(current) = current else {
        return Decision::Create;
    };
    if incoming.at < current.last_event_at {
        return Decision::Stale;
    }
    if incoming.status == current.status {
        return Decision::Unchanged;
    }
    let newer = incoming.at > current.last_event_at;
    match (current.status, incoming.status) {
        (Reversed, _) => Decision::Refused,
        (Completed, Reversed) => Decision::Move,
        (Completed, _) => Decision::Refused,
        (Failed, Created) => Decision::Refused,
        // A retry after a failure: only an event that is known to come after the failure.
        (Failed, _) if newer => Decision::Move,
        (Failed, _) => Decision::Stale,
        (from, to) if to.rank() > from.rank() => Decision::Move,
        _ => Decision::Refused,
    }
}

/// Why an event was not applied, in words for the engineer on call: for a stale or refused
/// decision, which stored state it met; `None` for the others.
pub fn reason(current: Option<Current>, incoming: Incoming, decision: Decision) -> Option<String> {
    let current = current?;
    let (from, to) = (current.status.as_str(), incoming.status.as_str());
    match decision {
        Decision::Stale => Some(format!(
            "the event ({}, {to}) is not newer than the last event applied to the transaction ({}, {from})",
            incoming.at.to_rfc3339(),
            current.last_event_at.to_rfc3339()
        )),
        Decision::Refused => Some(match current.status {
            Status::Reversed => format!("the transaction is reversed; nothing moves it to {to}"),
            Status::Completed => {
                format!("the transaction is completed; it can only be reversed, not moved to {to}")
            }
            _ => format!("the rules do not move a transaction from {from} back to {to}"),
        }),
        Decision::Create | Decision::Move | Decision::Unchanged => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use Status::*;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 28, 10, 30, second)
            .single()
            .expect("valid time")
    }

    /// Expected decision for an event strictly newer than the last applied one,
    /// rows: current status, columns: event status, both in `Status::ALL` order.
    const NEWER: [[Decision; 6]; 6] = [
        //            created    pending    processing completed  failed     reversed
        /* created */
        [Unchanged, Move, Move, Move, Move, Move],
        /* pending */ [Refused, Unchanged, Move, Move, Move, Move],
        /* process */ [Refused, Refused, Unchanged, Move, Move, Move],
        /* complet */ [Refused, Refused, Refused, Unchanged, Refused, Move],
        /* failed  */ [Refused, Move, Move, Move, Unchanged, Move],
        /* reverse */ [Refused, Refused, Refused, Refused, Refused, Unchanged],
    ];

    /// The same for an event with the same timestamp as the last applied one: forward moves
    /// still apply, a retry after failed does not (which came last cannot be told).
    const SAME_TIME: [[Decision; 6]; 6] = [
        /* created */ [Unchanged, Move, Move, Move, Move, Move],
        /* pending */ [Refused, Unchanged, Move, Move, Move, Move],
        /* process */ [Refused, Refused, Unchanged, Move, Move, Move],
        /* complet */ [Refused, Refused, Refused, Unchanged, Refused, Move],
        /* failed  */ [Refused, Stale, Stale, Stale, Unchanged, Stale],
        /* reverse */ [Refused, Refused, Refused, Refused, Refused, Unchanged],
    ];

    #[test]
    fn only_stale_and_refused_events_carry_a_reason() {
        for from in Status::ALL {
            for to in Status::ALL {
                for second in [9, 10, 11] {
                    let current = Current {
                        status: from,
                        last_event_at: at(10),
                    };
                    let incoming = Incoming {
                        status: to,
                        at: at(second),
                    };
                    let decision = decide(Some(current), incoming);
                    let why = reason(Some(current), incoming, decision);
                    assert_eq!(
                        why.is_some(),
                        matches!(decision, Stale | Refused),
                        "{from:?} -> {to:?} at {second}: {why:?}"
                    );
                    if let Some(why) = why {
                        assert!(why.contains(to.as_str()), "{why}");
                    }
                }
            }
        }
        let incoming = Incoming {
            status: Completed,
            at: at(1),
        };
        assert_eq!(reason(None, incoming, Create), None);
    }

    fn check(table: &[[Decision; 6]; 6], event_second: u32) {
        for (i, current) in Status::ALL.into_iter().enumerate() {
            for (j, event) in Status::ALL.into_iter().enumerate() {
                let got = decide(
                    Some(Current {
                        status: current,
                        last_event_at: at(10),
                    }),
                    Incoming {
                        status: event,
                        at: at(event_second),
                    },
                );
                assert_eq!(
                    got, table[i][j],
                    "{current:?} <- {event:?} at +{event_second}s"
                );
            }
        }
    }

    #[test]
    fn every_pair_with_a_newer_event() {
        check(&NEWER, 11);
    }

    #[test]
    fn every_pair_with_an_event_of_the_same_time() {
        check(&SAME_TIME, 10);
    }

    #[test]
    fn every_pair_with_an_older_event_is_stale() {
        check(&[[Stale; 6]; 6], 9);
    }

    #[test]
    fn an_unknown_transaction_is_created_by_any_event() {
        for status in Status::ALL {
            assert_eq!(decide(None, Incoming { status, at: at(0) }), Create);
        }
    }

    #[test]
    fn never_out_of_reversed_and_completed_never_goes_back() {
        for event in Status::ALL {
            for second in [9, 10, 11] {
                let incoming = Incoming {
                    status: event,
                    at: at(second),
                };
                let from_reversed = decide(
                    Some(Current {
                        status: Reversed,
                        last_event_at: at(10),
                    }),
                    incoming,
                );
                assert!(!from_reversed.changes_status(), "reversed <- {event:?}");
                let from_completed = decide(
                    Some(Current {
                        status: Completed,
                        last_event_at: at(10),
                    }),
                    incoming,
                );
                assert_eq!(
                    from_completed.changes_status(),
                    event == Reversed && second >= 10,
                    "completed <- {event:?}"
                );
            }
        }
    }

    #[test]
    fn event_names_map_to_statuses() {
        assert_eq!(
            Status::from_event_type("transaction.completed"),
            Some(Completed)
        );
        assert_eq!(
            Status::from_event_type("transaction.reversed"),
            Some(Reversed)
        );
        assert_eq!(Status::from_event_type("settlement.completed"), None);
        assert_eq!(Status::from_event_type("transaction.refunded"), None);
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
