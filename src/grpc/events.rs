//! `hookd.v1.EventService`.

use tonic::{Request, Response, Status};

use super::convert::{
    attempt_to_pb, change_to_pb, delivery_statuses_from_pb, delivery_to_pb, event_to_pb, new_event,
    timestamp_from_pb, watch_filter,
};
use super::paging::{cursor, page};
use super::pb::event_service_server::EventService;
use super::pb::{
    BatchCreateEventsRequest, BatchCreateEventsResponse, BatchRetryDeliveriesRequest,
    BatchRetryDeliveriesResponse, CreateEventRequest, CreateEventResponse, Delivery as PbDelivery,
    Event as PbEvent, GetDeliveryRequest, GetEventRequest, ListDeliveriesRequest,
    ListDeliveriesResponse, ListDeliveryAttemptsRequest, ListDeliveryAttemptsResponse,
    ListEventsRequest, ListEventsResponse, RetryDeliveryRequest,
};
use super::pb::{DeliveryUpdate, WatchDeliveriesRequest};
use super::watch::{WatchStream, Watches, deadline};
use super::{ApiError, Authenticator};
use crate::delivery::{Engine, PublishError, PublishedEvent};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::fields::EventType;
use crate::domain::ids::{DeliveryId, EndpointId, EventId};
use crate::domain::page::PageSize;
use crate::domain::time::Clock;
use crate::domain::watch::Cursor;
use crate::store::{DeliveryFilter, EventFilter, Store, StoreError};

/// Events per BatchCreateEvents call, at most.
const MAX_BATCH: usize = 1_000;

pub struct EventApi {
    store: Store,
    auth: Authenticator,
    engine: Engine,
    clock: std::sync::Arc<dyn Clock>,
    watches: Watches,
}

impl EventApi {
    pub fn new(
        store: Store,
        auth: Authenticator,
        engine: Engine,
        clock: std::sync::Arc<dyn Clock>,
        watches: Watches,
    ) -> Self {
        Self {
            store,
            auth,
            engine,
            clock,
            watches,
        }
    }
}

/// Where a watch starts: after the client's cursor, refused when changes
/// after it may already be pruned; without one, at the log's head.
pub(super) async fn start_after(
    raw: &str,
    head: impl Future<Output = Result<Cursor, StoreError>>,
    pruned_through: impl Future<Output = Result<Cursor, StoreError>>,
) -> Result<Cursor, ApiError> {
    if raw.is_empty() {
        return head.await.map_err(ApiError::from_store("change log"));
    }
    let cursor = Cursor::parse(raw).map_err(ApiError::field("cursor"))?;
    let pruned = pruned_through
        .await
        .map_err(ApiError::from_store("change log"))?;
    if cursor < pruned {
        return Err(ApiError::OutOfRange(
            "the cursor is older than the retained history; list what you need, then watch \
             without a cursor"
                .into(),
        ));
    }
    Ok(cursor)
}

fn parse_id<T: std::str::FromStr<Err = crate::domain::Invalid>>(
    raw: &str,
    field: &str,
) -> Result<T, ApiError> {
    raw.parse().map_err(ApiError::field(field))
}

fn optional_id<T: std::str::FromStr<Err = crate::domain::Invalid>>(
    raw: &str,
    field: &str,
) -> Result<Option<T>, ApiError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_id(raw, field).map(Some)
    }
}

/// `batch` says whether to name the failing event's index.
fn publish_error(err: PublishError, batch: bool) -> ApiError {
    match err {
        PublishError::TargetNotFound { index, what } if batch => {
            ApiError::NotFound(format!("events[{index}].{what}").into())
        }
        PublishError::TargetNotFound { what, .. } => ApiError::NotFound(what.into()),
        PublishError::Store(err) => ApiError::from_shared_store("event", err),
        PublishError::ShuttingDown => ApiError::ShuttingDown,
    }
}

