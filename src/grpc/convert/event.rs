//! Events, deliveries and attempts between protobuf and the domain.

use super::timestamp;
use crate::domain::Invalid;
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::event::{Event, EventTarget, IdempotencyKey, NewEvent, Payload};
use crate::domain::fields::{CustomHeaders, EventType, OwnerId};
use crate::domain::ids::EndpointId;
use crate::domain::watch::{DeliveryChange, WatchFilter};
use crate::grpc::ApiError;
use crate::grpc::pb;
use crate::grpc::pb::create_event_request::Target;

/// Parses one publish request; `prefix` is `""` or `events[i].`.
pub(in crate::grpc) fn new_event(
    raw: &pb::CreateEventRequest,
    prefix: &str,
    max_payload_bytes: usize,
) -> Result<NewEvent, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let event_type =
        EventType::parse(&raw.event_type).map_err(|e| ApiError::invalid(field("event_type"), e))?;
    let payload = Payload::parse(&raw.payload, max_payload_bytes)
        .map_err(|e| ApiError::invalid(field("payload"), e))?;
    let target = match &raw.target {
        None => {
            return Err(ApiError::invalid(
                field("target"),
                "exactly one of endpoint_id, owner_id or broadcast is required",
            ));
        }
        Some(Target::EndpointId(id)) => EventTarget::Endpoint(
            id.parse::<EndpointId>()
                .map_err(|e| ApiError::invalid(field("endpoint_id"), e))?,
        ),
        Some(Target::OwnerId(owner)) => EventTarget::Owner(
            OwnerId::parse(owner)
                .map_err(|e| ApiError::invalid(field("owner_id"), e))?
                .ok_or_else(|| ApiError::invalid(field("owner_id"), "must not be empty"))?,
        ),
        Some(Target::Broadcast(true)) => EventTarget::Broadcast,
        Some(Target::Broadcast(false)) => {
            return Err(ApiError::invalid(
                field("broadcast"),
                "must be true when it is the target",
            ));
        }
    };
    let custom_headers = CustomHeaders::parse(&raw.custom_headers)
        .map_err(|e| ApiError::invalid(field("custom_headers"), e))?;
    let idempotency_key = IdempotencyKey::parse(&raw.idempotency_key)
        .map_err(|e| ApiError::invalid(field("idempotency_key"), e))?;
    Ok(NewEvent {
        event_type,
        payload,
        target,
        custom_headers,
        idempotency_key,
    })
}

pub(in crate::grpc) fn event_to_pb(event: &Event, endpoint_ids: &[EndpointId]) -> pb::Event {
    pb::Event {
        id: event.id.to_string(),
        event_type: event.event_type.as_str().to_owned(),
        payload: event.payload.as_str().to_owned(),
        custom_headers: event.custom_headers.as_map().clone(),
        idempotency_key: event
            .idempotency_key
            .as_ref()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        created_at: Some(timestamp(event.created_at)),
        endpoint_ids: endpoint_ids.iter().map(ToString::to_string).collect(),
    }
}

pub(in crate::grpc) fn delivery_status_to_pb(status: DeliveryStatus) -> pb::DeliveryStatus {
    match status {
        DeliveryStatus::Scheduled => pb::DeliveryStatus::Scheduled,
        DeliveryStatus::Processing => pb::DeliveryStatus::Processing,
        DeliveryStatus::Success => pb::DeliveryStatus::Success,
        DeliveryStatus::Retry => pb::DeliveryStatus::Retry,
        DeliveryStatus::Failure => pb::DeliveryStatus::Failure,
        DeliveryStatus::Discarded => pb::DeliveryStatus::Discarded,
    }
}

