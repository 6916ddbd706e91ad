//! Projects' meta-event settings and meta events between protobuf and the
//! domain.

use super::timestamp;
use crate::domain::fields::EndpointUrl;
use crate::domain::meta::{MetaAttempt, MetaEvent, MetaEventStatus, MetaEventType, MetaSettings};
use crate::domain::secret::Secret;
use crate::grpc::ApiError;
use crate::grpc::pb;

/// Settings from a request; `prefix` names the message in errors. An empty
/// secret is `None` (the caller decides whether to keep or generate one).
pub(in crate::grpc) fn meta_settings_from_pb(
    raw: &pb::MetaEventSettings,
    prefix: &str,
) -> Result<MetaSettings, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let url = match raw.url.as_str() {
        "" => None,
        url => Some(EndpointUrl::parse(url).map_err(|e| ApiError::invalid(field("url"), e))?),
    };
    let secret = match raw.secret.as_str() {
        "" => None,
        secret => Some(Secret::parse(secret).map_err(|e| ApiError::invalid(field("secret"), e))?),
    };
    let mut types = raw
        .event_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            MetaEventType::parse(t)
                .map_err(|e| ApiError::invalid(field(&format!("event_types[{i}]")), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    types.sort();
    types.dedup();
    Ok(MetaSettings {
        enabled: raw.enabled,
        url,
        secret,
        types,
    })
}

pub(in crate::grpc) fn meta_settings_to_pb(settings: &MetaSettings) -> pb::MetaEventSettings {
    pb::MetaEventSettings {
        enabled: settings.enabled,
        url: settings
            .url
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
        event_types: settings
            .types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        secret: String::new(),
        has_secret: settings.secret.is_some(),
    }
}

fn status_to_pb(status: MetaEventStatus) -> pb::MetaEventStatus {
    match status {
        MetaEventStatus::Unsent => pb::MetaEventStatus::Unsent,
        MetaEventStatus::Scheduled => pb::MetaEventStatus::Scheduled,
        MetaEventStatus::Success => pb::MetaEventStatus::Success,
        MetaEventStatus::Retry => pb::MetaEventStatus::Retry,
        MetaEventStatus::Failure => pb::MetaEventStatus::Failure,
    }
}

pub(in crate::grpc) fn meta_event_to_pb(event: &MetaEvent) -> pb::MetaEvent {
    pb::MetaEvent {
        id: event.id.to_string(),
        event_type: event.event_type.as_str().to_owned(),
        payload: event.payload.clone(),
        status: status_to_pb(event.status) as i32,
        attempts: event.attempts,
        next_attempt_at: event.next_attempt_at.map(timestamp),
        description: event.description.clone(),
        created_at: Some(timestamp(event.created_at)),
        updated_at: Some(timestamp(event.updated_at)),
        cursor: event.cursor.to_string(),
    }
}

pub(in crate::grpc) fn meta_attempt_to_pb(attempt: &MetaAttempt) -> pb::MetaEventAttempt {
    pb::MetaEventAttempt {
        number: attempt.number,
        url: attempt.url.clone(),
        requested_at: Some(timestamp(attempt.requested_at)),
        responded_at: attempt.responded_at.map(timestamp),
        http_status: attempt.http_status.map(u32::from),
        error: attempt
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        ip_address: attempt
            .ip_address
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        duration_ms: attempt.duration_ms,
    }
}
