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
