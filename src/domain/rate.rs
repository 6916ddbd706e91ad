//! Pacing deliveries to an endpoint's rate limit: a token bucket holding at
//! most `count` tokens, refilled at `count` per `period`. Pure: the caller
//! passes the time.

use std::time::Duration;

use super::fields::RateLimit;
use super::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket: a burst of `count` may go at once.
    pub fn new(limit: RateLimit, now: Timestamp) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.count()),
            last: now,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token if there is one; otherwise says how long until there
    /// will be. Waiting never spends anything.
    pub fn take(&mut self, now: Timestamp) -> Result<(), Duration> {
        let capacity = f64::from(self.limit.count());
        let per_micro = capacity / (f64::from(self.limit.period_seconds()) * 1e6);
        let elapsed = (now.unix_micros() - self.last.unix_micros()).max(0) as f64;
        self.tokens = (self.tokens + elapsed * per_micro).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_micros(
                ((1.0 - self.tokens) / per_micro).ceil() as u64,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(seconds: f64) -> Timestamp {
        Timestamp::from_unix_micros((seconds * 1e6) as i64)
    }

    #[test]
    fn a_burst_of_100_at_10_per_second_takes_about_nine_seconds_after_the_first_ten() {
        let limit = RateLimit::new(10, 1).unwrap().unwrap();
        let mut bucket = TokenBucket::new(limit, at(0.0));
        let mut now = 0.0;
        let mut sent_at = Vec::new();
        while sent_at.len() < 100 {
            match bucket.take(at(now)) {
                Ok(()) => sent_at.push(now),
                Err(wait) => now += wait.as_secs_f64(),
            }
        }
        assert_eq!(sent_at[9], 0.0, "the first ten go at once");
        assert!(
            (8.9..=9.1).contains(&sent_at[99]),
            "last at {}",
            sent_at[99]
        );
    }

    proptest! {
        /// Over any run, no more than count + count * elapsed / period are taken.
        #[test]
        fn never_exceeds_the_rate(count in 1u32..50, period in 1u32..10, steps in proptest::collection::vec(0u64..2_000_000, 1..200)) {
            let limit = RateLimit::new(count, period).unwrap().unwrap();
            let mut bucket = TokenBucket::new(limit, Timestamp::from_unix_micros(0));
            let mut now = 0i64;
            let mut taken = 0u64;
            for step in steps {
                now += step as i64;
                if bucket.take(Timestamp::from_unix_micros(now)).is_ok() {
                    taken += 1;
                }
                let allowed = f64::from(count) + f64::from(count) * now as f64 / (f64::from(period) * 1e6);
                prop_assert!(taken as f64 <= allowed + 1e-9);
            }
        }

        /// After the wait it names, a token is there.
        #[test]
        fn the_named_wait_is_enough(count in 1u32..50, period in 1u32..10, drained in 0u32..60) {
            let limit = RateLimit::new(count, period).unwrap().unwrap();
            let mut bucket = TokenBucket::new(limit, Timestamp::from_unix_micros(0));
            for _ in 0..drained {
                let _ = bucket.take(Timestamp::from_unix_micros(0));
            }
            if let Err(wait) = bucket.take(Timestamp::from_unix_micros(0)) {
                prop_assert!(bucket.take(Timestamp::from_unix_micros(wait.as_micros() as i64)).is_ok());
            }
        }
    }
}
