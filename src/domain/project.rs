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
