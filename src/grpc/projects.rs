//! `hookd.v1.ProjectService` and `hookd.v1.MetaEventService`.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::convert::{
    meta_attempt_to_pb, meta_event_to_pb, meta_settings_from_pb, meta_settings_to_pb,
    signature_from_pb, signature_to_pb,
};
use super::events::start_after;
use super::paging::{cursor, page};
use super::pb;
use super::pb::meta_event_service_server::MetaEventService;
use super::pb::project_service_server::ProjectService;
use super::pb::{
    GetMetaEventRequest, GetMetaEventResponse, GetProjectRequest, ListMetaEventsRequest,
    ListMetaEventsResponse, MetaEvent as PbMetaEvent, Project as PbProject, RetryMetaEventRequest,
    UpdateProjectRequest, UpdateProjectResponse, WatchMetaEventsRequest,
};
use super::watch::{WatchStream, Watches, deadline};
use super::{ApiError, Authenticator};
use crate::domain::ids::{MetaEventId, ProjectId};
use crate::domain::meta::{MetaEventType, MetaSettings};
use crate::domain::page::PageSize;
use crate::domain::retry::RetryPolicy;
use crate::domain::secret::Secret;
use crate::domain::time::Clock;
use crate::domain::watch::LogPage;
use crate::store::Store;

pub struct ProjectApi {
    store: Store,
    auth: Authenticator,
    clock: std::sync::Arc<dyn Clock>,
    watches: Watches,
}

impl ProjectApi {
    pub fn new(
        store: Store,
        auth: Authenticator,
        clock: std::sync::Arc<dyn Clock>,
        watches: Watches,
    ) -> Self {
        Self {
            store,
            auth,
            clock,
            watches,
        }
    }

    async fn project_pb(&self, id: &ProjectId) -> Result<PbProject, ApiError> {
        let (project, settings, defaults) = self
            .store
            .project_settings(id)
            .await
            .map_err(ApiError::from_store("project"))?;
        Ok(PbProject {
            id: project.id.to_string(),
            name: project.name.as_str().to_owned(),
            meta_events: Some(meta_settings_to_pb(&settings)),
            retry: defaults.retry.as_ref().map(retry_to_pb),
            signature_defaults: defaults.signature.map(|s| {
                let [scheme, hash, encoding] = signature_to_pb(s);
                pb::SignatureDefaults {
                    scheme,
                    hash,
                    encoding,
                }
            }),
        })
    }
}

#[tonic::async_trait]
impl ProjectService for ProjectApi {
    async fn get_project(
        &self,
        request: Request<GetProjectRequest>,
    ) -> Result<Response<PbProject>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        Ok(Response::new(self.project_pb(&project).await?))
    }

    async fn update_project(
        &self,
        request: Request<UpdateProjectRequest>,
    ) -> Result<Response<UpdateProjectResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        if req.meta_events.is_none()
            && !req.regenerate_secret
            && req.retry.is_none()
            && req.signature_defaults.is_none()
            && !req.clear_retry
            && !req.clear_signature_defaults
        {
            return Err(ApiError::invalid("meta_events", "the request changes nothing").into());
        }
        // Everything is validated before anything is stored.
        let mut defaults = self
            .store
            .project_defaults(&project)
            .await
            .map_err(ApiError::from_store("project"))?;
        let defaults_change = req.retry.is_some()
            || req.signature_defaults.is_some()
            || req.clear_retry
            || req.clear_signature_defaults;
        match (&req.retry, req.clear_retry) {
            (Some(_), true) => {
                return Err(
                    ApiError::invalid("clear_retry", "set retry or clear it, not both").into(),
                );
            }
            (Some(raw), false) => defaults.retry = Some(retry_from_pb(raw)?),
            (None, true) => defaults.retry = None,
            (None, false) => {}
        }
        match (&req.signature_defaults, req.clear_signature_defaults) {
            (Some(_), true) => {
                return Err(ApiError::invalid(
                    "clear_signature_defaults",
                    "set signature_defaults or clear them, not both",
                )
                .into());
            }
            (Some(raw), false) => {
                defaults.signature = Some(signature_from_pb(
                    [raw.scheme, raw.hash, raw.encoding],
                    [
                        "signature_defaults.scheme",
                        "signature_defaults.hash",
                        "signature_defaults.encoding",
                    ],
                )?)
            }
            (None, true) => defaults.signature = None,
            (None, false) => {}
        }
        // The defaults first: a new meta-event secret is stored last, so a
        // failure cannot leave one in effect that the caller never saw.
        if defaults_change {
            self.store
                .set_project_defaults(&project, &defaults, self.clock.now())
                .await
                .map_err(ApiError::from_store("project"))?;
            tracing::info!(project = %project, "project defaults changed");
        }
        let shown = match (req.meta_events, req.regenerate_secret) {
            (None, false) => None,
            (raw, regenerate) => self.update_meta(&project, raw, regenerate).await?,
        };
        Ok(Response::new(UpdateProjectResponse {
            project: Some(self.project_pb(&project).await?),
            meta_events_secret: shown.unwrap_or_default(),
        }))
    }
}

