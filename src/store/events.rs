//! Publishing (events with their deliveries, in one transaction) and reading
//! events back.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};

use super::entities::{delivery, event, idempotency_key};
use super::rows::{self, Field};
use super::{Store, StoreError};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::event::{Event, IdempotencyKey, Payload};
use crate::domain::fields::{CustomHeaders, EventType};
use crate::domain::ids::{DeliveryId, EndpointId, EventId, NodeId, ProjectId};
use crate::domain::time::Timestamp;

/// Rows per multi-row INSERT: well under SQLite's limit of 32,766 bound
/// parameters for the widest table.
const INSERT_CHUNK: usize = 1000;

/// A delivery about to be stored with its event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    /// PROCESSING (held by `lease_owner`, dispatched from memory after the
    /// commit), SCHEDULED (left for the poller) or DISCARDED.
    pub status: DeliveryStatus,
    pub lease_owner: Option<NodeId>,
    pub description: String,
}

/// One event and its deliveries.
#[derive(Debug, Clone)]
pub struct PublishRecord {
    /// Shared with the deliveries that go on to be sent from memory.
    pub event: std::sync::Arc<Event>,
    pub deliveries: Vec<NewDelivery>,
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Stored,
    /// Its idempotency key was used within the window by this event; nothing
    /// was stored.
    Duplicate(EventId),
}

/// Which events a list call wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub endpoint_id: Option<EndpointId>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

impl Store {
    /// Stores the records in one transaction. A record whose idempotency key
    /// was used in its project at or after `dedup_since` (or earlier in the
    /// same batch) is not stored.
    pub async fn publish(
        &self,
        records: &[PublishRecord],
        dedup_since: Timestamp,
    ) -> Result<Vec<Published>, StoreError> {
        let records: Vec<&PublishRecord> = records.iter().collect();
        let (outcomes, _) = self.write(&records, dedup_since, None).await?;
        Ok(outcomes)
    }

    pub async fn get_event(
        &self,
        project: &ProjectId,
        id: &EventId,
    ) -> Result<(Event, Vec<EndpointId>), StoreError> {
        let row = event::Entity::find_by_id(id.as_str())
            .filter(event::Column::ProjectId.eq(project.as_str()))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        let event = event_from_row(row)?;
        let mut targets = self
            .endpoints_of_events(std::slice::from_ref(&event.id))
            .await?;
        Ok((event, targets.remove(id).unwrap_or_default()))
    }

