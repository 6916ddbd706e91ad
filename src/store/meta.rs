//! Meta events: a project's settings for them, recording them (in the
//! transaction of what they report), forwarding delivery outcomes from the
//! change log, and the bookkeeping of sending them.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};

use super::deliveries::attempt_from_row;
use super::entities::{
    delivery, delivery_attempt, delivery_change, meta_event, meta_event_attempt, project,
};
use super::watch::{
    advance_position, after, change_page, change_scan_bound, changes_after, in_log_order,
    position_in, settled, settled_horizon,
};
use super::{Store, StoreError};
use crate::domain::delivery::{AttemptError, DeliveryStatus, ErrorClass};
use crate::domain::fields::EndpointUrl;
use crate::domain::ids::{MetaEventId, NodeId, ProjectId};
use crate::domain::meta::{
    DeliveryFacts, MetaAttempt, MetaEvent, MetaEventStatus, MetaEventType, MetaSettings,
    delivery_payload,
};
use crate::domain::retry::RetryPolicy;
use crate::domain::secret::Secret;
use crate::domain::time::Timestamp;
use crate::domain::watch::Cursor;

/// Delivery changes forwarded per project per pass, at most.
const FORWARD_BATCH: u64 = 500;
/// On SQLite, how many other projects' changes the forwarder lets a
/// project's position trail by before it commits the position past them
/// (see `forward_project`). Fewer: more commits while others are busy;
/// more: each pass re-reads more of the log, and pruning waits longer.
pub(super) const SKIP_AFTER: i64 = 5_000;
/// On PostgreSQL, the same in transactions: how far the settled horizon
/// may pass a quiet project's position before the position moves to it.
pub(super) const SKIP_AFTER_TRANSACTIONS: i64 = 1_000;

fn forwarded(project: &ProjectId) -> String {
    format!("meta.forwarded.{project}")
}

impl Store {
    pub async fn meta_settings(&self, project: &ProjectId) -> Result<MetaSettings, StoreError> {
        read_settings(&self.db, project).await
    }

    /// What sending the project's meta events takes: its settings and its
    /// own retry policy, if any, from one read.
    pub async fn meta_sending(
        &self,
        project: &ProjectId,
    ) -> Result<(MetaSettings, Option<RetryPolicy>), StoreError> {
        let (_, settings, defaults) = self.project_settings(project).await?;
        Ok((settings, defaults.retry))
    }

