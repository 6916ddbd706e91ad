//! The change logs that watchers tail: reading them in commit order from a
//! cursor, their heads, and pruning them after the retention period.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::deliveries::attempt_from_row;
use super::entities::{delivery_attempt, delivery_change, log_position};
use super::{Store, StoreError, statement};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::fields::EventType;
use crate::domain::ids::ProjectId;
use crate::domain::time::Timestamp;
use crate::domain::watch::{Cursor, DeliveryChange, LogPage, WatchFilter};

/// `log_positions` row: everything at or before it may have been pruned.
const DELIVERY_CHANGES_PRUNED: &str = "delivery_changes.pruned";

/// Rows deleted per pruning statement, so a large backlog of old rows never
/// holds the write lock for long.
const PRUNE_CHUNK: u64 = 5_000;

/// Only rows every reader can see and that no later commit can precede:
/// on PostgreSQL, those of transactions older than every running one.
pub(super) fn settled(backend: DbBackend) -> Condition {
    match backend {
        DbBackend::Postgres => Condition::all().add(Expr::cust(
            "txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        )),
        _ => Condition::all(),
    }
}

/// Rows after `cursor` in `(txid, seq)` order. PostgreSQL scans a row-value
/// comparison as a range of the `(project_id, txid, seq)` index. SQLite
/// would not use a row value for a range, but there `txid` is always 0, so
/// the range is `txid = 0 AND seq > s`: a range of `delivery_changes`'
/// rowid (or of the meta-event log's `(project_id, txid, seq)` index).
pub(super) fn after(
    backend: DbBackend,
    txid: impl ColumnTrait,
    seq: impl ColumnTrait,
    cursor: Cursor,
) -> Condition {
    match backend {
        DbBackend::Postgres => Condition::all().add(
            Expr::tuple([
                Expr::col(txid.as_column_ref()),
                Expr::col(seq.as_column_ref()),
            ])
            .gt(Expr::tuple([Expr::val(cursor.txid), Expr::val(cursor.seq)])),
        ),
        _ => Condition::all()
            .add(txid.eq(cursor.txid))
            .add(seq.gt(cursor.seq)),
    }
}

/// On SQLite, the most `seq`s one read of `delivery_changes` looks through.
/// A reader's work is then the whole log's growth, not its project's share:
/// each watch stream and each meta-enabled project reads every change once.
/// That log has no per-project index there (a rowid range is filtered by
/// project), so this bounds a read's work however far behind its reader is.
const SCAN_WINDOW: i64 = 20_000;

/// How far one read of `delivery_changes` after a cursor may look, on
/// SQLite: to `through`, which is short of the log's newest change when
/// `short`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScanBound {
    pub(super) through: Cursor,
    pub(super) short: bool,
}

/// The bound of a read after `cursor` through `db`; `None` on PostgreSQL,
/// where the `(project_id, txid, seq)` index bounds a project's read.
pub(super) async fn change_scan_bound(
    db: &impl ConnectionTrait,
    cursor: Cursor,
) -> Result<Option<ScanBound>, StoreError> {
    if db.get_database_backend() == DbBackend::Postgres {
        return Ok(None);
    }
    let newest = newest_change_seq(db).await?;
    let end = Ord::max(
        Ord::min(cursor.seq.saturating_add(SCAN_WINDOW), newest),
        cursor.seq,
    );
    Ok(Some(ScanBound {
        through: Cursor {
            txid: cursor.txid,
            seq: end,
        },
        short: end < newest,
    }))
}

/// On SQLite, the newest `seq` in `delivery_changes` (its rowid: one probe),
/// or 0.
async fn newest_change_seq(db: &impl ConnectionTrait) -> Result<i64, StoreError> {
    use delivery_change::Column;
    let newest: Option<Option<i64>> = delivery_change::Entity::find()
        .select_only()
        .column_as(Column::Seq.max(), "newest")
        .into_tuple()
        .one(db)
        .await?;
    Ok(newest.flatten().unwrap_or(0))
}

/// On PostgreSQL, a cursor after every settled change and before every
/// change still to settle: `(xmin − 1, MAX)`, xmin being the oldest
/// transaction still running. Every row of an older transaction is visible
/// to a statement that starts after this one, so a later read of a
/// project's changes after some cursor that took fewer than it could has
/// looked through to here. `None` on SQLite.
pub(super) async fn settled_horizon(
    db: &impl ConnectionTrait,
) -> Result<Option<Cursor>, StoreError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let xmin = db
        .query_one_raw(statement(
            DbBackend::Postgres,
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin",
            vec![],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "xmin"))
        .transpose()?
        .unwrap_or(0);
    Ok(Some(Cursor {
        txid: xmin - 1,
        seq: i64::MAX,
    }))
}

