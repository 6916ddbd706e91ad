//! When to try a failed delivery again. Pure: the caller passes the attempt
//! number, a random factor and what the receiver said.

use std::time::Duration;

use super::Invalid;

/// Exponential backoff with jitter. The default schedule spans about a day:
/// 5 s, 15 s, 45 s, 2¼ min, 7 min, 20 min, 1 h, 3 h, then every 6 h, for 12
/// attempts in all (≈ 23 h from the first failure to giving up), each delay
/// jittered by ±20 % so failed bursts do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    /// The longest `Retry-After` honoured; a receiver cannot park a delivery
    /// for a week by answering `Retry-After: 604800`.
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            initial: Duration::from_secs(5),
            multiplier: 3.0,
            max_delay: Duration::from_secs(6 * 3600),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(6 * 3600),
        }
    }
}

impl RetryPolicy {
    pub fn new(
        max_attempts: u32,
        initial: Duration,
        multiplier: f64,
        max_delay: Duration,
        jitter: f64,
        max_retry_after: Duration,
    ) -> Result<Self, Invalid> {
        if !(1..=100).contains(&max_attempts) {
            return Err(Invalid::new("max attempts must be between 1 and 100"));
        }
        if initial.is_zero() || initial > max_delay {
            return Err(Invalid::new(
                "the initial delay must be positive and at most the maximum delay",
            ));
        }
        if !(1.0..=10.0).contains(&multiplier) {
            return Err(Invalid::new("the multiplier must be between 1 and 10"));
        }
        if !(0.0..=0.5).contains(&jitter) {
            return Err(Invalid::new("jitter must be between 0 and 0.5"));
        }
        Ok(Self {
            max_attempts,
            initial,
            multiplier,
            max_delay,
            jitter,
            max_retry_after,
        })
    }

    /// hookd's usual shape: each wait 3 times the one before, 20 % jitter,
    /// and `max_delay` also capping a receiver's `Retry-After`.
    pub fn with_backoff(
        max_attempts: u32,
        initial: Duration,
        max_delay: Duration,
    ) -> Result<Self, Invalid> {
        Self::new(max_attempts, initial, 3.0, max_delay, 0.2, max_delay)
    }

    pub fn initial(&self) -> Duration {
        self.initial
    }

    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the next attempt after `attempts_made` attempts
    /// (1 after the first failure), or `None` when the limit is reached.
    /// `random` is uniform in `[0, 1)`. `retry_after` is the receiver's
    /// `Retry-After` (from a 429 or 503); it can lengthen the delay, within
    /// `max_retry_after`, but never shorten it.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        random: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let exponent = attempts_made.saturating_sub(1).min(64) as i32;
        let base = (self.initial.as_secs_f64() * self.multiplier.powi(exponent))
            .min(self.max_delay.as_secs_f64());
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * random.clamp(0.0, 1.0);
        let backoff = Duration::from_secs_f64((base * factor).max(0.0));
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_retry_after));
        Some(backoff.max(asked))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn default_schedule_spans_about_a_day() {
        let policy = RetryPolicy::default();
        let total: Duration = (1..policy.max_attempts())
            .map(|n| policy.next_delay(n, 0.5, None).unwrap())
            .sum();
        assert!(
            total > Duration::from_secs(18 * 3600) && total < Duration::from_secs(30 * 3600),
            "{total:?}"
        );
        assert_eq!(
            policy.next_delay(1, 0.5, None),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            policy.next_delay(2, 0.5, None),
            Some(Duration::from_secs(15))
        );
        assert_eq!(policy.next_delay(policy.max_attempts(), 0.5, None), None);
    }

    #[test]
    fn rejects_nonsense() {
        let s = Duration::from_secs;
        assert!(RetryPolicy::new(0, s(1), 2.0, s(10), 0.1, s(10)).is_err());
        assert!(RetryPolicy::new(3, s(0), 2.0, s(10), 0.1, s(10)).is_err());
        assert!(RetryPolicy::new(3, s(20), 2.0, s(10), 0.1, s(10)).is_err());
        assert!(RetryPolicy::new(3, s(1), 0.5, s(10), 0.1, s(10)).is_err());
        assert!(RetryPolicy::new(3, s(1), 2.0, s(10), 0.9, s(10)).is_err());
    }

    proptest! {
        #[test]
        fn delay_stays_within_jittered_bounds(attempt in 1u32..12, random in 0.0f64..1.0) {
            let policy = RetryPolicy::default();
            let delay = policy.next_delay(attempt, random, None).unwrap().as_secs_f64();
            let base = (5.0 * 3f64.powi(attempt as i32 - 1)).min(6.0 * 3600.0);
            prop_assert!(delay >= base * 0.8 - 1e-6 && delay <= base * 1.2 + 1e-6);
        }

        #[test]
        fn delays_never_shrink_from_one_attempt_to_the_next_at_equal_jitter(
            attempt in 1u32..11, random in 0.0f64..1.0,
        ) {
            let policy = RetryPolicy::default();
            prop_assert!(policy.next_delay(attempt + 1, random, None) >= policy.next_delay(attempt, random, None));
        }

        #[test]
        fn retry_after_never_shortens_a_delay_and_is_capped(
            attempt in 1u32..12, random in 0.0f64..1.0, asked in 0u64..2_000_000,
        ) {
            let policy = RetryPolicy::default();
            let plain = policy.next_delay(attempt, random, None).unwrap();
            let with = policy.next_delay(attempt, random, Some(Duration::from_secs(asked))).unwrap();
            prop_assert!(with >= plain);
            prop_assert!(with <= plain.max(Duration::from_secs(6 * 3600)));
        }

        #[test]
        fn gives_up_exactly_at_the_limit(max in 1u32..30, attempt in 1u32..40) {
            let s = Duration::from_secs;
            let policy = RetryPolicy::new(max, s(1), 2.0, s(60), 0.0, s(60)).unwrap();
            prop_assert_eq!(policy.next_delay(attempt, 0.3, None).is_none(), attempt >= max);
        }
    }
}