fn published_to_pb(published: &PublishedEvent) -> CreateEventResponse {
    CreateEventResponse {
        event: Some(event_to_pb(&published.event, &published.endpoint_ids)),
        deliveries: published.deliveries.iter().map(delivery_to_pb).collect(),
        duplicate: published.duplicate,
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchDeliveriesStream = WatchStream<DeliveryUpdate>;

    async fn watch_deliveries(
        &self,
        request: Request<WatchDeliveriesRequest>,
    ) -> Result<Response<Self::WatchDeliveriesStream>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let filter = watch_filter(&req)?;
        let after = start_after(
            &req.cursor,
            self.store.delivery_changes_head(&project),
            self.store.delivery_changes_pruned_through(),
        )
        .await?;
        let stream = self.watches.tail(
            &self.store,
            project,
            after,
            deadline,
            move |store, of, cursor, limit| {
                let filter = filter.clone();
                async move {
                    let page = store
                        .delivery_changes(&of, cursor, &filter, limit)
                        .await
                        .map_err(ApiError::from_store("change log"))?;
                    // A subscriber far enough behind may find its next
                    // changes pruned under it: it must hear so, not skip
                    // them. Checked after the read, so a prune during it
                    // counts too, and only when the read moved past
                    // something (one that did not skipped nothing yet).
                    if page.through > cursor {
                        let pruned = store
                            .delivery_changes_pruned_through()
                            .await
                            .map_err(ApiError::from_store("change log"))?;
                        if cursor < pruned {
                            return Err(ApiError::OutOfRange(
                                "this stream fell behind the retained history; list what \
                                 you need, then watch without a cursor"
                                    .into(),
                            ));
                        }
                    }
                    Ok(page.map(|c| (c.cursor, change_to_pb(&c))))
                }
            },
        )?;
        Ok(Response::new(stream))
    }

    async fn create_event(
        &self,
        request: Request<CreateEventRequest>,
    ) -> Result<Response<CreateEventResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let event = new_event(request.get_ref(), "", self.engine.max_payload_bytes())?;
        let mut published = self
            .engine
            .publish(&project, vec![event])
            .await
            .map_err(|e| publish_error(e, false))?;
        let published = published
            .pop()
            .ok_or_else(|| ApiError::Internal("publish returned nothing".into()))?;
        Ok(Response::new(published_to_pb(&published)))
    }

    async fn batch_create_events(
        &self,
        request: Request<BatchCreateEventsRequest>,
    ) -> Result<Response<BatchCreateEventsResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let requests = &request.get_ref().events;
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(
                ApiError::invalid("events", format!("must hold 1 to {MAX_BATCH} events")).into(),
            );
        }
        let limit = self.engine.max_payload_bytes();
        let events = requests
            .iter()
            .enumerate()
            .map(|(i, raw)| new_event(raw, &format!("events[{i}]."), limit))
            .collect::<Result<Vec<_>, _>>()?;
        let published = self
            .engine
            .publish(&project, events)
            .await
            .map_err(|e| publish_error(e, true))?;
        Ok(Response::new(BatchCreateEventsResponse {
            results: published.iter().map(published_to_pb).collect(),
        }))
    }

    async fn get_event(
        &self,
        request: Request<GetEventRequest>,
    ) -> Result<Response<PbEvent>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id: EventId = parse_id(&request.get_ref().id, "id")?;
        let (event, endpoints) = self
            .store
            .get_event(&project, &id)
            .await
            .map_err(ApiError::from_store("event"))?;
        Ok(Response::new(event_to_pb(&event, &endpoints)))
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let size = PageSize::new(req.page_size).map_err(ApiError::field("page_size"))?;
        let filter = EventFilter {
            event_type: (!req.event_type.is_empty())
                .then(|| EventType::parse(&req.event_type))
                .transpose()
                .map_err(ApiError::field("event_type"))?,
            endpoint_id: optional_id(&req.endpoint_id, "endpoint_id")?,
            created_after: timestamp_from_pb(req.created_after.as_ref(), "created_after")?,
            created_before: timestamp_from_pb(req.created_before.as_ref(), "created_before")?,
        };
        let filter_key = format!("{filter:?}");
        let before: Option<EventId> = cursor(&req.page_token, &filter_key)?;
        let rows = self
            .store
            .list_events(&project, &filter, before.as_ref(), size.get() + 1)
            .await
            .map_err(ApiError::from_store("event"))?;
        let (rows, next_page_token) = page(size, &filter_key, rows, |(e, _)| e.id.to_string());
        Ok(Response::new(ListEventsResponse {
            events: rows
                .iter()
                .map(|(e, endpoints)| event_to_pb(e, endpoints))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<GetDeliveryRequest>,
    ) -> Result<Response<PbDelivery>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id: DeliveryId = parse_id(&request.get_ref().id, "id")?;
        let delivery = self
            .store
            .get_delivery(&project, &id)
            .await
            .map_err(ApiError::from_store("delivery"))?;
        Ok(Response::new(delivery_to_pb(&delivery)))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let size = PageSize::new(req.page_size).map_err(ApiError::field("page_size"))?;
        let filter = DeliveryFilter {
            event_id: optional_id(&req.event_id, "event_id")?,
            endpoint_id: optional_id(&req.endpoint_id, "endpoint_id")?,
            statuses: delivery_statuses_from_pb(&req.statuses, "statuses")?,
            created_after: timestamp_from_pb(req.created_after.as_ref(), "created_after")?,
            created_before: timestamp_from_pb(req.created_before.as_ref(), "created_before")?,
        };
        let filter_key = format!("{filter:?}");
        let before: Option<DeliveryId> = cursor(&req.page_token, &filter_key)?;
        let rows = self
            .store
            .list_deliveries(&project, &filter, before.as_ref(), size.get() + 1)
            .await
            .map_err(ApiError::from_store("delivery"))?;
        let (rows, next_page_token) = page(size, &filter_key, rows, |d| d.id.to_string());
        Ok(Response::new(ListDeliveriesResponse {
            deliveries: rows.iter().map(delivery_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn list_delivery_attempts(
        &self,
        request: Request<ListDeliveryAttemptsRequest>,
    ) -> Result<Response<ListDeliveryAttemptsResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let id: DeliveryId = parse_id(&req.delivery_id, "delivery_id")?;
        let size = PageSize::new(req.page_size).map_err(ApiError::field("page_size"))?;
        let filter_key = format!("attempts of {id}");
        let after = cursor::<u32>(&req.page_token, &filter_key)?.unwrap_or(0);
        let rows = self
            .store
            .list_attempts(&project, &id, after, size.get() + 1)
            .await
            .map_err(ApiError::from_store("delivery"))?;
        let (rows, next_page_token) = page(size, &filter_key, rows, |a| a.number.to_string());
        Ok(Response::new(ListDeliveryAttemptsResponse {
            attempts: rows.iter().map(attempt_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn retry_delivery(
        &self,
        request: Request<RetryDeliveryRequest>,
    ) -> Result<Response<PbDelivery>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id: DeliveryId = parse_id(&request.get_ref().id, "id")?;
        let delivery = self
            .store
            .retry_delivery(&project, &id, self.clock.now())
            .await
            .map_err(ApiError::from_store("delivery"))?
            .map_err(|status| {
                ApiError::FailedPrecondition(format!(
                    "only FAILURE or DISCARDED deliveries can be retried; this one is {}",
                    status.as_str().to_uppercase()
                ))
            })?;
        self.engine.endpoint_changed(&delivery.endpoint_id);
        self.engine.wake();
        Ok(Response::new(delivery_to_pb(&delivery)))
    }

    async fn batch_retry_deliveries(
        &self,
        request: Request<BatchRetryDeliveriesRequest>,
    ) -> Result<Response<BatchRetryDeliveriesResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let mut statuses = delivery_statuses_from_pb(&req.statuses, "statuses")?;
        if let Some(other) = statuses.iter().find(|s| !s.can_retry_by_hand()) {
            return Err(ApiError::invalid(
                "statuses",
                format!(
                    "only FAILURE and DISCARDED deliveries can be retried, not {}",
                    other.as_str().to_uppercase()
                ),
            )
            .into());
        }
        if statuses.is_empty() {
            statuses = vec![DeliveryStatus::Failure, DeliveryStatus::Discarded];
        }
        let filter = DeliveryFilter {
            event_id: None,
            endpoint_id: optional_id::<EndpointId>(&req.endpoint_id, "endpoint_id")?,
            statuses,
            created_after: timestamp_from_pb(req.created_after.as_ref(), "created_after")?,
            created_before: timestamp_from_pb(req.created_before.as_ref(), "created_before")?,
        };
        let scheduled = self
            .store
            .retry_deliveries(&project, &filter, self.clock.now())
            .await
            .map_err(ApiError::from_store("delivery"))?;
        self.engine.endpoints_changed();
        self.engine.wake();
        Ok(Response::new(BatchRetryDeliveriesResponse { scheduled }))
    }
}
