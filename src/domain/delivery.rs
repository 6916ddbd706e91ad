//! Deliveries and attempts, and the verdict after each attempt.

use std::time::Duration;

use super::fields::EventType;
use super::ids::{AttemptId, DeliveryId, EndpointId, EventId, ProjectId};
use super::retry::RetryPolicy;
use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting in the store for its turn.
    Scheduled,
    /// Held by a hookd process: queued in its memory or being sent.
    Processing,
    Success,
    /// Failed; another attempt is due at `next_attempt_at`.
    Retry,
    /// Given up.
    Failure,
    /// Never sent: the endpoint was paused, inactive or deleted.
    Discarded,
}

impl DeliveryStatus {
    pub const ALL: [Self; 6] = [
        Self::Scheduled,
        Self::Processing,
        Self::Success,
        Self::Retry,
        Self::Failure,
        Self::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Failure => "failure",
            Self::Discarded => "discarded",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Only a delivery that has ended badly can be retried by hand.
    pub fn can_retry_by_hand(self) -> bool {
        matches!(self, Self::Failure | Self::Discarded)
    }
}

/// Why a delivery was not sent or stopped being retried.
pub mod reason {
    pub const RETRY_LIMIT: &str = "Retry limit exceeded";
    pub const ENDPOINT_PAUSED: &str = "Endpoint is paused";
    pub const ENDPOINT_INACTIVE: &str = "Endpoint is inactive";
    pub const ENDPOINT_DELETED: &str = "Endpoint was deleted";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub project_id: ProjectId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    /// When hookd accepted it: the start of the latency clock.
    pub acknowledged_at: Timestamp,
    pub updated_at: Timestamp,
    pub description: String,
    pub last_http_status: Option<u16>,
}

/// What went wrong when no response came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    Dns,
    Tls,
    /// The address is not allowed by the network policy.
    Blocked,
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::ConnectionReset => "connection_reset",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Blocked => "blocked",
            Self::Other => "other",
        }
    }

    pub fn from_stored(raw: &str) -> Self {
        [
            Self::Timeout,
            Self::ConnectionRefused,
            Self::ConnectionReset,
            Self::Dns,
            Self::Tls,
            Self::Blocked,
        ]
        .into_iter()
        .find(|c| c.as_str() == raw)
        .unwrap_or(Self::Other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    pub class: ErrorClass,
    pub message: String,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.message)
    }
}

/// One HTTP attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    pub project_id: ProjectId,
    /// 1 for the first attempt.
    pub number: u32,
    pub url: String,
    pub requested_at: Timestamp,
    /// Set only when a response came.
    pub responded_at: Option<Timestamp>,
    pub http_status: Option<u16>,
    /// Set only when no response came.
    pub error: Option<AttemptError>,
    /// The address connected to; `None` when no connection was made.
    pub ip_address: Option<std::net::IpAddr>,
    /// Secrets and credentials redacted.
    pub request_headers: RecordedHeaders,
    pub response_headers: RecordedHeaders,
    /// The first 64 KiB of the body, lossy UTF-8.
    pub response_body: String,
    pub duration_ms: u32,
}

impl Attempt {
    /// Bytes this takes in memory, itself included.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.url.capacity()
            + self.request_headers.heap_bytes()
            + self.response_headers.heap_bytes()
            + self.response_body.capacity()
            + self.error.as_ref().map_or(0, |e| e.message.capacity())
    }
}

/// Headers as recorded with an attempt, in the order sent or received. Kept
/// as the JSON text they are stored as, an array of `[name, value]` pairs:
/// every attempt is written, few are read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedHeaders(String);

impl Default for RecordedHeaders {
    fn default() -> Self {
        Self("[]".to_owned())
    }
}

impl RecordedHeaders {
    pub fn from_pairs<N: serde::Serialize, V: serde::Serialize>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        /// A scratch buffer larger than this is not kept for the next call.
        const KEEP: usize = 16 * 1024;
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|text| {
            text.clear();
            // A pair serializes as a two-element array.
            serde::Serializer::collect_seq(&mut serde_json::Serializer::new(&mut *text), pairs)
                .expect("writing strings to memory cannot fail");
            // Copied out at its size: an attempt waits in memory until it is
            // written, and a buffer grown by doubling would be up to half
            // empty.
            let json = std::str::from_utf8(text).expect("JSON written from strings is UTF-8");
            let recorded = Self(json.to_owned());
            if text.capacity() > KEEP {
                *text = Vec::new();
            }
            recorded
        })
    }

    /// Headers as stored; `Err` if `text` is not an array of pairs.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Vec<(String, String)>>(&text)?;
        Ok(Self(text))
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity()
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        // Checked when made, so this cannot fail.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retry { at: Timestamp },
    Failure { description: String },
}