impl ProjectApi {
    /// Applies new meta-event settings (or only a new secret); returns the
    /// secret when it changed, the one time it is shown.
    async fn update_meta(
        &self,
        project: &ProjectId,
        raw: Option<pb::MetaEventSettings>,
        regenerate_secret: bool,
    ) -> Result<Option<String>, ApiError> {
        let current = self
            .store
            .meta_settings(project)
            .await
            .map_err(ApiError::from_store("project"))?;
        let mut settings: MetaSettings = match &raw {
            Some(raw) => meta_settings_from_pb(raw, "meta_events.")?,
            // Only a new secret: everything else stays.
            None => MetaSettings {
                secret: None,
                ..current.clone()
            },
        };
        let given = settings.secret.clone();
        settings.secret = match (given, regenerate_secret) {
            (Some(_), true) => {
                return Err(ApiError::invalid(
                    "meta_events.secret",
                    "give a secret or ask for a new one, not both",
                ));
            }
            (Some(secret), false) => Some(secret),
            (None, true) => Some(Secret::generate(crate::system::random_bytes())),
            (None, false) => match current.secret.clone() {
                Some(kept) => Some(kept),
                None if settings.enabled => Some(Secret::generate(crate::system::random_bytes())),
                None => None,
            },
        };
        let shown = if settings.secret != current.secret {
            settings.secret.as_ref().map(|s| s.expose().to_owned())
        } else {
            None
        };
        self.store
            .set_meta_settings(project, &settings, self.clock.now())
            .await
            .map_err(ApiError::from_store("project"))?;
        tracing::info!(project = %project, enabled = settings.enabled, "meta event settings changed");
        Ok(shown)
    }
}

fn retry_from_pb(raw: &pb::RetrySettings) -> Result<RetryPolicy, ApiError> {
    if !(1..=100).contains(&raw.max_attempts) {
        return Err(ApiError::invalid(
            "retry.max_attempts",
            "must be between 1 and 100",
        ));
    }
    if raw.initial_delay_seconds == 0 {
        return Err(ApiError::invalid(
            "retry.initial_delay_seconds",
            "must be at least 1",
        ));
    }
    if raw.max_delay_seconds < raw.initial_delay_seconds {
        return Err(ApiError::invalid(
            "retry.max_delay_seconds",
            "must be at least initial_delay_seconds",
        ));
    }
    RetryPolicy::with_backoff(
        raw.max_attempts,
        Duration::from_secs(u64::from(raw.initial_delay_seconds)),
        Duration::from_secs(u64::from(raw.max_delay_seconds)),
    )
    .map_err(ApiError::field("retry"))
}

fn retry_to_pb(policy: &RetryPolicy) -> pb::RetrySettings {
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    pb::RetrySettings {
        max_attempts: policy.max_attempts(),
        initial_delay_seconds: secs(policy.initial()),
        max_delay_seconds: secs(policy.max_delay()),
    }
}

fn meta_event_id(raw: &str) -> Result<MetaEventId, ApiError> {
    raw.parse().map_err(ApiError::field("id"))
}

#[tonic::async_trait]
impl MetaEventService for ProjectApi {
    type WatchMetaEventsStream = WatchStream<PbMetaEvent>;

    async fn list_meta_events(
        &self,
        request: Request<ListMetaEventsRequest>,
    ) -> Result<Response<ListMetaEventsResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let size = PageSize::new(req.page_size).map_err(ApiError::field("page_size"))?;
        let filter_key = "meta events";
        let before: Option<MetaEventId> = cursor(&req.page_token, filter_key)?;
        let rows = self
            .store
            .list_meta_events(&project, before.as_ref(), size.get() + 1)
            .await
            .map_err(ApiError::from_store("meta event"))?;
        let (rows, next_page_token) = page(size, filter_key, rows, |m| m.id.to_string());
        Ok(Response::new(ListMetaEventsResponse {
            meta_events: rows.iter().map(meta_event_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn get_meta_event(
        &self,
        request: Request<GetMetaEventRequest>,
    ) -> Result<Response<GetMetaEventResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id = meta_event_id(&request.get_ref().id)?;
        let (event, attempts) = self
            .store
            .get_meta_event(&project, &id)
            .await
            .map_err(ApiError::from_store("meta event"))?;
        Ok(Response::new(GetMetaEventResponse {
            meta_event: Some(meta_event_to_pb(&event)),
            attempts: attempts.iter().map(meta_attempt_to_pb).collect(),
        }))
    }

    async fn retry_meta_event(
        &self,
        request: Request<RetryMetaEventRequest>,
    ) -> Result<Response<PbMetaEvent>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id = meta_event_id(&request.get_ref().id)?;
        match self
            .store
            .retry_meta_event(&project, &id, self.clock.now())
            .await
            .map_err(ApiError::from_store("meta event"))?
        {
            Ok(event) => Ok(Response::new(meta_event_to_pb(&event))),
            Err(()) => Err(ApiError::FailedPrecondition(
                "the project has no meta event URL to send to".into(),
            )
            .into()),
        }
    }

    async fn watch_meta_events(
        &self,
        request: Request<WatchMetaEventsRequest>,
    ) -> Result<Response<Self::WatchMetaEventsStream>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        let types = req
            .event_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                MetaEventType::parse(t)
                    .map_err(|e| ApiError::invalid(format!("event_types[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Meta events are never pruned: every cursor stays good.
        let after = start_after(
            &req.cursor,
            self.store.meta_events_head(&project),
            std::future::ready(Ok(crate::domain::watch::Cursor::START)),
        )
        .await?;
        let stream = self.watches.tail(
            &self.store,
            project,
            after,
            deadline,
            move |store, of, cursor, limit| {
                let types = types.clone();
                async move {
                    let events = store
                        .meta_events_after(&of, cursor, &types, limit)
                        .await
                        .map_err(ApiError::from_store("meta event"))?;
                    let page = LogPage::to_last(events, cursor, limit, |e| e.cursor);
                    Ok(page.map(|e| (e.cursor, meta_event_to_pb(&e))))
                }
            },
        )?;
        Ok(Response::new(stream))
    }
}
