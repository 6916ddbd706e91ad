//! Bearer API keys: which project a call acts for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use super::ApiError;
use crate::domain::ids::ProjectId;
use crate::domain::secret::ApiKey;
use crate::store::Store;

/// How long a verified key is trusted without asking the database again.
/// A key rotated by another process (`hookd project rotate-key`) keeps
/// working here for at most this long.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Verified keys remembered at most; beyond it, expired ones are dropped.
const KEY_CACHE_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Authenticator {
    store: Store,
    /// Key hash → project, with when it was checked. Only keys that were
    /// found are remembered, so guessing keys always reaches the database.
    verified: Arc<RwLock<HashMap<String, (Instant, ProjectId)>>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            verified: Arc::default(),
        }
    }

    /// The project whose key is in `authorization: Bearer <key>`.
    pub async fn project(&self, metadata: &MetadataMap) -> Result<ProjectId, ApiError> {
        let key = ApiKey::from_presented(bearer_token(metadata)?);
        let hash = key.hash();
        if let Some((checked, project)) = self.read().get(hash.as_str())
            && checked.elapsed() < KEY_CACHE_TTL
        {
            return Ok(project.clone());
        }
        let project = self
            .store
            .project_for_key(&key)
            .await
            .map_err(ApiError::from_store("project"))?
            .ok_or(ApiError::Unauthenticated("invalid API key"))?;
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= KEY_CACHE_MAX {
            verified.retain(|_, (checked, _)| checked.elapsed() < KEY_CACHE_TTL);
        }
        verified.insert(hash.as_str().to_owned(), (Instant::now(), project.clone()));
        Ok(project)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, (Instant, ProjectId)>> {
        self.verified.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn bearer_token(metadata: &MetadataMap) -> Result<&str, ApiError> {
    let missing = ApiError::Unauthenticated("missing `authorization: Bearer <api key>` metadata");
    let value = metadata.get("authorization").ok_or(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("authorization metadata is not text"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthenticated(
        "authorization must be `Bearer <api key>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthenticated(
            "authorization must be `Bearer <api key>`",
        ));
    }
    Ok(token.trim())
}
