//! Persistence through SeaORM, on SQLite (embedded default) or PostgreSQL
//! (scale-out). The only module that knows SQL exists.

mod connect;
mod endpoints;
mod entities;
mod projects;
#[cfg(test)]
mod tests;

use sea_orm::DatabaseConnection;

pub use connect::{DatabaseTarget, Durability};
pub use endpoints::EndpointFilter;
pub use projects::{NewProject, ProjectSummary};

/// What can go wrong in the store, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The row changed between read and write more often than we retry.
    #[error("concurrent modification")]
    Conflict,
    /// A row that the store itself wrote cannot be read back into domain
    /// values: a bug or a hand-edited database.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

/// Handle to the database; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects; runs no migrations (see [`Store::migrate`]).
    pub async fn connect(target: &DatabaseTarget) -> Result<Self, StoreError> {
        Ok(Self {
            db: connect::open(target).await?,
        })
    }

    /// Brings the schema up to date. Safe to run from several processes at
    /// once on PostgreSQL: they take turns under an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        connect::migrate(&self.db).await
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(self) -> Result<(), StoreError> {
        Ok(self.db.close().await?)
    }
}
