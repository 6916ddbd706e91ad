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

impl Durability {
    /// As `--durability` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Relaxed => "relaxed",
        }
    }
}

/// Prepared statements kept per connection. Batched statements differ by
/// their row count, and a cached 1000-row INSERT is a large program: the
/// default of 100 let a busy SQLite connection pool grow by hundreds of MiB.
const STATEMENT_CACHE: usize = 24;

/// What a SQLite WAL file is cut back to after a checkpoint, in bytes.
const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long to wait for the database before giving up on a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
            // A local file cannot drop a connection: skip the ping that
            // would otherwise precede every acquire (a worker-thread round
            // trip each).
            options
                .max_connections(4)
                .test_before_acquire(false)
                .map_sqlx_sqlite_opts(move |o| {
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(synchronous)
                        // Checkpoints run beside the writer (`Store::
                        // checkpoint`), not inside whichever commit crosses
                        // 1,000 WAL pages while holding the write lock.
                        .pragma("wal_autocheckpoint", "0")
                        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
                        // A statement of many rows inside a transaction keeps
                        // a statement journal (to undo itself alone), which
                        // past 64 KiB went to a new file in /var/tmp: a
                        // file and thousands of pwrites per large commit.
                        .pragma("temp_store", "memory")
                        .busy_timeout(Duration::from_secs(5))
                        .foreign_keys(true)
                        .statement_cache_capacity(STATEMENT_CACHE)
                });
            options
        }
        DatabaseTarget::Postgres {
            url,
            schema,
            max_connections,
        } => {
            probe_postgres(url, schema.as_deref()).await?;
            let mut options = ConnectOptions::new(url.clone());
            options
                .max_connections(*max_connections)
                .map_sqlx_postgres_opts(|o| o.statement_cache_capacity(STATEMENT_CACHE));
            if let Some(schema) = schema {
                options.set_schema_search_path(schema.clone());
            }
            options
        }
    };
    let mut options = options;
    options
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging_level(log::LevelFilter::Debug);
    Ok(Database::connect(options).await?)
}

/// Connects once outside any pool, so an unreachable server or a bad
/// login is reported with its real cause (a pool only says it timed out),
/// and creates the schema before the pool's connections search it.
async fn probe_postgres(url: &str, schema: Option<&str>) -> Result<(), StoreError> {
    use sea_orm::sqlx::{Connection, Executor, postgres::PgConnection};
    let unavailable = |e: sea_orm::sqlx::Error| {
        StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
            e.into(),
        )))
    };
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url))
        .await
        .map_err(|_| unavailable(sea_orm::sqlx::Error::PoolTimedOut))?
        .map_err(unavailable)?;
    if let Some(schema) = schema {
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        conn.execute(sea_orm::sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted}"
        )))
        .await
        .map_err(|e| {
            StoreError::from(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
                e.into(),
            )))
        })?;
    }
    let _ = conn.close().await;
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