    /// Newest first, up to `limit`, before the id `before`.
    pub async fn list_events(
        &self,
        project: &ProjectId,
        filter: &EventFilter,
        before: Option<&EventId>,
        limit: u32,
    ) -> Result<Vec<(Event, Vec<EndpointId>)>, StoreError> {
        let mut condition = Condition::all().add(event::Column::ProjectId.eq(project.as_str()));
        if let Some(event_type) = &filter.event_type {
            condition = condition.add(event::Column::EventType.eq(event_type.as_str()));
        }
        if let Some(endpoint) = &filter.endpoint_id {
            condition = condition.add(
                event::Column::Id.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(delivery::Column::EventId)
                        .from(delivery::Entity)
                        .and_where(delivery::Column::EndpointId.eq(endpoint.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(after) = filter.created_after {
            condition = condition.add(event::Column::CreatedAt.gte(after.unix_micros()));
        }
        if let Some(before) = filter.created_before {
            condition = condition.add(event::Column::CreatedAt.lt(before.unix_micros()));
        }
        if let Some(cursor) = before {
            condition = condition.add(event::Column::Id.lt(cursor.as_str()));
        }
        let events = event::Entity::find()
            .filter(condition)
            .order_by_desc(event::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<EventId> = events.iter().map(|e| e.id.clone()).collect();
        let mut targets = self.endpoints_of_events(&ids).await?;
        Ok(events
            .into_iter()
            .map(|e| {
                let endpoints = targets.remove(&e.id).unwrap_or_default();
                (e, endpoints)
            })
            .collect())
    }

    /// Events by id, in any project (for the delivery engine).
    pub async fn events_by_ids(&self, ids: &[EventId]) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(INSERT_CHUNK) {
            let rows = event::Entity::find()
                .filter(event::Column::Id.is_in(chunk.iter().map(EventId::as_str)))
                .all(&self.db)
                .await?;
            for row in rows {
                events.push(event_from_row(row)?);
            }
        }
        Ok(events)
    }

    async fn endpoints_of_events(
        &self,
        ids: &[EventId],
    ) -> Result<HashMap<EventId, Vec<EndpointId>>, StoreError> {
        let mut targets: HashMap<EventId, Vec<EndpointId>> = HashMap::new();
        if ids.is_empty() {
            return Ok(targets);
        }
        let rows: Vec<(String, String)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::EventId)
            .column(delivery::Column::EndpointId)
            .filter(delivery::Column::EventId.is_in(ids.iter().map(EventId::as_str)))
            .order_by_asc(delivery::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        for (event_id, endpoint_id) in rows {
            let corrupt = |e: crate::domain::Invalid| StoreError::Corrupt {
                table: "deliveries",
                detail: e.0,
            };
            targets
                .entry(event_id.parse().map_err(corrupt)?)
                .or_default()
                .push(endpoint_id.parse().map_err(corrupt)?);
        }
        Ok(targets)
    }
}

/// Claims the records' idempotency keys in `txn`; says what becomes of
/// each record (see [`Store::publish`]).
pub(super) async fn claim_keys(
    txn: &DatabaseTransaction,
    records: &[&PublishRecord],
    dedup_since: Timestamp,
) -> Result<Vec<Published>, StoreError> {
    let mut outcomes = Vec::with_capacity(records.len());
    let mut seen_in_batch: HashMap<(&ProjectId, &str), EventId> = HashMap::new();
    for record in records {
        let event = &record.event;
        let outcome = match &event.idempotency_key {
            None => Published::Stored,
            Some(key) => match seen_in_batch.get(&(&event.project_id, key.as_str())) {
                Some(original) => Published::Duplicate(original.clone()),
                None => {
                    let outcome = claim_idempotency_key(txn, event, key, dedup_since).await?;
                    if outcome == Published::Stored {
                        seen_in_batch.insert((&event.project_id, key.as_str()), event.id.clone());
                    }
                    outcome
                }
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Adds the statements that insert the records `outcomes` lets be stored
/// to `statements`.
pub(super) fn publish_statements(
    backend: DbBackend,
    records: &[&PublishRecord],
    outcomes: &[Published],
    statements: &mut Vec<Statement>,
) {
    let stored: Vec<&PublishRecord> = records
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == Published::Stored)
        .map(|(r, _)| *r)
        .collect();
    let events: Vec<EventRow<'_>> = stored.iter().map(|r| event_row(&r.event)).collect();
    statements.extend(rows::insert(backend, "events", &EVENT_COLUMNS, events));
    let deliveries: Vec<DeliveryRow<'_>> = stored
        .iter()
        .flat_map(|r| r.deliveries.iter().map(|d| delivery_row(&r.event, d)))
        .collect();
    statements.extend(rows::insert(
        backend,
        "deliveries",
        &DELIVERY_COLUMNS,
        deliveries,
    ));
}

/// Takes the key for `event`, unless it was used at or after `since`.
async fn claim_idempotency_key(
    txn: &DatabaseTransaction,
    event: &Event,
    key: &IdempotencyKey,
    since: Timestamp,
) -> Result<Published, StoreError> {
    let existing = idempotency_key::Entity::find_by_id((
        event.project_id.to_string(),
        key.as_str().to_owned(),
    ))
    .one(txn)
    .await?;
    let row = idempotency_key::ActiveModel {
        project_id: Set(event.project_id.to_string()),
        key: Set(key.as_str().to_owned()),
        event_id: Set(event.id.to_string()),
        created_at: Set(event.created_at.unix_micros()),
    };
    match existing {
        Some(found) if found.created_at >= since.unix_micros() => {
            let original = found
                .event_id
                .parse()
                .map_err(|e: crate::domain::Invalid| StoreError::Corrupt {
                    table: "idempotency_keys",
                    detail: e.0,
                })?;
            Ok(Published::Duplicate(original))
        }
        Some(_) => {
            idempotency_key::Entity::update(row).exec(txn).await?;
            Ok(Published::Stored)
        }
        None => {
            idempotency_key::Entity::insert(row)
                .exec_without_returning(txn)
                .await?;
            Ok(Published::Stored)
        }
    }
}

/// An `events` row as [`rows::insert`] writes it, in `EVENT_COLUMNS` order.
type EventRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    i64,
);

const EVENT_COLUMNS: [(&str, Field); 7] = [
    ("id", Field::Text),
    ("project_id", Field::Text),
    ("event_type", Field::Text),
    ("payload", Field::Text),
    ("custom_headers", Field::Text),
    ("idempotency_key", Field::Text),
    ("created_at", Field::Integer),
];

fn event_row(event: &Event) -> EventRow<'_> {
    (
        event.id.as_str(),
        event.project_id.as_str(),
        event.event_type.as_str(),
        event.payload.as_str(),
        super::json_text(event.custom_headers.as_map()),
        event.idempotency_key.as_ref().map(IdempotencyKey::as_str),
        event.created_at.unix_micros(),
    )
}

/// A `deliveries` row as [`rows::insert`] writes it, in `DELIVERY_COLUMNS`
/// order.
type DeliveryRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'static str,
    i64,
    Option<i64>,
    Option<&'a str>,
    i64,
    i64,
    i64,
    &'a str,
    i64,
);

const DELIVERY_COLUMNS: [(&str, Field); 14] = [
    ("id", Field::Text),
    ("project_id", Field::Text),
    ("event_id", Field::Text),
    ("endpoint_id", Field::Text),
    ("event_type", Field::Text),
    ("status", Field::Text),
    ("attempts", Field::Integer),
    ("next_attempt_at", Field::Integer),
    ("lease_owner", Field::Text),
    ("acknowledged_at", Field::Integer),
    ("created_at", Field::Integer),
    ("updated_at", Field::Integer),
    ("description", Field::Text),
    ("last_http_status", Field::Integer),
];

fn delivery_row<'a>(event: &'a Event, new: &'a NewDelivery) -> DeliveryRow<'a> {
    let at = event.created_at.unix_micros();
    (
        new.id.as_str(),
        event.project_id.as_str(),
        event.id.as_str(),
        new.endpoint_id.as_str(),
        event.event_type.as_str(),
        new.status.as_str(),
        0,
        (new.status != DeliveryStatus::Discarded).then_some(at),
        new.lease_owner.as_ref().map(NodeId::as_str),
        at,
        at,
        at,
        &new.description,
        0,
    )
}

pub(super) fn event_from_row(row: event::Model) -> Result<Event, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "events",
        detail: format!("{} {field}: {detail}", row.id),
    };
    let headers: BTreeMap<String, String> = serde_json::from_str(&row.custom_headers)
        .map_err(|e| corrupt("custom_headers", e.to_string()))?;
    Ok(Event {
        id: row
            .id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("id", e.0))?,
        project_id: row
            .project_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("project_id", e.0))?,
        event_type: EventType::parse(&row.event_type).map_err(|e| corrupt("event_type", e.0))?,
        custom_headers: CustomHeaders::parse(&headers)
            .map_err(|e| corrupt("custom_headers", e.0))?,
        idempotency_key: IdempotencyKey::parse(row.idempotency_key.as_deref().unwrap_or_default())
            .map_err(|e| corrupt("idempotency_key", e.0))?,
        created_at: Timestamp::from_unix_micros(row.created_at),
        payload: Payload::from_stored(row.payload),
    })
}
