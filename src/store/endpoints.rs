//! Endpoints and their signing secrets.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::entities::{endpoint, endpoint_secret, project};
use super::meta::record_meta_event;
use super::{Store, StoreError};
use crate::domain::endpoint::{Endpoint, EndpointStatus};
use crate::domain::fields::{
    ContentType, CustomHeaders, Description, EndpointName, EndpointUrl, EventTypeFilter, OwnerId,
    RateLimit, TimeoutSeconds,
};
use crate::domain::ids::{EndpointId, ProjectId};
use crate::domain::meta::{MetaEventType, endpoint_payload};
use crate::domain::secret::{Secret, SecretVersion};
use crate::domain::signature::{
    HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme,
};
use crate::domain::time::Timestamp;

/// How often an update re-reads and re-applies after losing a race.
const UPDATE_ATTEMPTS: usize = 5;

/// Which endpoints a list call wants.
#[derive(Debug, Clone, Default)]
pub struct EndpointFilter {
    pub owner_id: Option<OwnerId>,
    pub status: Option<EndpointStatus>,
}

/// What the delivery engine needs to send to an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointSnapshot {
    pub endpoint: Endpoint,
    /// Every stored secret, newest first.
    pub secrets: Vec<SecretVersion>,
    /// The project's own retry policy, if it set one.
    pub retry: Option<crate::domain::retry::RetryPolicy>,
}

