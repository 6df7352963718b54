//! The names the states of stored rows are kept under, in one place. The database's own `CHECK`
//! constraints hold the same lists (a test compares them), and queries that must use a partial
//! index (`WHERE status = 'pending'`) have these names written into their text once, at start.

use std::fmt;

/// Where an event of `webhook_events` stands (`webhook_events.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    /// Waiting to be applied, possibly after a failed attempt (see `next_attempt_at`).
    Pending,
    /// The state rules ran; `outcome` says what they decided.
    Processed,
    /// Not a transaction event: stored, touching no transaction.
    Ignored,
    /// Cannot be applied (invalid, or `max_attempts` failed attempts): a dead letter to replay.
    Dead,
}

impl EventStatus {
    /// Every status.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Processed, Self::Ignored, Self::Dead];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Dead => "dead",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the event is done with: its row may be purged once old enough.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Processed | Self::Ignored)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who produced an event (`webhook_events.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Delivered by its provider, signed.
    Webhook,
    /// An answer of FLUID's API to a reconciliation poll.
    Poll,
}

impl Source {
    /// Every source.
    pub const ALL: [Self; 2] = [Self::Webhook, Self::Poll];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Poll => "poll",
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names as a SQL list of literals, `'a', 'b'`, for queries written once at start.
pub fn sql_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_finished_ones_are_known() {
        for status in EventStatus::ALL {
            assert_eq!(EventStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(EventStatus::parse("failed"), None);
        let finished: Vec<_> = EventStatus::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished, [EventStatus::Processed, EventStatus::Ignored]);
        assert_eq!(
            sql_list(EventStatus::ALL.map(EventStatus::as_str)),
            "'pending', 'processed', 'ignored', 'dead'"
        );
    }
}
