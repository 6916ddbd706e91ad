//! Bearer API keys: which project a call acts for.

use tonic::metadata::MetadataMap;

use super::ApiError;
use crate::domain::ids::ProjectId;
use crate::domain::secret::ApiKey;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Authenticator {
    store: Store,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The project whose key is in `authorization: Bearer <key>`.
    pub async fn project(&self, metadata: &MetadataMap) -> Result<ProjectId, ApiError> {
        let key = bearer_token(metadata)?;
        self.store
            .project_for_key(&ApiKey::from_presented(key))
            .await
            .map_err(ApiError::from_store("project"))?
            .ok_or(ApiError::Unauthenticated("invalid API key"))
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
