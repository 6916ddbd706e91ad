//! `hookd.v1.EndpointService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{endpoint_spec, endpoint_to_pb, endpoint_update, status_from_pb};
use super::paging::{cursor, page};
use super::pb::endpoint_service_server::EndpointService;
use super::pb::{
    ActivateEndpointRequest, CreateEndpointRequest, DeleteEndpointRequest, DeleteEndpointResponse,
    Endpoint as PbEndpoint, GetEndpointRequest, ListEndpointsRequest, ListEndpointsResponse,
    RotateEndpointSecretRequest, RotateEndpointSecretResponse, UpdateEndpointRequest,
};
use super::{ApiError, Authenticator};
use crate::delivery::Engine;
use crate::domain::endpoint::{Endpoint, UpdateError};
use crate::domain::fields::OwnerId;
use crate::domain::ids::EndpointId;
use crate::domain::page::PageSize;
use crate::domain::secret::{RotationPolicy, Secret};
use crate::domain::time::Clock;
use crate::store::{EndpointFilter, Store};
use crate::system;

pub struct EndpointApi {
    store: Store,
    auth: Authenticator,
    engine: Engine,
    clock: Arc<dyn Clock>,
    rotation: RotationPolicy,
    /// Whether new and re-pointed endpoints are pinged unless the request
    /// skips it.
    ping: bool,
}

impl EndpointApi {
    pub fn new(
        store: Store,
        auth: Authenticator,
        engine: Engine,
        clock: Arc<dyn Clock>,
        rotation: RotationPolicy,
        ping: bool,
    ) -> Self {
        Self {
            store,
            auth,
            engine,
            clock,
            rotation,
            ping,
        }
    }

    /// Pings `endpoint` signed with `secret`; FAILED_PRECONDITION says why
    /// it failed.
    async fn ping(&self, endpoint: &Endpoint, secret: &Secret) -> Result<(), ApiError> {
        self.engine.ping(endpoint, secret).await.map_err(|why| {
            ApiError::FailedPrecondition(format!(
                "the endpoint did not answer the ping with 2xx ({why}); fix it or set skip_ping_validation"
            ))
        })
    }
}

fn endpoint_id(raw: &str, field: &str) -> Result<EndpointId, ApiError> {
    raw.parse().map_err(ApiError::field(field))
}

