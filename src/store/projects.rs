//! Projects and API keys.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use super::entities::{api_key, project};
use super::{Store, StoreError};
use crate::domain::ids::{ApiKeyId, ProjectId};
use crate::domain::meta::MetaSettings;
use crate::domain::project::{Project, ProjectDefaults, ProjectName};
use crate::domain::retry::RetryPolicy;
use crate::domain::secret::ApiKey;
use crate::domain::signature::{
    HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme,
};
use crate::domain::time::Timestamp;

/// Everything needed to create a project with its first key.
pub struct NewProject {
    pub project: Project,
    pub key_id: ApiKeyId,
    pub key: ApiKey,
}

/// A project as `hookd project list` shows it.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    pub project: Project,
    pub key_prefixes: Vec<String>,
}

impl Store {
    pub async fn create_project(&self, new: NewProject) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let NewProject {
            project,
            key_id,
            key,
        } = new;
        let at = project.created_at;
        let txn = self.db.begin().await?;
        project::Entity::insert(project::ActiveModel {
            id: Set(project.id.to_string()),
            name: Set(project.name.as_str().to_owned()),
            created_at: Set(at.unix_micros()),
            updated_at: Set(at.unix_micros()),
            breaker_failures: Set(None),
            meta_enabled: Set(false),
            meta_url: Set(None),
            meta_secret: Set(None),
            meta_types: Set("[]".to_owned()),
            retry_max_attempts: Set(None),
            retry_initial_delay_ms: Set(None),
            retry_max_delay_ms: Set(None),
            signature_scheme: Set(None),
            signature_hash: Set(None),
            signature_encoding: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        insert_key(&txn, &project.id, key_id, &key, at).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectSummary>, StoreError> {
        let projects = project::Entity::find()
            .order_by_asc(project::Column::Id)
            .all(&self.db)
            .await?;
        let keys = api_key::Entity::find()
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?;
        projects
            .into_iter()
            .map(|row| {
                let key_prefixes = keys
                    .iter()
                    .filter(|k| k.project_id == row.id)
                    .map(|k| k.display_prefix.clone())
                    .collect();
                Ok(ProjectSummary {
                    project: project_from_row(row)?,
                    key_prefixes,
                })
            })
            .collect()
    }

    /// Replaces every key of the project with `key`, atomically: the old keys
    /// stop working at the commit.
    pub async fn rotate_project_key(
        &self,
        project_id: &ProjectId,
        key_id: ApiKeyId,
        key: &ApiKey,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        // Write first: a SQLite transaction that reads before writing cannot
        // take the write lock if another writer committed in between.
        api_key::Entity::delete_many()
            .filter(api_key::Column::ProjectId.eq(project_id.as_str()))
            .exec(&txn)
            .await?;
        let exists = project::Entity::find_by_id(project_id.to_string())
            .count(&txn)
            .await?;
        if exists == 0 {
            return Err(StoreError::NotFound);
        }
        insert_key(&txn, project_id, key_id, key, now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Sets the project's circuit-breaker threshold (`None`: the server's).
    pub async fn set_breaker_failures(
        &self,
        project_id: &ProjectId,
        failures: Option<u32>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let updated = project::Entity::update_many()
            .col_expr(
                project::Column::BreakerFailures,
                sea_orm::sea_query::Expr::value(
                    failures.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                ),
            )
            .col_expr(
                project::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now.unix_micros()),
            )
            .filter(project::Column::Id.eq(project_id.as_str()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The project a presented key belongs to, if any.
    pub async fn project_for_key(&self, key: &ApiKey) -> Result<Option<ProjectId>, StoreError> {
        let row = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(key.hash().as_str()))
            .one(&self.db)
            .await?;
        row.map(|row| {
            row.project_id.parse().map_err(|e| StoreError::Corrupt {
                table: "api_keys",
                detail: format!("project_id: {e}"),
            })
        })
        .transpose()
    }
}

async fn insert_key(
    txn: &sea_orm::DatabaseTransaction,
    project_id: &ProjectId,
    key_id: ApiKeyId,
    key: &ApiKey,
    at: Timestamp,
) -> Result<(), StoreError> {
    api_key::Entity::insert(api_key::ActiveModel {
        id: Set(key_id.to_string()),
        project_id: Set(project_id.to_string()),
        key_hash: Set(key.hash().as_str().to_owned()),
        display_prefix: Set(key.display_prefix()),
        created_at: Set(at.unix_micros()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

fn project_from_row(row: project::Model) -> Result<Project, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "projects",
        detail,
    };
    Ok(Project {
        id: row.id.parse().map_err(|e| corrupt(format!("id: {e}")))?,
        name: ProjectName::parse(&row.name).map_err(|e| corrupt(format!("name: {e}")))?,
        created_at: Timestamp::from_unix_micros(row.created_at),
    })
}

impl Store {
    /// The project with all its settings, from one read.
    pub async fn project_settings(
        &self,
        id: &ProjectId,
    ) -> Result<(Project, MetaSettings, ProjectDefaults), StoreError> {
        let row = project::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        let meta = super::meta::settings_from_row(&row)?;
        let defaults = defaults_from_row(&row)?;
        Ok((project_from_row(row)?, meta, defaults))
    }

    /// The retry policy and signature default the project set, if any.
    pub async fn project_defaults(&self, id: &ProjectId) -> Result<ProjectDefaults, StoreError> {
        let row = project::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        defaults_from_row(&row)
    }

    /// Replaces the project's retry policy and signature default.
    pub async fn set_project_defaults(
        &self,
        id: &ProjectId,
        defaults: &ProjectDefaults,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        use sea_orm::sea_query::Expr;
        let _write = self.write_lock().await;
        let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let retry = defaults.retry.as_ref();
        let signature = defaults.signature.as_ref();
        let updated = project::Entity::update_many()
            .col_expr(
                project::Column::RetryMaxAttempts,
                Expr::value(retry.map(|r| r.max_attempts() as i32)),
            )
            .col_expr(
                project::Column::RetryInitialDelayMs,
                Expr::value(retry.map(|r| millis(r.initial()))),
            )
            .col_expr(
                project::Column::RetryMaxDelayMs,
                Expr::value(retry.map(|r| millis(r.max_delay()))),
            )
            .col_expr(
                project::Column::SignatureScheme,
                Expr::value(signature.map(|s| s.scheme().as_str())),
            )
            .col_expr(
                project::Column::SignatureHash,
                Expr::value(signature.map(|s| s.hash().as_str())),
            )
            .col_expr(
                project::Column::SignatureEncoding,
                Expr::value(signature.map(|s| s.encoding().as_str())),
            )
            .col_expr(project::Column::UpdatedAt, Expr::value(now.unix_micros()))
            .filter(project::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

pub(super) fn defaults_from_row(row: &project::Model) -> Result<ProjectDefaults, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "projects",
        detail: format!("{} {field}: {detail}", row.id),
    };
    let ms = |v: i64| std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let retry = match (
        row.retry_max_attempts,
        row.retry_initial_delay_ms,
        row.retry_max_delay_ms,
    ) {
        (Some(max), Some(initial), Some(max_delay)) => Some(
            RetryPolicy::with_backoff(u32::try_from(max).unwrap_or(0), ms(initial), ms(max_delay))
                .map_err(|e| corrupt("retry", e.0))?,
        ),
        _ => None,
    };
    let signature = match (
        row.signature_scheme.as_deref(),
        row.signature_hash.as_deref(),
        row.signature_encoding.as_deref(),
    ) {
        (Some(scheme), Some(hash), Some(encoding)) => {
            let scheme = SignatureScheme::from_stored(scheme)
                .ok_or_else(|| corrupt("signature_scheme", scheme.to_owned()))?;
            let hash = HashAlgorithm::from_stored(hash)
                .ok_or_else(|| corrupt("signature_hash", hash.to_owned()))?;
            let encoding = SignatureEncoding::from_stored(encoding)
                .ok_or_else(|| corrupt("signature_encoding", encoding.to_owned()))?;
            Some(
                SignatureConfig::new(scheme, hash, encoding)
                    .map_err(|e| corrupt("signature", e.0))?,
            )
        }
        _ => None,
    };
    Ok(ProjectDefaults { retry, signature })
}