/// Judges an attempt: 2xx succeeds; anything else (3xx included: redirects
/// are not followed) is retried per `policy` until it gives up. `random` is
/// uniform in `[0, 1)`; `retry_after` is the receiver's `Retry-After`, only
/// heeded on 429 and 503.
pub fn judge(
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    attempts_made: u32,
    policy: &RetryPolicy,
    random: f64,
    now: Timestamp,
) -> Verdict {
    if http_status.is_some_and(|s| (200..300).contains(&s)) {
        return Verdict::Success;
    }
    let retry_after = retry_after.filter(|_| matches!(http_status, Some(429 | 503)));
    match policy.next_delay(attempts_made, random, retry_after) {
        Some(delay) => Verdict::Retry {
            at: Timestamp::from_unix_micros(
                now.unix_micros()
                    .saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX)),
            ),
        },
        None => Verdict::Failure {
            description: reason::RETRY_LIMIT.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_micros(1_000_000_000);

    #[test]
    fn recorded_headers_are_json_pairs_that_read_back_as_written() {
        let pairs = [("x-a", "plain"), ("x-b", "quote \" back\\slash ünï")];
        let recorded = RecordedHeaders::from_pairs(pairs);
        assert_eq!(
            recorded.as_json(),
            r#"[["x-a","plain"],["x-b","quote \" back\\slash ünï"]]"#
        );
        let read = RecordedHeaders::from_json(recorded.as_json().to_owned()).unwrap();
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(read.pairs(), expected);
        assert_eq!(RecordedHeaders::default().pairs(), vec![]);
        assert_eq!(
            RecordedHeaders::from_pairs(Vec::<(&str, &str)>::new()),
            RecordedHeaders::default()
        );
        assert!(RecordedHeaders::from_json(r#"{"a":1}"#.to_owned()).is_err());
    }

    #[test]
    fn an_attempt_counts_the_memory_it_holds_and_short_headers_hold_little() {
        use crate::domain::ids::{AttemptId, DeliveryId, ProjectId};
        let id = |n| uuid::Uuid::from_u128(n);
        let short = RecordedHeaders::from_pairs([("content-length", "0")]);
        assert_eq!(short.heap_bytes(), short.as_json().len());
        let mut attempt = Attempt {
            id: AttemptId::from_uuid(id(1)),
            delivery_id: DeliveryId::from_uuid(id(2)),
            project_id: ProjectId::from_uuid(id(3)),
            number: 1,
            url: "https://example.com/hook".to_owned(),
            requested_at: NOW,
            responded_at: Some(NOW),
            http_status: Some(200),
            error: None,
            ip_address: None,
            request_headers: RecordedHeaders::from_pairs([("x-a", "b".repeat(300))]),
            response_headers: short.clone(),
            response_body: String::new(),
            duration_ms: 1,
        };
        let bare = attempt.memory();
        assert!(bare >= std::mem::size_of::<Attempt>() + 24 + 300 + short.as_json().len());
        attempt.response_body = "y".repeat(64 * 1024);
        assert_eq!(attempt.memory(), bare + 64 * 1024);
    }

    #[test]
    fn two_hundreds_succeed_everything_else_retries_then_fails() {
        let policy = RetryPolicy::default();
        assert_eq!(
            judge(Some(204), None, 1, &policy, 0.5, NOW),
            Verdict::Success
        );
        for failed in [None, Some(301), Some(400), Some(500)] {
            assert_eq!(
                judge(failed, None, 1, &policy, 0.5, NOW),
                Verdict::Retry {
                    at: Timestamp::from_unix_micros(NOW.unix_micros() + 5_000_000)
                },
                "{failed:?}"
            );
            assert_eq!(
                judge(failed, None, policy.max_attempts(), &policy, 0.5, NOW),
                Verdict::Failure {
                    description: "Retry limit exceeded".into()
                }
            );
        }
    }

    #[test]
    fn retry_after_counts_only_on_429_and_503() {
        let policy = RetryPolicy::default();
        let an_hour = Some(Duration::from_secs(3600));
        let later = |status| match judge(Some(status), an_hour, 1, &policy, 0.5, NOW) {
            Verdict::Retry { at } => at.unix_micros() - NOW.unix_micros(),
            other => panic!("{other:?}"),
        };
        assert_eq!(later(429), 3_600_000_000);
        assert_eq!(later(503), 3_600_000_000);
        assert_eq!(later(500), 5_000_000);
    }

    #[test]
    fn statuses_round_trip_through_storage() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::from_stored(status.as_str()), Some(status));
        }
    }
}
