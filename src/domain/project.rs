//! Projects: the tenants. Everything an API key can reach belongs to one.

use super::Invalid;
use super::ids::ProjectId;
use super::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: ProjectName,
    pub created_at: Timestamp,
}

/// 1 to 256 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("is required"));
        }
        if name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "must be at most 256 characters without control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a project sets for itself instead of the server's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectDefaults {
    /// Retries of its deliveries and meta events.
    pub retry: Option<super::retry::RetryPolicy>,
    /// How its new endpoints sign when the request does not say.
    pub signature: Option<super::signature::SignatureConfig>,
}
