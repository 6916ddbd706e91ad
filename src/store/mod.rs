//! Persistence through SeaORM, on SQLite (embedded default) or PostgreSQL
//! (scale-out). The only module that knows SQL exists.

mod connect;
mod deliveries;
mod endpoints;
mod entities;
mod events;
mod meta;
mod projects;
mod rows;
#[cfg(test)]
mod tests;
mod watch;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

pub use connect::{DatabaseTarget, Durability};
pub use deliveries::{DeliveryFilter, DeliveryResult, ResultBatch, StatusChange};
pub use endpoints::{EndpointFilter, EndpointSnapshot};
pub use events::{EventFilter, NewDelivery, PublishRecord, Published};
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
    /// Worth retrying later: the database is unreachable, the pool is
    /// exhausted, or a lock could not be had in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sea_orm::DbErr),
    #[error("database error: {0}")]
    Database(#[source] sea_orm::DbErr),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(err: sea_orm::DbErr) -> Self {
        if is_transient(&err) {
            Self::Unavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

/// A raw statement written with `?` placeholders, numbered `$n` for
/// PostgreSQL.
pub(super) fn statement(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                } else {
                    numbered.push(c);
                }
            }
            numbered
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// JSON text of maps and lists of strings, for TEXT columns.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("maps and lists of strings always serialize")
}

/// Errors that say "not now" rather than "never".
fn is_transient(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                // SQLite BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT; PostgreSQL
                // serialization failure, deadlock, lock not available.
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "261" | "517" | "40001" | "40P01" | "55P03")
                ),
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Handle to the database; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite has one writer at a time, and its busy handler waits by
    /// sleeping (up to 100 ms a try): writers queue here instead, so commits
    /// follow each other without gaps. The lock also holds the delivery
    /// path's own connection (see [`rows::transact_sqlite`]). `None` on
    /// PostgreSQL.
    writes: Option<std::sync::Arc<tokio::sync::Mutex<rows::WriteConnection>>>,
    /// Bumped after every write through this handle: watchers in this
    /// process look at the change logs at once instead of at their next
    /// poll.
    written: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

/// Held for the length of a write; tells watchers when it ends.
struct WriteGuard<'a> {
    lock: Option<tokio::sync::MutexGuard<'a, rows::WriteConnection>>,
    written: &'a tokio::sync::watch::Sender<u64>,
}

impl WriteGuard<'_> {
    /// The delivery path's connection; `None` on PostgreSQL.
    fn connection(&mut self) -> Option<&mut rows::WriteConnection> {
        self.lock.as_deref_mut()
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    /// Connects; runs no migrations (see [`Store::migrate`]).
    pub async fn connect(target: &DatabaseTarget) -> Result<Self, StoreError> {
        let embedded = matches!(target, DatabaseTarget::Sqlite { .. });
        Ok(Self {
            db: connect::open(target).await?,
            writes: embedded.then(Default::default),
            written: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Brings the schema up to date. Safe to run from several processes at
    /// once on PostgreSQL: they take turns under an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        connect::migrate(&self.db).await
    }

    /// Held for the length of every write on SQLite (see `writes`).
    async fn write_lock(&self) -> WriteGuard<'_> {
        WriteGuard {
            lock: match &self.writes {
                Some(writes) => Some(writes.lock().await),
                None => None,
            },
            written: &self.written,
        }
    }

    /// Runs `statements` as one transaction on SQLite's write connection,
    /// under the write lock (see [`rows::transact_sqlite`]).
    async fn transact_sqlite(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<sea_orm::QueryResult>, StoreError> {
        let mut write = self.write_lock().await;
        let conn = write.connection().ok_or_else(|| {
            StoreError::Database(sea_orm::DbErr::Custom(
                "no write connection: not SQLite".into(),
            ))
        })?;
        Ok(rows::transact_sqlite(&self.db, conn, statements).await?)
    }

    /// Changes whenever a write through this handle (any clone of it) ends.
    pub fn writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Copies what the SQLite WAL holds back into the database file, beside
    /// the writer rather than in one of its commits (automatic checkpoints
    /// are off), and makes the WAL start over once it holds
    /// `WAL_RESTART_PAGES`.
    ///
    /// The WAL starts over only when a write begins with all of it copied.
    /// Under steady writes a passive checkpoint never sees that (commits
    /// land while it copies), so the WAL grew without bound: 1.4 GB in 20 s
    /// at 1,000 events/s. Past the limit a second passive checkpoint runs
    /// under the write lock: with no commit landing it copies the rest (the
    /// last few commits, so this is short), and the next commit starts the
    /// WAL over. Being passive, it never waits for readers, which would
    /// stall every writer; one that keeps old frames in use only puts the
    /// restart off to a later round. Returns the WAL's pages and how many
    /// are copied; `None` on PostgreSQL, which needs none of this.
    pub async fn checkpoint(&self) -> Result<Option<(i64, i64)>, StoreError> {
        /// 16 MiB of 4 KiB pages.
        const WAL_RESTART_PAGES: i64 = 4_096;
        if self.writes.is_none() {
            return Ok(None);
        }
        let run = |mode: &str| {
            let sql = format!("PRAGMA wal_checkpoint({mode})");
            async move {
                let row = self
                    .db
                    .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let pages: i64 = row.try_get_by_index(1)?;
                let copied: i64 = row.try_get_by_index(2)?;
                Ok::<_, StoreError>((pages, copied))
            }
        };
        let (pages, copied) = run("PASSIVE").await?;
        if pages > WAL_RESTART_PAGES {
            let _write = self.write_lock().await;
            return run("PASSIVE").await.map(Some);
        }
        Ok(Some((pages, copied)))
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(self) -> Result<(), StoreError> {
        // The write connection first: SQLite's last connection to close
        // checkpoints the WAL and removes it, and that is the pool's.
        if let Some(writes) = &self.writes {
            rows::close_sqlite(&mut *writes.lock().await).await?;
        }
        Ok(self.db.close().await?)
    }
}
