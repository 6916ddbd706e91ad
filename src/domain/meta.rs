//! Meta events (seed 003): what happened to a project's endpoints and
//! deliveries, recorded once the project turns them on, watched over gRPC
//! and POSTed, signed, to the project's meta-event URL.

use serde_json::{Map, Value, json};

use super::Invalid;
use super::delivery::{Attempt, DeliveryStatus};
use super::endpoint::Endpoint;
use super::fields::EndpointUrl;
use super::ids::{DeliveryId, EndpointId, EventId, MetaEventId, ProjectId};
use super::secret::Secret;
use super::time::Timestamp;
use super::watch::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaEventType {
    EndpointCreated,
    EndpointUpdated,
    EndpointDeleted,
    DeliverySuccess,
    DeliveryFailed,
}

impl MetaEventType {
    pub const ALL: [Self; 5] = [
        Self::EndpointCreated,
        Self::EndpointUpdated,
        Self::EndpointDeleted,
        Self::DeliverySuccess,
        Self::DeliveryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointCreated => "endpoint.created",
            Self::EndpointUpdated => "endpoint.updated",
            Self::EndpointDeleted => "endpoint.deleted",
            Self::DeliverySuccess => "eventdelivery.success",
            Self::DeliveryFailed => "eventdelivery.failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                Invalid::new(format!(
                    "`{raw}` is not a meta event type (one of endpoint.created, endpoint.updated, \
                     endpoint.deleted, eventdelivery.success, eventdelivery.failed)"
                ))
            })
    }

    /// The delivery meta event a change to `status` raises: success, or any
    /// terminal failure (retries exhausted, or discarded before the end).
    pub fn of_delivery_status(status: DeliveryStatus) -> Option<Self> {
        match status {
            DeliveryStatus::Success => Some(Self::DeliverySuccess),
            DeliveryStatus::Failure | DeliveryStatus::Discarded => Some(Self::DeliveryFailed),
            _ => None,
        }
    }
}

/// A project's meta-event settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaSettings {
    /// Meta events are recorded (and watchable) only while this is on.
    pub enabled: bool,
    /// Where they are POSTed; none: recorded and watchable only.
    pub url: Option<EndpointUrl>,
    /// Signs the POSTs (HMAC-SHA256, hex, `X-Convoy-Signature`).
    pub secret: Option<Secret>,
    /// The types recorded; empty means all.
    pub types: Vec<MetaEventType>,
}

impl MetaSettings {
    pub fn records(&self, event_type: MetaEventType) -> bool {
        self.enabled && (self.types.is_empty() || self.types.contains(&event_type))
    }
}

/// Where a meta event stands with its HTTP delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaEventStatus {
    /// Recorded while the project had no URL: nothing to send.
    Unsent,
    Scheduled,
    Success,
    Retry,
    Failure,
}

impl MetaEventStatus {
    pub const ALL: [Self; 5] = [
        Self::Unsent,
        Self::Scheduled,
        Self::Success,
        Self::Retry,
        Self::Failure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsent => "unsent",
            Self::Scheduled => "scheduled",
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Failure => "failure",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEvent {
    pub id: MetaEventId,
    pub project_id: ProjectId,
    pub event_type: MetaEventType,
    /// The JSON body, exactly as POSTed.
    pub payload: String,
    pub status: MetaEventStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Its place in the project's meta-event log.
    pub cursor: Cursor,
}

/// One POST of a meta event, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaAttempt {
    /// 1 for the first.
    pub number: u32,
    pub url: String,
    pub requested_at: Timestamp,
    /// Set only when a response came.
    pub responded_at: Option<Timestamp>,
    pub http_status: Option<u16>,
    /// Set only when no response came.
    pub error: Option<super::delivery::AttemptError>,
    pub ip_address: Option<std::net::IpAddr>,
    pub duration_ms: u32,
}

/// `{"event_type": ..., "data": ...}` for an endpoint: everything but its
/// secrets, custom header values and alert URL (they may hold credentials).
pub fn endpoint_payload(event_type: MetaEventType, endpoint: &Endpoint) -> String {
    let mut data = Map::new();
    data.insert("uid".into(), json!(endpoint.id.as_str()));
    data.insert("project_id".into(), json!(endpoint.project_id.as_str()));
    data.insert("name".into(), json!(endpoint.name.as_str()));
    data.insert("url".into(), json!(endpoint.url.as_str()));
    data.insert("description".into(), json!(endpoint.description.as_str()));
    data.insert(
        "owner_id".into(),
        json!(endpoint.owner_id.as_ref().map_or("", |o| o.as_str())),
    );
    data.insert("status".into(), json!(endpoint.status.as_str()));
    data.insert("content_type".into(), json!(endpoint.content_type.as_str()));
    data.insert("http_timeout".into(), json!(endpoint.timeout.get()));
    data.insert(
        "event_types".into(),
        json!(
            endpoint
                .event_types
                .as_slice()
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
        ),
    );
    data.insert(
        "header_names".into(),
        json!(
            endpoint
                .headers
                .iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        ),
    );
    data.insert("created_at".into(), json!(endpoint.created_at.to_string()));
    data.insert("updated_at".into(), json!(endpoint.updated_at.to_string()));
    envelope(event_type, Value::Object(data))
}

/// What a delivery meta event says about the delivery.
#[derive(Debug, Clone)]
pub struct DeliveryFacts<'a> {
    pub id: &'a DeliveryId,
    pub project_id: &'a ProjectId,
    pub event_id: &'a EventId,
    pub endpoint_id: &'a EndpointId,
    pub event_type: &'a str,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub description: &'a str,
    pub acknowledged_at: Timestamp,
    pub updated_at: Timestamp,
    /// Its last attempt, if it made one.
    pub attempt: Option<&'a Attempt>,
}