/// `project`'s changes after `cursor`, as far as `bound` lets a read look.
pub(super) fn changes_after(
    backend: DbBackend,
    project: &ProjectId,
    cursor: Cursor,
    bound: Option<ScanBound>,
) -> Condition {
    use delivery_change::Column;
    let condition = Condition::all()
        .add(Column::ProjectId.eq(project.as_str()))
        .add(after(backend, Column::Txid, Column::Seq, cursor))
        .add(settled(backend));
    match bound {
        Some(bound) => condition.add(Column::Seq.lte(bound.through.seq)),
        None => condition,
    }
}

/// What a read after `cursor` within `bound` that found `items` (up to
/// `limit`) covered: past its last item to the bound's end when it found
/// fewer than it could take.
pub(super) fn change_page<T>(
    items: Vec<T>,
    cursor: Cursor,
    limit: u32,
    bound: Option<ScanBound>,
    at: impl Fn(&T) -> Cursor,
) -> LogPage<T> {
    let mut page = LogPage::to_last(items, cursor, limit, at);
    if let Some(bound) = bound.filter(|_| !page.more) {
        page.through = bound.through;
        page.more = bound.short;
    }
    page
}

/// `select` in the log's commit order: `(txid, seq)` on PostgreSQL, `seq`
/// (the rowid, so a scan needs no sort) on SQLite, where `txid` is 0.
pub(super) fn in_log_order<E: EntityTrait>(
    select: sea_orm::Select<E>,
    backend: DbBackend,
    txid: E::Column,
    seq: E::Column,
) -> sea_orm::Select<E> {
    match backend {
        DbBackend::Postgres => select.order_by_asc(txid).order_by_asc(seq),
        _ => select.order_by_asc(seq),
    }
}

