//! Watching deliveries live: the log position a subscriber resumes from,
//! the changes it receives, and which ones it asked for.

use super::Invalid;
use super::delivery::{Attempt, DeliveryStatus};
use super::fields::EventType;
use super::ids::{DeliveryId, EndpointId, EventId};
use super::time::Timestamp;

/// A position in a change log: everything up to and including it has been
/// seen. Opaque to clients, who hand back the last one they received.
/// `txid` is 0 on SQLite, where `seq` alone is commit order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub txid: i64,
    pub seq: i64,
}

impl Cursor {
    /// The position before everything.
    pub const START: Self = Self { txid: 0, seq: 0 };

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("not a cursor this server handed out");
        let rest = raw.strip_prefix("c").ok_or_else(invalid)?;
        let (txid, seq) = rest.split_once('.').ok_or_else(invalid)?;
        let number = |s: &str| {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0 && !s.starts_with('+'))
                .ok_or_else(invalid)
        };
        Ok(Self {
            txid: number(txid)?,
            seq: number(seq)?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}.{}", self.txid, self.seq)
    }
}

/// One read of a log after a cursor: what it found, oldest first, and how
/// far it looked. `through` is at or past the last item's cursor: the rows
/// between matched nothing, so the next read starts after them. `more` says
/// the read stopped short of the log's end (a full page, or the end of the
/// window it may scan), so the next read can follow at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage<T> {
    pub items: Vec<T>,
    pub through: Cursor,
    pub more: bool,
}

impl<T> LogPage<T> {
    /// A read after `after` that looked no further than its last item (or
    /// found none): it may have more when it filled its `limit`.
    pub fn to_last(
        items: Vec<T>,
        after: Cursor,
        limit: u32,
        cursor: impl Fn(&T) -> Cursor,
    ) -> Self {
        Self {
            through: items.last().map_or(after, cursor),
            more: items.len() >= limit as usize,
            items,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> LogPage<U> {
        LogPage {
            items: self.items.into_iter().map(f).collect(),
            through: self.through,
            more: self.more,
        }
    }
}

/// One status change of a delivery, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryChange {
    pub cursor: Cursor,
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    /// Attempts made when the change happened.
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub description: String,
    pub changed_at: Timestamp,
    /// The attempt that caused it (SUCCESS, RETRY, FAILURE after an attempt).
    pub attempt: Option<Attempt>,
}

impl DeliveryChange {
    /// Whether an attempt caused a change to `status` after `attempts`
    /// attempts; the attempt is then number `attempts`.
    pub fn caused_by_attempt(status: DeliveryStatus, attempts: u32) -> bool {
        attempts > 0
            && matches!(
                status,
                DeliveryStatus::Success | DeliveryStatus::Retry | DeliveryStatus::Failure
            )
    }
}

/// Which changes a subscriber wants; an empty list admits everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    pub endpoint_ids: Vec<EndpointId>,
    pub event_id: Option<EventId>,
    pub event_types: Vec<EventType>,
    pub statuses: Vec<DeliveryStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every cursor reads back as itself.
        #[test]
        fn cursors_round_trip(txid in 0i64.., seq in 0i64..) {
            let cursor = Cursor { txid, seq };
            prop_assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        }

        /// Cursors order like the log: by transaction, then sequence.
        #[test]
        fn cursors_order_by_txid_then_seq(a in (0i64..5, 0i64..5), b in (0i64..5, 0i64..5)) {
            let (x, y) = (Cursor { txid: a.0, seq: a.1 }, Cursor { txid: b.0, seq: b.1 });
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }

    #[test]
    fn foreign_text_is_not_a_cursor() {
        for raw in [
            "", "c", "c1", "c1.", "c.1", "1.2", "c-1.2", "c1.+2", "c1.2.3", "cx.y",
        ] {
            assert!(Cursor::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn only_attempt_results_carry_an_attempt() {
        assert!(DeliveryChange::caused_by_attempt(DeliveryStatus::Retry, 1));
        assert!(!DeliveryChange::caused_by_attempt(
            DeliveryStatus::Processing,
            1
        ));
        assert!(!DeliveryChange::caused_by_attempt(
            DeliveryStatus::Scheduled,
            3
        ));
        assert!(!DeliveryChange::caused_by_attempt(
            DeliveryStatus::Failure,
            0
        ));
    }
}
