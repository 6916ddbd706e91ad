//! Instants as stored and compared: microseconds since the Unix epoch, UTC.
//! Microseconds are what both SQLite and PostgreSQL keep exactly, so a value
//! read back from the store equals the one written.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Seconds and nanoseconds, as `google.protobuf.Timestamp` wants them.
    pub const fn to_seconds_nanos(self) -> (i64, i32) {
        let seconds = self.0.div_euclid(1_000_000);
        let nanos = (self.0.rem_euclid(1_000_000) * 1_000) as i32;
        (seconds, nanos)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_micros(self.0) {
            Some(at) => write!(
                f,
                "{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            None => write!(f, "@{}us", self.0),
        }
    }
}

/// The source of "now". Production reads the system clock; tests can hold
/// time still or move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_seconds_and_nanos_for_negative_and_positive_instants() {
        assert_eq!(Timestamp(1_500_000).to_seconds_nanos(), (1, 500_000_000));
        assert_eq!(Timestamp(-1).to_seconds_nanos(), (-1, 999_999_000));
    }

    #[test]
    fn displays_as_rfc3339() {
        assert_eq!(
            Timestamp(1_700_000_000_123_456).to_string(),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
