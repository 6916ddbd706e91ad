//! The process's impure sources, kept out of `domain`: the wall clock, fresh
//! ids and random bytes.

use crate::domain::time::{Clock, Timestamp};

/// Reads the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(chrono::Utc::now().timestamp_micros())
    }
}

/// The system clock pushed forward by hand: time flows as usual, and a
/// test can jump over a backoff instead of sleeping through it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_micros: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros
            .fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset_micros.load(std::sync::atomic::Ordering::SeqCst);
        Timestamp::from_unix_micros(SystemClock.now().unix_micros().saturating_add(offset))
    }
}

/// A time-ordered UUID (version 7) for a new id.
pub fn new_uuid() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Bytes from the operating system's CSPRNG, for secrets and keys.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    // The OS RNG failing means the machine cannot make secrets at all;
    // there is nothing sensible to hand out instead.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// Uniform in `[0, 1)`, for jitter. Drawn for every attempt, so it comes
/// from the thread's generator (seeded by the OS), not from a system call
/// each time as `random_bytes` does.
pub fn random_fraction() -> f64 {
    rand::random()
}
