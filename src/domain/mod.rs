//! The webhook domain in plain Rust: identifiers, validated values and the
//! rules of an endpoint's life. Nothing here does I/O, reads the clock or
//! draws random numbers; callers pass those in.

pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod fields;
pub mod ids;
pub mod meta;
pub mod network;
pub mod page;
pub mod project;
pub mod rate;
pub mod retry;
pub mod secret;
pub mod signature;
pub mod time;
pub mod watch;

/// Why a value from the outside world was refused. The caller knows which
/// field it came from and attaches that name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
