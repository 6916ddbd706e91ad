//! Events: what a publisher sends, validated.

use std::sync::Arc;

use super::Invalid;
use super::fields::{CustomHeaders, EventType, OwnerId};
use super::ids::{EndpointId, EventId, ProjectId};
use super::time::Timestamp;

/// The JSON text of an event, kept exactly as published: receivers get
/// these bytes and signatures cover them. Shared, since one event fans out
/// to many deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(Arc<str>);

impl Payload {
    /// Valid JSON of at most `max_bytes`.
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Self, Invalid> {
        if raw.trim().is_empty() {
            return Err(Invalid::new("is required"));
        }
        if raw.len() > max_bytes {
            return Err(Invalid::new(format!(
                "is {} bytes; the limit is {max_bytes}",
                raw.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(raw)
            .map_err(|e| Invalid::new(format!("is not valid JSON: {e}")))?;
        Ok(Self(Arc::from(raw)))
    }

    /// Text read back from the store, which only ever holds parsed payloads.
    pub fn from_stored(raw: String) -> Self {
        Self(Arc::from(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text itself, for zero-copy request bodies.
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// A publisher's de-duplication key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 256;

    /// An empty value means "none".
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(Invalid::new(format!(
                "must be at most {} bytes",
                Self::MAX_LEN
            )));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::new("must be printable ASCII without spaces"));
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTarget {
    /// One endpoint, whatever its event-type filter says.
    Endpoint(EndpointId),
    /// Every endpoint with this owner whose filter admits the type.
    Owner(OwnerId),
    /// Every endpoint of the project whose filter admits the type.
    Broadcast,
}

/// A validated publish request.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub payload: Payload,
    pub target: EventTarget,
    pub custom_headers: CustomHeaders,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub project_id: ProjectId,
    pub event_type: EventType,
    pub payload: Payload,
    pub custom_headers: CustomHeaders,
    pub idempotency_key: Option<IdempotencyKey>,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_must_be_json_within_the_limit_and_is_kept_verbatim() {
        let raw = "{ \"b\": 1,  \"a\": [true] }";
        assert_eq!(Payload::parse(raw, 1024).unwrap().as_str(), raw);
        assert!(Payload::parse("{\"a\":", 1024).is_err());
        assert!(Payload::parse("", 1024).is_err());
        assert!(Payload::parse("[1,2,3]", 3).is_err());
        assert!(Payload::parse("\"just a string\"", 1024).is_ok());
    }

    #[test]
    fn idempotency_key_rules() {
        assert_eq!(IdempotencyKey::parse("").unwrap(), None);
        assert!(IdempotencyKey::parse("order-1").unwrap().is_some());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(257)).is_err());
    }
}
