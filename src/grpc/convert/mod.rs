//! Between protobuf messages and domain values. Parsing names the request
//! field of every refusal, so clients learn exactly what to fix.

mod endpoint;
mod event;
mod meta;

pub(super) use endpoint::*;
pub(super) use event::*;
pub(super) use meta::*;

use prost_types::Timestamp as PbTimestamp;

use super::ApiError;
use crate::domain::time::Timestamp;

pub(super) fn timestamp(at: Timestamp) -> PbTimestamp {
    let (seconds, nanos) = at.to_seconds_nanos();
    PbTimestamp { seconds, nanos }
}

/// An optional request time; `None` when unset.
pub(super) fn timestamp_from_pb(
    raw: Option<&PbTimestamp>,
    field: &str,
) -> Result<Option<Timestamp>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if !(0..1_000_000_000).contains(&raw.nanos) {
        return Err(ApiError::invalid(
            field,
            "nanos must be between 0 and 999,999,999",
        ));
    }
    raw.seconds
        .checked_mul(1_000_000)
        .and_then(|micros| micros.checked_add(i64::from(raw.nanos / 1_000)))
        .map(|micros| Some(Timestamp::from_unix_micros(micros)))
        .ok_or_else(|| ApiError::invalid(field, "is out of range"))
}