impl Store {
    /// The project's delivery changes after `cursor`, oldest first, up to
    /// `limit`, each with the attempt that caused it. On SQLite one read
    /// looks through at most `SCAN_WINDOW` changes of all projects, and the
    /// page's `through` moves past those that matched nothing.
    pub async fn delivery_changes(
        &self,
        project: &ProjectId,
        cursor: Cursor,
        filter: &WatchFilter,
        limit: u32,
    ) -> Result<LogPage<DeliveryChange>, StoreError> {
        use delivery_change::Column;
        let backend = self.db.get_database_backend();
        let bound = change_scan_bound(&self.db, cursor).await?;
        let mut condition = changes_after(backend, project, cursor, bound);
        if !filter.endpoint_ids.is_empty() {
            condition = condition
                .add(Column::EndpointId.is_in(filter.endpoint_ids.iter().map(|e| e.as_str())));
        }
        if let Some(event) = &filter.event_id {
            condition = condition.add(Column::EventId.eq(event.as_str()));
        }
        if !filter.event_types.is_empty() {
            condition = condition
                .add(Column::EventType.is_in(filter.event_types.iter().map(EventType::as_str)));
        }
        if !filter.statuses.is_empty() {
            condition =
                condition.add(Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
        }
        let rows = in_log_order(
            delivery_change::Entity::find().filter(condition),
            backend,
            Column::Txid,
            Column::Seq,
        )
        .limit(u64::from(limit))
        .all(&self.db)
        .await?;

        let changes = rows
            .into_iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut page = change_page(changes, cursor, limit, bound, |c| c.cursor);
        let changes = &mut page.items;
        let wanted: Vec<&str> = changes
            .iter()
            .filter(|c| DeliveryChange::caused_by_attempt(c.status, c.attempts))
            .map(|c| c.delivery_id.as_str())
            .collect();
        if wanted.is_empty() {
            return Ok(page);
        }
        // A live feed carries the attempt's outcome, not its headers and
        // body (ListDeliveryAttempts has those): less to read and to send.
        use delivery_attempt::Column as A;
        let mut attempts = HashMap::new();
        for row in delivery_attempt::Entity::find()
            .select_only()
            .columns([
                A::Id,
                A::DeliveryId,
                A::ProjectId,
                A::Number,
                A::Url,
                A::RequestedAt,
                A::RespondedAt,
                A::HttpStatus,
                A::Error,
                A::IpAddress,
                A::DurationMs,
            ])
            .column_as(Expr::val("[]"), "request_headers")
            .column_as(Expr::val("[]"), "response_headers")
            .column_as(Expr::val(""), "response_body")
            .filter(A::DeliveryId.is_in(wanted))
            .into_model::<delivery_attempt::Model>()
            .all(&self.db)
            .await?
        {
            let attempt = attempt_from_row(row)?;
            attempts.insert((attempt.delivery_id.clone(), attempt.number), attempt);
        }
        for change in changes.iter_mut() {
            if DeliveryChange::caused_by_attempt(change.status, change.attempts) {
                change.attempt = attempts.remove(&(change.delivery_id.clone(), change.attempts));
            }
        }
        Ok(page)
    }

    /// A cursor at or after the project's newest delivery change: watching
    /// from it yields only what happens from now on. On SQLite, the newest
    /// change of any project (one probe of the rowid; finding the project's
    /// own would scan the log, which has no per-project index there). Never
    /// before the pruned position: a project whose changes were all pruned
    /// would otherwise start behind it, and its stream end at once.
    pub async fn delivery_changes_head(&self, project: &ProjectId) -> Result<Cursor, StoreError> {
        use delivery_change::Column;
        let newest = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                self.head_of::<delivery_change::Entity>(
                    project,
                    [Column::ProjectId, Column::Txid, Column::Seq],
                )
                .await?
            }
            _ => Cursor {
                txid: 0,
                seq: newest_change_seq(&self.db).await?,
            },
        };
        Ok(newest.max(self.delivery_changes_pruned_through().await?))
    }

    /// The newest settled `(txid, seq)` of `project` in log table `E`, whose
    /// columns are `[project_id, txid, seq]`.
    pub(super) async fn head_of<E: EntityTrait>(
        &self,
        project: &ProjectId,
        [project_id, txid, seq]: [E::Column; 3],
    ) -> Result<Cursor, StoreError> {
        let row = E::find()
            .select_only()
            .column(txid)
            .column(seq)
            .filter(project_id.eq(project.as_str()))
            .filter(settled(self.db.get_database_backend()))
            .order_by_desc(txid)
            .order_by_desc(seq)
            .into_tuple::<(i64, i64)>()
            .one(&self.db)
            .await?;
        Ok(row.map_or(Cursor::START, |(txid, seq)| Cursor { txid, seq }))
    }

    /// Everything at or before this cursor may have been pruned: a watcher
    /// resuming from an earlier one would miss changes.
    pub async fn delivery_changes_pruned_through(&self) -> Result<Cursor, StoreError> {
        self.position(DELIVERY_CHANGES_PRUNED).await
    }

    /// Deletes delivery changes made before `before`, a chunk at a time;
    /// returns how many.
    pub async fn prune_delivery_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        use delivery_change::Column;
        let backend = self.db.get_database_backend();
        // Only what every reader can already see, and nothing the meta-event
        // forwarder has still to read.
        let mut prunable = Condition::all()
            .add(Column::ChangedAt.lt(before.unix_micros()))
            .add(settled(backend));
        if let Some(unforwarded) = self.oldest_forward_position().await? {
            prunable = prunable.add(after(backend, Column::Txid, Column::Seq, unforwarded).not());
        }
        let mut pruned = 0;
        loop {
            let _write = self.write_lock().await;
            let txn = self.db.begin().await?;
            let seqs: Vec<i64> = delivery_change::Entity::find()
                .select_only()
                .column(Column::Seq)
                .filter(prunable.clone())
                .order_by_asc(Column::Seq)
                .limit(PRUNE_CHUNK)
                .into_tuple()
                .all(&txn)
                .await?;
            if seqs.is_empty() {
                return Ok(pruned);
            }
            let placeholders = vec!["?"; seqs.len()].join(", ");
            let deleted = txn
                .query_all_raw(statement(
                    backend,
                    &format!(
                        "DELETE FROM delivery_changes WHERE seq IN ({placeholders}) RETURNING txid, seq"
                    ),
                    seqs.iter().map(|seq| (*seq).into()).collect(),
                ))
                .await?;
            let mut horizon = Cursor::START;
            for row in &deleted {
                horizon = horizon.max(Cursor {
                    txid: row.try_get("", "txid")?,
                    seq: row.try_get("", "seq")?,
                });
            }
            if !deleted.is_empty() {
                advance_position(&txn, DELIVERY_CHANGES_PRUNED, horizon).await?;
            }
            txn.commit().await?;
            pruned += deleted.len() as u64;
            if (seqs.len() as u64) < PRUNE_CHUNK {
                return Ok(pruned);
            }
        }
    }

    pub(super) async fn position(&self, name: &str) -> Result<Cursor, StoreError> {
        position_in(&self.db, name).await
    }
}