    /// Replaces the project's meta-event settings. Turning them on starts
    /// forwarding delivery outcomes from now, not from the past.
    pub async fn set_meta_settings(
        &self,
        project: &ProjectId,
        settings: &MetaSettings,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let head = self.delivery_changes_head(project).await?;
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        let was = read_settings(&txn, project).await?;
        let types: Vec<&str> = settings.types.iter().map(|t| t.as_str()).collect();
        project::Entity::update_many()
            .col_expr(project::Column::MetaEnabled, Expr::value(settings.enabled))
            .col_expr(
                project::Column::MetaUrl,
                Expr::value(settings.url.as_ref().map(|u| u.as_str().to_owned())),
            )
            .col_expr(
                project::Column::MetaSecret,
                Expr::value(settings.secret.as_ref().map(|s| s.expose().to_owned())),
            )
            .col_expr(
                project::Column::MetaTypes,
                Expr::value(super::json_text(&types)),
            )
            .col_expr(project::Column::UpdatedAt, Expr::value(now.unix_micros()))
            .filter(project::Column::Id.eq(project.as_str()))
            .exec(&txn)
            .await?;
        if settings.enabled && !was.enabled {
            // Positions only move forward; a project turned off and on again
            // skips what happened while it was off.
            advance_position(&txn, &forwarded(project), head).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Turns delivery outcomes (SUCCESS, FAILURE, DISCARDED) in the change
    /// log into meta events, for every project that records them. Exactly
    /// once: the events and the forwarding position commit together, and on
    /// PostgreSQL one process at a time does it. Returns how many.
    pub async fn forward_delivery_meta_events(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0;
        for project in self.meta_enabled_projects().await? {
            loop {
                match self.forward_project(&project, now).await {
                    Ok((recorded, more)) => {
                        total += recorded;
                        if !more {
                            break;
                        }
                    }
                    // One project's trouble must not hold up the others'.
                    Err(err) => {
                        tracing::warn!(%project, error = %err, "forwarding meta events failed");
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    /// One batch of one project: (meta events recorded, whether the log
    /// may hold more after it). The position moves past other projects'
    /// changes even when none are the project's: on SQLite through the
    /// window a batch looks through (see [`change_scan_bound`]), on
    /// PostgreSQL to the settled horizon (see [`settled_horizon`]). Else a
    /// quiet project's position would hold back pruning for good.
    async fn forward_project(
        &self,
        project: &ProjectId,
        now: Timestamp,
    ) -> Result<(usize, bool), StoreError> {
        let backend = self.db.get_database_backend();
        // Most passes find nothing new: look before taking the write lock.
        let from = self.position(&forwarded(project)).await?;
        let bound = change_scan_bound(&self.db, from).await?;
        let anything = delivery_change::Entity::find()
            .select_only()
            .column(delivery_change::Column::Seq)
            .filter(changes_after(backend, project, from, bound))
            .into_tuple::<i64>()
            .one(&self.db)
            .await?;
        // With nothing of the project's to forward, the position moves past
        // other projects' changes (a commit, under the write lock on SQLite)
        // only once they add up: until then a pass re-reads them.
        if anything.is_none() {
            let skip = match (bound, settled_horizon(&self.db).await?) {
                (Some(bound), _) => bound.through.seq - from.seq >= SKIP_AFTER,
                (None, Some(horizon)) => horizon.txid - from.txid >= SKIP_AFTER_TRANSACTIONS,
                (None, None) => false,
            };
            if !skip {
                return Ok((0, false));
            }
        }
        let _write = self.write_lock().await;
        // On PostgreSQL the position is read after the advisory lock is
        // taken, and must see what the lock's last holder committed: so each
        // statement its own snapshot (READ COMMITTED), whatever the server's
        // default isolation. Under REPEATABLE READ the snapshot would date
        // from before the lock, and a batch could be forwarded twice.
        let txn = match backend {
            DbBackend::Postgres => {
                self.db
                    .begin_with_config(Some(sea_orm::IsolationLevel::ReadCommitted), None)
                    .await?
            }
            _ => self.db.begin().await?,
        };
        if backend == DbBackend::Postgres {
            let locked = txn
                .query_one_raw(sea_orm::Statement::from_sql_and_values(
                    backend,
                    "SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked",
                    [forwarded(project).into()],
                ))
                .await?
                .map(|row| row.try_get::<bool>("", "locked"))
                .transpose()?
                .unwrap_or(false);
            if !locked {
                return Ok((0, false));
            }
        }
        let settings = read_settings(&txn, project).await?;
        let from = position_in(&txn, &forwarded(project)).await?;
        let bound = change_scan_bound(&txn, from).await?;
        // Before the read, so that the read sees every row older than it.
        let horizon = settled_horizon(&txn).await?;
        use delivery_change::Column;
        let rows = in_log_order(
            delivery_change::Entity::find().filter(changes_after(backend, project, from, bound)),
            backend,
            Column::Txid,
            Column::Seq,
        )
        .limit(FORWARD_BATCH)
        .all(&txn)
        .await?;
        let mut page = change_page(rows, from, FORWARD_BATCH as u32, bound, |row| Cursor {
            txid: row.txid,
            seq: row.seq,
        });
        if let Some(horizon) = horizon.filter(|_| !page.more) {
            page.through = page.through.max(horizon);
        }
        if page.through <= from {
            return Ok((0, false));
        }
        let rows = &page.items;
        let outcomes: Vec<(MetaEventType, &delivery_change::Model)> = rows
            .iter()
            .filter_map(|row| {
                let status = DeliveryStatus::from_stored(&row.status)?;
                let kind = MetaEventType::of_delivery_status(status)?;
                settings.records(kind).then_some((kind, row))
            })
            .collect();
        let mut recorded = 0;
        if !outcomes.is_empty() {
            let ids: Vec<&str> = outcomes
                .iter()
                .map(|(_, r)| r.delivery_id.as_str())
                .collect();
            let acknowledged: std::collections::HashMap<String, i64> = delivery::Entity::find()
                .select_only()
                .column(delivery::Column::Id)
                .column(delivery::Column::AcknowledgedAt)
                .filter(delivery::Column::Id.is_in(ids.clone()))
                .into_tuple::<(String, i64)>()
                .all(&txn)
                .await?
                .into_iter()
                .collect();
            let mut attempts = std::collections::HashMap::new();
            for row in delivery_attempt::Entity::find()
                .filter(delivery_attempt::Column::DeliveryId.is_in(ids))
                .all(&txn)
                .await?
            {
                let attempt = attempt_from_row(row)?;
                attempts.insert((attempt.delivery_id.to_string(), attempt.number), attempt);
            }
            let mut models = Vec::with_capacity(outcomes.len());
            for (kind, row) in outcomes {
                let change = super::watch::change_from_row(row.clone())?;
                let attempt = attempts.get(&(row.delivery_id.clone(), change.attempts));
                let payload = delivery_payload(
                    kind,
                    &DeliveryFacts {
                        id: &change.delivery_id,
                        project_id: project,
                        event_id: &change.event_id,
                        endpoint_id: &change.endpoint_id,
                        event_type: change.event_type.as_str(),
                        status: change.status,
                        attempts: change.attempts,
                        description: &change.description,
                        acknowledged_at: Timestamp::from_unix_micros(
                            acknowledged
                                .get(&row.delivery_id)
                                .copied()
                                .unwrap_or(row.changed_at),
                        ),
                        updated_at: change.changed_at,
                        attempt,
                    },
                );
                models.push(new_row(project, kind, payload, &settings, now));
            }
            recorded = models.len();
            meta_event::Entity::insert_many(models)
                .exec_without_returning(&txn)
                .await?;
        }
        advance_position(&txn, &forwarded(project), page.through).await?;
        txn.commit().await?;
        Ok((recorded, page.more))
    }

    /// The projects that record meta events.
    async fn meta_enabled_projects(&self) -> Result<Vec<ProjectId>, StoreError> {
        let ids: Vec<String> = project::Entity::find()
            .select_only()
            .column(project::Column::Id)
            .filter(project::Column::MetaEnabled.eq(true))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// The oldest forwarding position among projects that record meta
    /// events: changes after it must not be pruned yet.
    pub(super) async fn oldest_forward_position(&self) -> Result<Option<Cursor>, StoreError> {
        let mut oldest: Option<Cursor> = None;
        for project in self.meta_enabled_projects().await? {
            let at = self.position(&forwarded(&project)).await?;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
        Ok(oldest)
    }

    /// Takes up to `limit` meta events due for sending, each for `lease`
    /// (after which another process may take it, if this one died).
    pub async fn claim_due_meta_events(
        &self,
        me: &NodeId,
        now: Timestamp,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<MetaEvent>, StoreError> {
        let due = || {
            Condition::all()
                .add(meta_event::Column::Status.is_in([
                    MetaEventStatus::Scheduled.as_str(),
                    MetaEventStatus::Retry.as_str(),
                ]))
                .add(meta_event::Column::NextAttemptAt.lte(now.unix_micros()))
        };
        // Most passes find nothing due: look before taking the write lock.
        let any = meta_event::Entity::find()
            .select_only()
            .column(meta_event::Column::Id)
            .filter(due())
            .into_tuple::<String>()
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let _write = self.write_lock().await;
        let mut candidates = meta_event::Entity::find()
            .select_only()
            .column(meta_event::Column::Id)
            .filter(due())
            .order_by_asc(meta_event::Column::NextAttemptAt)
            .limit(u64::from(limit))
            .into_query();
        if self.db.get_database_backend() == DbBackend::Postgres {
            candidates.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        let until = now.unix_micros() + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        let rows = meta_event::Entity::update_many()
            .col_expr(meta_event::Column::NextAttemptAt, Expr::value(until))
            .col_expr(meta_event::Column::LeaseOwner, Expr::value(me.as_str()))
            .filter(meta_event::Column::Id.in_subquery(candidates))
            .filter(due())
            .exec_with_returning(&self.db)
            .await?;
        rows.into_iter().map(meta_event_from_row).collect()
    }

    /// Records an attempt (numbered after those already recorded) and, if
    /// `me` still holds the meta event, where it leaves it. A meta event
    /// resent by hand meanwhile stays scheduled.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_meta_attempt(
        &self,
        me: &NodeId,
        id: &MetaEventId,
        attempt: &MetaAttempt,
        status: MetaEventStatus,
        next_attempt_at: Option<Timestamp>,
        description: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        let made: i32 = meta_event::Entity::find()
            .select_only()
            .column(meta_event::Column::Attempts)
            .filter(meta_event::Column::Id.eq(id.as_str()))
            .into_tuple()
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound)?;
        meta_event_attempt::Entity::insert(meta_event_attempt::ActiveModel {
            id: Set(
                crate::domain::ids::AttemptId::from_uuid(crate::system::new_uuid()).to_string(),
            ),
            meta_event_id: Set(id.to_string()),
            number: Set(made + 1),
            url: Set(attempt.url.clone()),
            requested_at: Set(attempt.requested_at.unix_micros()),
            responded_at: Set(attempt.responded_at.map(Timestamp::unix_micros)),
            http_status: Set(attempt.http_status.map(i32::from)),
            error: Set(attempt.error.as_ref().map(ToString::to_string)),
            ip_address: Set(attempt
                .ip_address
                .map(|ip| ip.to_string())
                .unwrap_or_default()),
            duration_ms: Set(i32::try_from(attempt.duration_ms).unwrap_or(i32::MAX)),
        })
        .exec_without_returning(&txn)
        .await?;
        meta_event::Entity::update_many()
            .col_expr(meta_event::Column::Attempts, Expr::value(made + 1))
            .col_expr(
                meta_event::Column::UpdatedAt,
                Expr::value(now.unix_micros()),
            )
            .filter(meta_event::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        meta_event::Entity::update_many()
            .col_expr(meta_event::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                meta_event::Column::NextAttemptAt,
                Expr::value(next_attempt_at.map(Timestamp::unix_micros)),
            )
            .col_expr(meta_event::Column::Description, Expr::value(description))
            .col_expr(meta_event::Column::LeaseOwner, Expr::value(None::<String>))
            .filter(meta_event::Column::Id.eq(id.as_str()))
            .filter(meta_event::Column::LeaseOwner.eq(me.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Lets go of a held meta event that has nowhere to go (its project has
    /// no URL any more): UNSENT, until resent by hand.
    pub async fn release_meta_event_unsent(
        &self,
        me: &NodeId,
        id: &MetaEventId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        meta_event::Entity::update_many()
            .col_expr(
                meta_event::Column::Status,
                Expr::value(MetaEventStatus::Unsent.as_str()),
            )
            .col_expr(meta_event::Column::NextAttemptAt, Expr::value(None::<i64>))
            .col_expr(meta_event::Column::LeaseOwner, Expr::value(None::<String>))
            .col_expr(
                meta_event::Column::UpdatedAt,
                Expr::value(now.unix_micros()),
            )
            .filter(meta_event::Column::Id.eq(id.as_str()))
            .filter(meta_event::Column::LeaseOwner.eq(me.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn get_meta_event(
        &self,
        project: &ProjectId,
        id: &MetaEventId,
    ) -> Result<(MetaEvent, Vec<MetaAttempt>), StoreError> {
        let row = meta_event::Entity::find()
            .filter(meta_event::Column::Id.eq(id.as_str()))
            .filter(meta_event::Column::ProjectId.eq(project.as_str()))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        let attempts = meta_event_attempt::Entity::find()
            .filter(meta_event_attempt::Column::MetaEventId.eq(id.as_str()))
            .order_by_asc(meta_event_attempt::Column::Number)
            .all(&self.db)
            .await?
            .into_iter()
            .map(meta_attempt_from_row)
            .collect();
        Ok((meta_event_from_row(row)?, attempts))
    }

    /// Newest first, up to `limit`, before the id `before`.
    pub async fn list_meta_events(
        &self,
        project: &ProjectId,
        before: Option<&MetaEventId>,
        limit: u32,
    ) -> Result<Vec<MetaEvent>, StoreError> {
        let mut condition =
            Condition::all().add(meta_event::Column::ProjectId.eq(project.as_str()));
        if let Some(before) = before {
            condition = condition.add(meta_event::Column::Id.lt(before.as_str()));
        }
        meta_event::Entity::find()
            .filter(condition)
            .order_by_desc(meta_event::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(meta_event_from_row)
            .collect()
    }

    /// Schedules a meta event to be sent again now, to the project's current
    /// URL. `Ok(Err(()))`: the project has no URL to send it to.
    pub async fn retry_meta_event(
        &self,
        project: &ProjectId,
        id: &MetaEventId,
        now: Timestamp,
    ) -> Result<Result<MetaEvent, ()>, StoreError> {
        if self.meta_settings(project).await?.url.is_none() {
            self.get_meta_event(project, id).await?;
            return Ok(Err(()));
        }
        {
            let _write = self.write_lock().await;
            let updated = meta_event::Entity::update_many()
                .col_expr(
                    meta_event::Column::Status,
                    Expr::value(MetaEventStatus::Scheduled.as_str()),
                )
                .col_expr(
                    meta_event::Column::NextAttemptAt,
                    Expr::value(now.unix_micros()),
                )
                .col_expr(meta_event::Column::LeaseOwner, Expr::value(None::<String>))
                .col_expr(
                    meta_event::Column::UpdatedAt,
                    Expr::value(now.unix_micros()),
                )
                .filter(meta_event::Column::Id.eq(id.as_str()))
                .filter(meta_event::Column::ProjectId.eq(project.as_str()))
                .exec(&self.db)
                .await?;
            if updated.rows_affected == 0 {
                return Err(StoreError::NotFound);
            }
        }
        Ok(Ok(self.get_meta_event(project, id).await?.0))
    }

    /// The project's meta events after `cursor` in log order, optionally of
    /// some types only.
    pub async fn meta_events_after(
        &self,
        project: &ProjectId,
        cursor: Cursor,
        types: &[MetaEventType],
        limit: u32,
    ) -> Result<Vec<MetaEvent>, StoreError> {
        use meta_event::Column;
        let mut condition = Condition::all()
            .add(Column::ProjectId.eq(project.as_str()))
            .add(after(
                self.db.get_database_backend(),
                Column::Txid,
                Column::Seq,
                cursor,
            ))
            .add(settled(self.db.get_database_backend()));
        if !types.is_empty() {
            condition = condition.add(Column::EventType.is_in(types.iter().map(|t| t.as_str())));
        }
        meta_event::Entity::find()
            .filter(condition)
            .order_by_asc(Column::Txid)
            .order_by_asc(Column::Seq)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(meta_event_from_row)
            .collect()
    }

    pub async fn meta_events_head(&self, project: &ProjectId) -> Result<Cursor, StoreError> {
        use meta_event::Column;
        self.head_of::<meta_event::Entity>(project, [Column::ProjectId, Column::Txid, Column::Seq])
            .await
    }
}

/// Records a meta event about `project` in the caller's transaction, if the
/// project records that type; `payload` is only built then.
pub(super) async fn record_meta_event(
    db: &impl ConnectionTrait,
    project: &ProjectId,
    kind: MetaEventType,
    payload: impl FnOnce() -> String,
    now: Timestamp,
) -> Result<(), StoreError> {
    let settings = read_settings(db, project).await?;
    if !settings.records(kind) {
        return Ok(());
    }
    meta_event::Entity::insert(new_row(project, kind, payload(), &settings, now))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn new_row(
    project: &ProjectId,
    kind: MetaEventType,
    payload: String,
    settings: &MetaSettings,
    now: Timestamp,
) -> meta_event::ActiveModel {
    let status = if settings.url.is_some() {
        MetaEventStatus::Scheduled
    } else {
        MetaEventStatus::Unsent
    };
    meta_event::ActiveModel {
        id: Set(MetaEventId::from_uuid(crate::system::new_uuid()).to_string()),
        project_id: Set(project.to_string()),
        event_type: Set(kind.as_str().to_owned()),
        payload: Set(payload),
        status: Set(status.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set((status == MetaEventStatus::Scheduled).then_some(now.unix_micros())),
        lease_owner: Set(None),
        description: Set(String::new()),
        created_at: Set(now.unix_micros()),
        updated_at: Set(now.unix_micros()),
        ..Default::default()
    }
}

async fn read_settings(
    db: &impl ConnectionTrait,
    project: &ProjectId,
) -> Result<MetaSettings, StoreError> {
    let row = project::Entity::find_by_id(project.as_str())
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)?;
    settings_from_row(&row)
}

pub(super) fn settings_from_row(row: &project::Model) -> Result<MetaSettings, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "projects",
        detail: format!("{} {field}: {detail}", row.id),
    };
    let types: Vec<String> =
        serde_json::from_str(&row.meta_types).map_err(|e| corrupt("meta_types", e.to_string()))?;
    Ok(MetaSettings {
        enabled: row.meta_enabled,
        url: row
            .meta_url
            .as_deref()
            .map(EndpointUrl::parse)
            .transpose()
            .map_err(|e| corrupt("meta_url", e.0))?,
        secret: row
            .meta_secret
            .as_deref()
            .map(Secret::parse)
            .transpose()
            .map_err(|e| corrupt("meta_secret", e.0))?,
        types: types
            .iter()
            .map(|t| MetaEventType::parse(t))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt("meta_types", e.0))?,
    })
}

fn meta_event_from_row(row: meta_event::Model) -> Result<MetaEvent, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "meta_events",
        detail: format!("{} {field}: {detail}", row.id),
    };
    Ok(MetaEvent {
        id: row
            .id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("id", e.0))?,
        project_id: row
            .project_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("project_id", e.0))?,
        event_type: MetaEventType::parse(&row.event_type)
            .map_err(|e| corrupt("event_type", e.0))?,
        status: MetaEventStatus::from_stored(&row.status)
            .ok_or_else(|| corrupt("status", row.status.clone()))?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: row.next_attempt_at.map(Timestamp::from_unix_micros),
        description: row.description,
        created_at: Timestamp::from_unix_micros(row.created_at),
        updated_at: Timestamp::from_unix_micros(row.updated_at),
        cursor: Cursor {
            txid: row.txid,
            seq: row.seq,
        },
        payload: row.payload,
    })
}

fn meta_attempt_from_row(row: meta_event_attempt::Model) -> MetaAttempt {
    MetaAttempt {
        number: u32::try_from(row.number).unwrap_or(0),
        url: row.url,
        requested_at: Timestamp::from_unix_micros(row.requested_at),
        responded_at: row.responded_at.map(Timestamp::from_unix_micros),
        http_status: row.http_status.and_then(|s| u16::try_from(s).ok()),
        error: row.error.as_deref().map(|text| {
            let (class, message) = text.split_once(": ").unwrap_or(("other", text));
            AttemptError {
                class: ErrorClass::from_stored(class),
                message: message.to_owned(),
            }
        }),
        ip_address: row.ip_address.parse().ok(),
        duration_ms: u32::try_from(row.duration_ms).unwrap_or(0),
    }
}
