//! Opening the pool and migrating, with each backend's settings.

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use super::StoreError;
use crate::migration::Migrator;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A SQLite file, created if missing.
    Sqlite {
        path: PathBuf,
        durability: Durability,
    },
    /// A PostgreSQL URL, optionally confined to one schema (created if
    /// missing), with a pool of `max_connections`.
    Postgres {
        url: String,
        schema: Option<String>,
        max_connections: u32,
    },
}

/// How hard a commit tries to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit (SQLite `synchronous=FULL`).
    #[default]
    Full,
    /// SQLite `synchronous=NORMAL` in WAL mode: a power cut may lose the last
    /// commits, a process crash cannot.
    Relaxed,
}

/// Arbitrary, stable key for `pg_advisory_xact_lock` around migrations.
const MIGRATION_LOCK_KEY: i64 = 0x686f_6f6b_645f_6d67; // "hookd_mg"

pub(super) async fn open(target: &DatabaseTarget) -> Result<DatabaseConnection, StoreError> {
    let options = match target {
        DatabaseTarget::Sqlite { path, durability } => {
            let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
            let synchronous = match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Relaxed => SqliteSynchronous::Normal,
            };
            options.max_connections(8).map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
            options
        }
        DatabaseTarget::Postgres {
            url,
            schema,
            max_connections,
        } => {
            if let Some(schema) = schema {
                create_schema(url, schema).await?;
            }
            let mut options = ConnectOptions::new(url.clone());
            options.max_connections(*max_connections);
            if let Some(schema) = schema {
                options.set_schema_search_path(schema.clone());
            }
            options
        }
    };
    let mut options = options;
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    Ok(Database::connect(options).await?)
}

/// Creates the schema through a short-lived connection, before the pool's
/// connections set it as their search path.
async fn create_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    let db = Database::connect(options).await?;
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
        .await?;
    db.close().await?;
    Ok(())
}

pub(super) async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    if db.get_database_backend() == DbBackend::Postgres {
        // Hold a transaction-scoped advisory lock on one pooled connection
        // while the migrator works on others; concurrent starters queue here
        // and then find nothing left to do.
        let guard = db.begin().await?;
        guard
            .execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await?;
        let result = Migrator::up(db, None).await;
        guard.commit().await?;
        result?;
    } else {
        Migrator::up(db, None).await?;
    }
    Ok(())
}