#[tonic::async_trait]
impl EndpointService for EndpointApi {
    async fn create_endpoint(
        &self,
        request: Request<CreateEndpointRequest>,
    ) -> Result<Response<PbEndpoint>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let raw = req
            .endpoint
            .ok_or_else(|| ApiError::invalid("endpoint", "is required"))?;
        let (mut spec, given_secret) = endpoint_spec(&raw)?;
        if raw.signature_scheme == 0 && raw.signature_hash == 0 && raw.signature_encoding == 0 {
            // Nothing asked for: the project's default, if it has one.
            let defaults = self
                .store
                .project_defaults(&project)
                .await
                .map_err(ApiError::from_store("project"))?;
            if let Some(signature) = defaults.signature {
                spec.signature = signature;
            }
        }
        let (secret, generated) = match given_secret {
            Some(given) => (given, false),
            None => (Secret::generate(system::random_bytes()), true),
        };
        let endpoint = Endpoint::new(
            EndpointId::from_uuid(system::new_uuid()),
            project,
            spec,
            self.clock.now(),
        );
        if self.ping && !req.skip_ping_validation {
            self.ping(&endpoint, &secret).await?;
        }
        self.store
            .insert_endpoint(&endpoint, &secret)
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        self.engine.endpoint_changed(&endpoint.id);
        tracing::info!(endpoint = %endpoint.id, project = %endpoint.project_id, "endpoint created");
        let mut reply = endpoint_to_pb(&endpoint);
        if generated {
            reply.secret = secret.expose().to_owned();
        }
        Ok(Response::new(reply))
    }

    async fn get_endpoint(
        &self,
        request: Request<GetEndpointRequest>,
    ) -> Result<Response<PbEndpoint>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id = endpoint_id(&request.get_ref().id, "id")?;
        let endpoint = self
            .store
            .get_endpoint(&project, &id)
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        Ok(Response::new(endpoint_to_pb(&endpoint)))
    }

    async fn list_endpoints(
        &self,
        request: Request<ListEndpointsRequest>,
    ) -> Result<Response<ListEndpointsResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let size = PageSize::new(req.page_size).map_err(ApiError::field("page_size"))?;
        let filter = EndpointFilter {
            owner_id: OwnerId::parse(&req.owner_id).map_err(ApiError::field("owner_id"))?,
            status: status_from_pb(req.status, "status")?,
        };
        let filter_key = format!("owner={:?};status={:?}", filter.owner_id, filter.status);
        let after: Option<EndpointId> = cursor(&req.page_token, &filter_key)?;
        // One extra row tells whether another page follows.
        let rows = self
            .store
            .list_endpoints(&project, &filter, after.as_ref(), size.get() + 1)
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        let (page, next_page_token) = page(size, &filter_key, rows, |ep| ep.id.to_string());
        Ok(Response::new(ListEndpointsResponse {
            endpoints: page.iter().map(endpoint_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_endpoint(
        &self,
        request: Request<UpdateEndpointRequest>,
    ) -> Result<Response<PbEndpoint>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let raw = req
            .endpoint
            .ok_or_else(|| ApiError::invalid("endpoint", "is required"))?;
        let id = endpoint_id(&raw.id, "endpoint.id")?;
        let mut update = endpoint_update(&raw, req.update_mask.as_ref())?;
        let generated = update
            .regenerate_secret
            .then(|| Secret::generate(system::random_bytes()));
        let new_secret = update.patch.secret.take().or_else(|| generated.clone());
        let now = self.clock.now();
        if self.ping && !req.skip_ping_validation && update.patch.url.is_some() {
            // Ping the endpoint as it will be, when its URL changes.
            let current = self
                .store
                .get_endpoint(&project, &id)
                .await
                .map_err(ApiError::from_store("endpoint"))?;
            if update.patch.url.as_ref() != Some(&current.url) {
                let mut next = current.clone();
                next.apply(update.patch.clone(), now)
                    .map_err(|refused| match refused {
                        UpdateError::Transition(why) => {
                            ApiError::FailedPrecondition(why.to_string())
                        }
                        UpdateError::Invalid { field, message } => {
                            ApiError::invalid(field, message)
                        }
                    })?;
                let secret = match &new_secret {
                    Some(secret) => secret.clone(),
                    None => self
                        .store
                        .endpoint_secrets(&id, now)
                        .await
                        .map_err(ApiError::from_store("endpoint"))?
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| Secret::generate(system::random_bytes())),
                };
                self.ping(&next, &secret).await?;
            }
        }
        let endpoint = self
            .store
            .update_endpoint(&project, &id, new_secret.as_ref(), |endpoint| {
                endpoint.apply(update.patch.clone(), now)
            })
            .await
            .map_err(ApiError::from_store("endpoint"))?
            .map_err(|refused| match refused {
                UpdateError::Transition(why) => ApiError::FailedPrecondition(why.to_string()),
                UpdateError::Invalid { field, message } => ApiError::invalid(field, message),
            })?;
        self.engine.endpoint_changed(&endpoint.id);
        tracing::info!(endpoint = %endpoint.id, project = %endpoint.project_id, "endpoint updated");
        let mut reply = endpoint_to_pb(&endpoint);
        if let Some(generated) = generated {
            reply.secret = generated.expose().to_owned();
        }
        Ok(Response::new(reply))
    }

    async fn delete_endpoint(
        &self,
        request: Request<DeleteEndpointRequest>,
    ) -> Result<Response<DeleteEndpointResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id = endpoint_id(&request.get_ref().id, "id")?;
        self.store
            .delete_endpoint(&project, &id, self.clock.now())
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        self.engine.endpoint_changed(&id);
        tracing::info!(endpoint = %id, project = %project, "endpoint deleted");
        Ok(Response::new(DeleteEndpointResponse {}))
    }

    async fn rotate_endpoint_secret(
        &self,
        request: Request<RotateEndpointSecretRequest>,
    ) -> Result<Response<RotateEndpointSecretResponse>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let req = request.into_inner();
        let id = endpoint_id(&req.id, "id")?;
        let given = if req.secret.is_empty() {
            None
        } else {
            Some(Secret::parse(&req.secret).map_err(ApiError::field("secret"))?)
        };
        let now = self.clock.now();
        let current_until = self
            .rotation
            .current_until(req.expire_current_after_seconds, now)
            .map_err(ApiError::field("expire_current_after_seconds"))?;
        let generated = given.is_none();
        let secret = given.unwrap_or_else(|| Secret::generate(system::random_bytes()));
        self.store
            .rotate_secret(&project, &id, &secret, current_until, now, RotationPolicy::MAX_VALID)
            .await
            .map_err(ApiError::from_store("endpoint"))?
            .map_err(|valid| {
                ApiError::FailedPrecondition(format!(
                    "{valid} secrets are valid already (at most {}); wait for one to expire or rotate with expire_current_after_seconds = 0",
                    RotationPolicy::MAX_VALID
                ))
            })?;
        self.engine.endpoint_changed(&id);
        let endpoint = self
            .store
            .get_endpoint(&project, &id)
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        tracing::info!(endpoint = %id, project = %project, until = %current_until, "endpoint secret rotated");
        Ok(Response::new(RotateEndpointSecretResponse {
            endpoint: Some(endpoint_to_pb(&endpoint)),
            secret: if generated {
                secret.expose().to_owned()
            } else {
                String::new()
            },
            current_expires_at: Some(super::convert::timestamp(current_until)),
        }))
    }

    async fn activate_endpoint(
        &self,
        request: Request<ActivateEndpointRequest>,
    ) -> Result<Response<PbEndpoint>, Status> {
        let project = self.auth.project(request.metadata()).await?;
        let id = endpoint_id(&request.get_ref().id, "id")?;
        let now = self.clock.now();
        let endpoint = self
            .store
            .update_endpoint(&project, &id, None, |endpoint| endpoint.activate(now))
            .await
            .map_err(ApiError::from_store("endpoint"))?
            .map_err(|refused| ApiError::FailedPrecondition(refused.to_string()))?;
        self.store
            .reset_failures(&id)
            .await
            .map_err(ApiError::from_store("endpoint"))?;
        self.engine.endpoint_changed(&id);
        tracing::info!(endpoint = %id, project = %project, "endpoint activated by hand");
        Ok(Response::new(endpoint_to_pb(&endpoint)))
    }
}