/// `{"event_type": ..., "data": ...}` for a delivery. `data.attempt` holds
/// `requested_at` and `ip_address` (empty when no connection was made)
/// always, `responded_at` and `http_status` only when a response came, and
/// `error` only when none did.
pub fn delivery_payload(event_type: MetaEventType, delivery: &DeliveryFacts<'_>) -> String {
    let mut data = Map::new();
    data.insert("uid".into(), json!(delivery.id.as_str()));
    data.insert("project_id".into(), json!(delivery.project_id.as_str()));
    data.insert("event_id".into(), json!(delivery.event_id.as_str()));
    data.insert("endpoint_id".into(), json!(delivery.endpoint_id.as_str()));
    data.insert("event_type".into(), json!(delivery.event_type));
    data.insert(
        "status".into(),
        json!(delivery.status.as_str().to_uppercase()),
    );
    data.insert("attempts".into(), json!(delivery.attempts));
    data.insert("description".into(), json!(delivery.description));
    data.insert(
        "acknowledged_at".into(),
        json!(delivery.acknowledged_at.to_string()),
    );
    data.insert("updated_at".into(), json!(delivery.updated_at.to_string()));
    if let Some(attempt) = delivery.attempt {
        let mut a = Map::new();
        a.insert("uid".into(), json!(attempt.id.as_str()));
        a.insert("url".into(), json!(attempt.url));
        a.insert(
            "requested_at".into(),
            json!(attempt.requested_at.to_string()),
        );
        if let Some(responded_at) = attempt.responded_at {
            a.insert("responded_at".into(), json!(responded_at.to_string()));
        }
        match (attempt.http_status, &attempt.error) {
            (Some(status), _) => {
                a.insert("http_status".into(), json!(status));
            }
            (None, Some(error)) => {
                a.insert("error".into(), json!(error.to_string()));
            }
            (None, None) => {}
        }
        a.insert(
            "ip_address".into(),
            json!(
                attempt
                    .ip_address
                    .map(|ip| ip.to_string())
                    .unwrap_or_default()
            ),
        );
        data.insert("attempt".into(), Value::Object(a));
    }
    envelope(event_type, Value::Object(data))
}