/// A named position, read through `db` (a transaction, say).
pub(super) async fn position_in(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Cursor, StoreError> {
    Ok(log_position::Entity::find_by_id(name)
        .one(db)
        .await?
        .map_or(Cursor::START, |row| Cursor {
            txid: row.txid,
            seq: row.seq,
        }))
}

/// Moves a named position forward to `to` (never back).
pub(super) async fn advance_position(
    db: &impl ConnectionTrait,
    name: &str,
    to: Cursor,
) -> Result<(), StoreError> {
    if position_in(db, name).await? >= to {
        return Ok(());
    }
    log_position::Entity::insert(log_position::ActiveModel {
        name: Set(name.to_owned()),
        txid: Set(to.txid),
        seq: Set(to.seq),
    })
    .on_conflict(
        OnConflict::column(log_position::Column::Name)
            .update_columns([log_position::Column::Txid, log_position::Column::Seq])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub(super) fn change_from_row(row: delivery_change::Model) -> Result<DeliveryChange, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "delivery_changes",
        detail: format!("{} {field}: {detail}", row.seq),
    };
    Ok(DeliveryChange {
        cursor: Cursor {
            txid: row.txid,
            seq: row.seq,
        },
        delivery_id: row
            .delivery_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("delivery_id", e.0))?,
        event_id: row
            .event_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("event_id", e.0))?,
        endpoint_id: row
            .endpoint_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("endpoint_id", e.0))?,
        event_type: EventType::parse(&row.event_type).map_err(|e| corrupt("event_type", e.0))?,
        status: DeliveryStatus::from_stored(&row.status)
            .ok_or_else(|| corrupt("status", row.status.clone()))?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: row.next_attempt_at.map(Timestamp::from_unix_micros),
        description: row.description,
        changed_at: Timestamp::from_unix_micros(row.changed_at),
        attempt: None,
    })
}