impl Store {
    pub async fn insert_endpoint(
        &self,
        endpoint: &Endpoint,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        endpoint::Entity::insert(to_row(endpoint))
            .exec_without_returning(&txn)
            .await?;
        insert_secret(&txn, &endpoint.id, secret, endpoint.created_at).await?;
        record_meta_event(
            &txn,
            &endpoint.project_id,
            MetaEventType::EndpointCreated,
            || endpoint_payload(MetaEventType::EndpointCreated, endpoint),
            endpoint.created_at,
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn get_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
    ) -> Result<Endpoint, StoreError> {
        let row = endpoint::Entity::find_by_id(id.as_str())
            .filter(endpoint::Column::ProjectId.eq(project.as_str()))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        from_row(row)
    }

    /// Up to `limit` endpoints after `after` in id order (creation order).
    pub async fn list_endpoints(
        &self,
        project: &ProjectId,
        filter: &EndpointFilter,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let mut condition = Condition::all().add(endpoint::Column::ProjectId.eq(project.as_str()));
        if let Some(owner) = &filter.owner_id {
            condition = condition.add(endpoint::Column::OwnerId.eq(owner.as_str()));
        }
        if let Some(status) = filter.status {
            condition = condition.add(endpoint::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            condition = condition.add(endpoint::Column::Id.gt(after.as_str()));
        }
        endpoint::Entity::find()
            .filter(condition)
            .order_by_asc(endpoint::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(from_row)
            .collect()
    }

    /// Reads the endpoint, lets `change` modify it, and writes it back only
    /// if nobody else wrote in between (re-reading and re-applying if they
    /// did). `new_secret` replaces every secret of the endpoint in the same
    /// transaction. `change` refusing leaves everything as it was.
    pub async fn update_endpoint<E>(
        &self,
        project: &ProjectId,
        id: &EndpointId,
        new_secret: Option<&Secret>,
        mut change: impl FnMut(&mut Endpoint) -> Result<(), E>,
    ) -> Result<Result<Endpoint, E>, StoreError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let mut endpoint = self.get_endpoint(project, id).await?;
            let read_revision = endpoint.revision;
            if let Err(refused) = change(&mut endpoint) {
                return Ok(Err(refused));
            }
            endpoint.revision = read_revision + 1;
            let _write = self.write_lock().await;
            let txn = self.db.begin().await?;
            let written = endpoint::Entity::update_many()
                .set(to_row(&endpoint))
                .filter(endpoint::Column::Id.eq(id.as_str()))
                .filter(endpoint::Column::ProjectId.eq(project.as_str()))
                .filter(endpoint::Column::Revision.eq(read_revision))
                .exec(&txn)
                .await?;
            if written.rows_affected == 0 {
                txn.rollback().await?;
                continue;
            }
            if let Some(secret) = new_secret {
                endpoint_secret::Entity::delete_many()
                    .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
                    .exec(&txn)
                    .await?;
                insert_secret(&txn, id, secret, endpoint.updated_at).await?;
            }
            record_meta_event(
                &txn,
                project,
                MetaEventType::EndpointUpdated,
                || endpoint_payload(MetaEventType::EndpointUpdated, &endpoint),
                endpoint.updated_at,
            )
            .await?;
            txn.commit().await?;
            return Ok(Ok(endpoint));
        }
        Err(StoreError::Conflict)
    }

    /// Deletes the endpoint and, through the foreign key, its secrets.
    pub async fn delete_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        let row = endpoint::Entity::find_by_id(id.as_str())
            .filter(endpoint::Column::ProjectId.eq(project.as_str()))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut last = from_row(row)?;
        let deleted = endpoint::Entity::delete_many()
            .filter(endpoint::Column::Id.eq(id.as_str()))
            .filter(endpoint::Column::ProjectId.eq(project.as_str()))
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        last.updated_at = now;
        record_meta_event(
            &txn,
            project,
            MetaEventType::EndpointDeleted,
            || endpoint_payload(MetaEventType::EndpointDeleted, &last),
            now,
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// An endpoint by id alone, with every stored secret (newest first), for
    /// the delivery engine. `None` once it is deleted.
    pub async fn endpoint_snapshot(
        &self,
        id: &EndpointId,
    ) -> Result<Option<EndpointSnapshot>, StoreError> {
        let Some(row) = endpoint::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let endpoint = from_row(row)?;
        let secrets = endpoint_secret::Entity::find()
            .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
            .order_by_desc(endpoint_secret::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                Ok(SecretVersion {
                    secret: Secret::parse(&row.secret).map_err(|e| StoreError::Corrupt {
                        table: "endpoint_secrets",
                        detail: format!("secret of {}: {e}", row.endpoint_id),
                    })?,
                    expires_at: row.expires_at.map(Timestamp::from_unix_micros),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let retry = match project::Entity::find_by_id(endpoint.project_id.as_str())
            .one(&self.db)
            .await?
        {
            Some(row) => super::projects::defaults_from_row(&row)?.retry,
            None => None,
        };
        Ok(Some(EndpointSnapshot {
            endpoint,
            secrets,
            retry,
        }))
    }

    /// Adds `new` as the endpoint's newest secret; the secrets valid at `now`
    /// stop signing at `current_until` (or sooner, if they already expire
    /// sooner). Secrets that no longer sign are deleted. `Ok(Err(n))`: `n`
    /// secrets would stay valid beside the new one, making more than
    /// `max_valid`.
    pub async fn rotate_secret(
        &self,
        project: &ProjectId,
        id: &EndpointId,
        new: &Secret,
        current_until: Timestamp,
        now: Timestamp,
        max_valid: usize,
    ) -> Result<Result<(), usize>, StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        let owned = endpoint::Entity::find_by_id(id.as_str())
            .filter(endpoint::Column::ProjectId.eq(project.as_str()))
            .one(&txn)
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        let valid_now = Condition::any()
            .add(endpoint_secret::Column::ExpiresAt.is_null())
            .add(endpoint_secret::Column::ExpiresAt.gt(now.unix_micros()));
        let valid = endpoint_secret::Entity::find()
            .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
            .filter(valid_now.clone())
            .count(&txn)
            .await? as usize;
        // Expiring the current secrets now leaves only the new one.
        let still_valid = if current_until > now { valid } else { 0 };
        if still_valid + 1 > max_valid {
            return Ok(Err(valid));
        }
        endpoint_secret::Entity::delete_many()
            .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
            .filter(endpoint_secret::Column::ExpiresAt.lte(now.unix_micros()))
            .exec(&txn)
            .await?;
        endpoint_secret::Entity::update_many()
            .col_expr(
                endpoint_secret::Column::ExpiresAt,
                sea_orm::sea_query::Expr::value(current_until.unix_micros()),
            )
            .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
            .filter(
                Condition::any()
                    .add(endpoint_secret::Column::ExpiresAt.is_null())
                    .add(endpoint_secret::Column::ExpiresAt.gt(current_until.unix_micros())),
            )
            .exec(&txn)
            .await?;
        insert_secret(&txn, id, new, now).await?;
        txn.commit().await?;
        Ok(Ok(()))
    }

    /// Forgets the endpoint's failed attempts (after an operator activates
    /// it, so the breaker does not trip again on the next failure).
    pub async fn reset_failures(&self, id: &EndpointId) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        endpoint::Entity::update_many()
            .col_expr(
                endpoint::Column::ConsecutiveFailures,
                sea_orm::sea_query::Expr::value(0),
            )
            .filter(endpoint::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The endpoint's secrets that are valid at `now`, newest first.
    pub async fn endpoint_secrets(
        &self,
        id: &EndpointId,
        now: Timestamp,
    ) -> Result<Vec<Secret>, StoreError> {
        endpoint_secret::Entity::find()
            .filter(endpoint_secret::Column::EndpointId.eq(id.as_str()))
            .filter(
                Condition::any()
                    .add(endpoint_secret::Column::ExpiresAt.is_null())
                    .add(endpoint_secret::Column::ExpiresAt.gt(now.unix_micros())),
            )
            .order_by_desc(endpoint_secret::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                Secret::parse(&row.secret).map_err(|e| StoreError::Corrupt {
                    table: "endpoint_secrets",
                    detail: format!("secret of {}: {e}", row.endpoint_id),
                })
            })
            .collect()
    }
}

async fn insert_secret(
    txn: &DatabaseTransaction,
    endpoint: &EndpointId,
    secret: &Secret,
    at: Timestamp,
) -> Result<(), StoreError> {
    endpoint_secret::Entity::insert(endpoint_secret::ActiveModel {
        endpoint_id: Set(endpoint.to_string()),
        secret: Set(secret.expose().to_owned()),
        created_at: Set(at.unix_micros()),
        expires_at: Set(None),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

fn to_row(ep: &Endpoint) -> endpoint::ActiveModel {
    let (rate_count, rate_period) = ep
        .rate_limit
        .map_or((0, 0), |r| (r.count(), r.period_seconds()));
    let event_types: Vec<&str> = ep
        .event_types
        .as_slice()
        .iter()
        .map(|t| t.as_str())
        .collect();
    endpoint::ActiveModel {
        id: Set(ep.id.to_string()),
        project_id: Set(ep.project_id.to_string()),
        name: Set(ep.name.as_str().to_owned()),
        url: Set(ep.url.as_str().to_owned()),
        headers: Set(super::json_text(ep.headers.as_map())),
        timeout_seconds: Set(ep.timeout.get() as i32),
        status: Set(ep.status.as_str().to_owned()),
        paused_at: Set(ep.paused_at.map(Timestamp::unix_micros)),
        status_changed_at: Set(ep.status_changed_at.unix_micros()),
        created_at: Set(ep.created_at.unix_micros()),
        updated_at: Set(ep.updated_at.unix_micros()),
        owner_id: Set(ep.owner_id.as_ref().map(|o| o.as_str().to_owned())),
        description: Set(ep.description.as_str().to_owned()),
        content_type: Set(ep.content_type.as_str().to_owned()),
        rate_limit_count: Set(rate_count as i32),
        rate_limit_period_seconds: Set(rate_period as i32),
        event_types: Set(super::json_text(&event_types)),
        revision: Set(ep.revision),
        consecutive_failures: sea_orm::ActiveValue::NotSet,
        alert_url: Set(ep.alert_url.as_ref().map(|u| u.as_str().to_owned())),
        signature_scheme: Set(ep.signature.scheme().as_str().to_owned()),
        signature_hash: Set(ep.signature.hash().as_str().to_owned()),
        signature_encoding: Set(ep.signature.encoding().as_str().to_owned()),
    }
}

/// Rebuilds the domain value, re-checking every rule: a row that breaks one
/// was not written by this code and is reported, not served.
fn from_row(row: endpoint::Model) -> Result<Endpoint, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "endpoints",
        detail: format!("{} {field}: {detail}", row.id),
    };
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&row.headers).map_err(|e| corrupt("headers", e.to_string()))?;
    let event_types: Vec<String> = serde_json::from_str(&row.event_types)
        .map_err(|e| corrupt("event_types", e.to_string()))?;
    Ok(Endpoint {
        id: row.id.parse().map_err(|e| corrupt("id", format!("{e}")))?,
        project_id: row
            .project_id
            .parse()
            .map_err(|e| corrupt("project_id", format!("{e}")))?,
        name: EndpointName::parse(&row.name).map_err(|e| corrupt("name", e.0))?,
        url: EndpointUrl::parse(&row.url).map_err(|e| corrupt("url", e.0))?,
        headers: CustomHeaders::parse(&headers).map_err(|e| corrupt("headers", e.0))?,
        timeout: u32::try_from(row.timeout_seconds)
            .ok()
            .and_then(|t| TimeoutSeconds::new(t).ok())
            .ok_or_else(|| corrupt("timeout_seconds", row.timeout_seconds.to_string()))?,
        status: EndpointStatus::from_stored(&row.status)
            .ok_or_else(|| corrupt("status", row.status.clone()))?,
        paused_at: row.paused_at.map(Timestamp::from_unix_micros),
        status_changed_at: Timestamp::from_unix_micros(row.status_changed_at),
        created_at: Timestamp::from_unix_micros(row.created_at),
        updated_at: Timestamp::from_unix_micros(row.updated_at),
        owner_id: OwnerId::parse(row.owner_id.as_deref().unwrap_or_default())
            .map_err(|e| corrupt("owner_id", e.0))?,
        description: Description::parse(&row.description)
            .map_err(|e| corrupt("description", e.0))?,
        content_type: ContentType::parse(&row.content_type)
            .map_err(|e| corrupt("content_type", e.0))?,
        rate_limit: RateLimit::new(
            u32::try_from(row.rate_limit_count).unwrap_or(u32::MAX),
            u32::try_from(row.rate_limit_period_seconds).unwrap_or(u32::MAX),
        )
        .map_err(|e| corrupt("rate_limit", e.0))?,
        event_types: EventTypeFilter::parse(&event_types)
            .map_err(|e| corrupt("event_types", e.0))?,
        signature: SignatureConfig::new(
            SignatureScheme::from_stored(&row.signature_scheme)
                .ok_or_else(|| corrupt("signature_scheme", row.signature_scheme.clone()))?,
            HashAlgorithm::from_stored(&row.signature_hash)
                .ok_or_else(|| corrupt("signature_hash", row.signature_hash.clone()))?,
            SignatureEncoding::from_stored(&row.signature_encoding)
                .ok_or_else(|| corrupt("signature_encoding", row.signature_encoding.clone()))?,
        )
        .map_err(|e| corrupt("signature", e.0))?,
        alert_url: row
            .alert_url
            .as_deref()
            .map(EndpointUrl::parse)
            .transpose()
            .map_err(|e| corrupt("alert_url", e.0))?,
        revision: row.revision,
    })
}