/// Every listed status must be a real one (UNSPECIFIED included is refused).
pub(in crate::grpc) fn delivery_statuses_from_pb(
    raw: &[i32],
    field: &str,
) -> Result<Vec<DeliveryStatus>, ApiError> {
    raw.iter()
        .map(|&value| match pb::DeliveryStatus::try_from(value) {
            Ok(pb::DeliveryStatus::Scheduled) => Ok(DeliveryStatus::Scheduled),
            Ok(pb::DeliveryStatus::Processing) => Ok(DeliveryStatus::Processing),
            Ok(pb::DeliveryStatus::Success) => Ok(DeliveryStatus::Success),
            Ok(pb::DeliveryStatus::Retry) => Ok(DeliveryStatus::Retry),
            Ok(pb::DeliveryStatus::Failure) => Ok(DeliveryStatus::Failure),
            Ok(pb::DeliveryStatus::Discarded) => Ok(DeliveryStatus::Discarded),
            Ok(pb::DeliveryStatus::Unspecified) | Err(_) => Err(ApiError::invalid(
                field,
                format!("{value} is not a delivery status"),
            )),
        })
        .collect()
}

pub(in crate::grpc) fn delivery_to_pb(delivery: &Delivery) -> pb::Delivery {
    pb::Delivery {
        id: delivery.id.to_string(),
        event_id: delivery.event_id.to_string(),
        endpoint_id: delivery.endpoint_id.to_string(),
        event_type: delivery.event_type.as_str().to_owned(),
        status: delivery_status_to_pb(delivery.status) as i32,
        attempts: delivery.attempts,
        next_attempt_at: delivery.next_attempt_at.map(timestamp),
        acknowledged_at: Some(timestamp(delivery.acknowledged_at)),
        updated_at: Some(timestamp(delivery.updated_at)),
        description: delivery.description.clone(),
        last_http_status: delivery.last_http_status.map_or(0, u32::from),
    }
}

pub(in crate::grpc) fn attempt_to_pb(attempt: &Attempt) -> pb::DeliveryAttempt {
    let pairs = |list: &[(String, String)]| {
        let mut map = std::collections::BTreeMap::new();
        for (name, value) in list {
            map.entry(name.clone())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        map
    };
    pb::DeliveryAttempt {
        id: attempt.id.to_string(),
        delivery_id: attempt.delivery_id.to_string(),
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
        request_headers: pairs(&attempt.request_headers.pairs()),
        response_headers: pairs(&attempt.response_headers.pairs()),
        response_body: attempt.response_body.clone(),
        duration_ms: attempt.duration_ms,
    }
}

pub(in crate::grpc) fn change_to_pb(change: &DeliveryChange) -> pb::DeliveryUpdate {
    pb::DeliveryUpdate {
        cursor: change.cursor.to_string(),
        delivery_id: change.delivery_id.to_string(),
        event_id: change.event_id.to_string(),
        endpoint_id: change.endpoint_id.to_string(),
        event_type: change.event_type.as_str().to_owned(),
        status: delivery_status_to_pb(change.status) as i32,
        attempts: change.attempts,
        next_attempt_at: change.next_attempt_at.map(timestamp),
        description: change.description.clone(),
        changed_at: Some(timestamp(change.changed_at)),
        attempt: change.attempt.as_ref().map(attempt_to_pb),
    }
}

/// A watch request's filter.
pub(in crate::grpc) fn watch_filter(
    raw: &pb::WatchDeliveriesRequest,
) -> Result<WatchFilter, ApiError> {
    let endpoint_ids = raw
        .endpoint_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.parse()
                .map_err(|e: Invalid| ApiError::invalid(format!("endpoint_ids[{i}]"), e))
        })
        .collect::<Result<_, _>>()?;
    let event_types = raw
        .event_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            EventType::parse(t).map_err(|e| ApiError::invalid(format!("event_types[{i}]"), e))
        })
        .collect::<Result<_, _>>()?;
    Ok(WatchFilter {
        endpoint_ids,
        event_id: match raw.event_id.as_str() {
            "" => None,
            id => Some(
                id.parse()
                    .map_err(|e: Invalid| ApiError::invalid("event_id", e))?,
            ),
        },
        event_types,
        statuses: delivery_statuses_from_pb(&raw.statuses, "statuses")?,
    })
}