fn envelope(event_type: MetaEventType, data: Value) -> String {
    json!({ "event_type": event_type.as_str(), "data": data }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::{AttemptError, ErrorClass};

    #[test]
    fn types_round_trip_and_unknown_ones_are_refused() {
        for t in MetaEventType::ALL {
            assert_eq!(MetaEventType::parse(t.as_str()), Ok(t));
        }
        assert!(MetaEventType::parse("endpoint.renamed").is_err());
    }

    #[test]
    fn terminal_failures_of_every_kind_are_failed_events() {
        use DeliveryStatus::*;
        assert_eq!(
            MetaEventType::of_delivery_status(Success),
            Some(MetaEventType::DeliverySuccess)
        );
        assert_eq!(
            MetaEventType::of_delivery_status(Failure),
            Some(MetaEventType::DeliveryFailed)
        );
        assert_eq!(
            MetaEventType::of_delivery_status(Discarded),
            Some(MetaEventType::DeliveryFailed)
        );
        for status in [Scheduled, Processing, Retry] {
            assert_eq!(MetaEventType::of_delivery_status(status), None);
        }
    }

    #[test]
    fn only_enabled_settings_record_and_only_the_subscribed_types() {
        let mut settings = MetaSettings::default();
        assert!(!settings.records(MetaEventType::EndpointCreated));
        settings.enabled = true;
        assert!(MetaEventType::ALL.iter().all(|t| settings.records(*t)));
        settings.types = vec![MetaEventType::DeliveryFailed];
        assert!(settings.records(MetaEventType::DeliveryFailed));
        assert!(!settings.records(MetaEventType::DeliverySuccess));
    }

    fn attempt(http_status: Option<u16>, error: Option<ErrorClass>, ip: Option<&str>) -> Attempt {
        Attempt {
            id: crate::domain::ids::AttemptId::from_uuid(uuid::Uuid::nil()),
            delivery_id: DeliveryId::from_uuid(uuid::Uuid::nil()),
            project_id: ProjectId::from_uuid(uuid::Uuid::nil()),
            number: 3,
            url: "https://example.com/hook".into(),
            requested_at: Timestamp::from_unix_micros(1_000_000),
            responded_at: http_status.map(|_| Timestamp::from_unix_micros(2_000_000)),
            http_status,
            error: error.map(|class| AttemptError {
                class,
                message: "went wrong".into(),
            }),
            ip_address: ip.map(|ip| ip.parse().unwrap()),
            request_headers: Default::default(),
            response_headers: Default::default(),
            response_body: String::new(),
            duration_ms: 1,
        }
    }

    fn attempt_json(attempt: &Attempt) -> Value {
        let (id, project, event, endpoint) = (
            DeliveryId::from_uuid(uuid::Uuid::nil()),
            ProjectId::from_uuid(uuid::Uuid::nil()),
            EventId::from_uuid(uuid::Uuid::nil()),
            EndpointId::from_uuid(uuid::Uuid::nil()),
        );
        let facts = DeliveryFacts {
            id: &id,
            project_id: &project,
            event_id: &event,
            endpoint_id: &endpoint,
            event_type: "order.paid",
            status: DeliveryStatus::Failure,
            attempts: 3,
            description: "Retry limit exceeded",
            acknowledged_at: Timestamp::from_unix_micros(0),
            updated_at: Timestamp::from_unix_micros(3_000_000),
            attempt: Some(attempt),
        };
        let payload: Value =
            serde_json::from_str(&delivery_payload(MetaEventType::DeliveryFailed, &facts)).unwrap();
        assert_eq!(payload["event_type"], "eventdelivery.failed");
        assert_eq!(payload["data"]["description"], "Retry limit exceeded");
        assert_eq!(
            payload["data"]["acknowledged_at"],
            "1970-01-01T00:00:00.000000Z"
        );
        payload["data"]["attempt"].clone()
    }

    #[test]
    fn an_answer_gives_status_and_response_time_and_no_error() {
        let a = attempt_json(&attempt(Some(500), None, Some("10.0.0.1")));
        assert_eq!(a["http_status"], 500);
        assert_eq!(a["responded_at"], "1970-01-01T00:00:02.000000Z");
        assert_eq!(a["ip_address"], "10.0.0.1");
        assert!(a.get("error").is_none());
    }

    #[test]
    fn no_answer_gives_the_error_and_no_status_or_response_time() {
        let timeout = attempt_json(&attempt(None, Some(ErrorClass::Timeout), Some("10.0.0.1")));
        assert_eq!(timeout["error"], "timeout: went wrong");
        assert_eq!(
            timeout["ip_address"], "10.0.0.1",
            "connected, then timed out"
        );
        assert!(timeout.get("http_status").is_none());
        assert!(timeout.get("responded_at").is_none());
        assert_eq!(timeout["requested_at"], "1970-01-01T00:00:01.000000Z");

        let refused = attempt_json(&attempt(None, Some(ErrorClass::ConnectionRefused), None));
        assert_eq!(refused["ip_address"], "", "no connection, no address");
    }
}
