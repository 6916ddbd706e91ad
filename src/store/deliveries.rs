//! Deliveries and attempts: what the API reads and retries, and what the
//! delivery engine claims and records.

use std::collections::BTreeMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
};

use super::entities::{delivery, delivery_attempt, node};
use super::events::{PublishRecord, Published};
use super::rows::{self, Field};
use super::{Store, StoreError, statement};
use crate::domain::delivery::{
    Attempt, AttemptError, Delivery, DeliveryStatus, ErrorClass, RecordedHeaders, Verdict,
};
use crate::domain::fields::EventType;
use crate::domain::ids::{DeliveryId, EndpointId, EventId, NodeId, ProjectId};
use crate::domain::time::Timestamp;

/// Which deliveries a list call wants.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub event_id: Option<EventId>,
    pub endpoint_id: Option<EndpointId>,
    /// Any of these; empty means all.
    pub statuses: Vec<DeliveryStatus>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

/// What the engine did with a delivery it held.
#[derive(Debug, Clone)]
pub enum DeliveryResult {
    /// An HTTP attempt was made.
    Attempted {
        attempt: Box<Attempt>,
        /// The endpoint it went to, for the circuit breaker.
        endpoint_id: EndpointId,
        verdict: Verdict,
        description: String,
    },
    /// Not sent, and never will be unless retried by hand.
    Discarded {
        delivery_id: DeliveryId,
        description: String,
    },
    /// Handed back unsent, due again at `at`.
    Released {
        delivery_id: DeliveryId,
        at: Timestamp,
    },
}

impl DeliveryResult {
    /// Bytes this takes in memory, itself included: what a result waiting
    /// to be written holds.
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Self::Attempted {
                    attempt,
                    description,
                    ..
                } => attempt.memory() + description.capacity(),
                Self::Discarded { description, .. } => description.capacity(),
                Self::Released { .. } => 0,
            }
    }
}

impl Store {
    pub async fn get_delivery(
        &self,
        project: &ProjectId,
        id: &DeliveryId,
    ) -> Result<Delivery, StoreError> {
        let row = delivery::Entity::find_by_id(id.as_str())
            .filter(delivery::Column::ProjectId.eq(project.as_str()))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)?;
        delivery_from_row(row)
    }

    /// Newest first, up to `limit`, before the id `before`.
    pub async fn list_deliveries(
        &self,
        project: &ProjectId,
        filter: &DeliveryFilter,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut condition = filter_condition(project, filter);
        if let Some(cursor) = before {
            condition = condition.add(delivery::Column::Id.lt(cursor.as_str()));
        }
        delivery::Entity::find()
            .filter(condition)
            .order_by_desc(delivery::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(delivery_from_row)
            .collect()
    }

    /// Oldest first, up to `limit`, after attempt number `after`.
    pub async fn list_attempts(
        &self,
        project: &ProjectId,
        id: &DeliveryId,
        after: u32,
        limit: u32,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.get_delivery(project, id).await?;
        delivery_attempt::Entity::find()
            .filter(delivery_attempt::Column::DeliveryId.eq(id.as_str()))
            .filter(delivery_attempt::Column::Number.gt(i64::from(after)))
            .order_by_asc(delivery_attempt::Column::Number)
            .limit(u64::from(limit))
            .all(&self.db)
            .await?
            .into_iter()
            .map(attempt_from_row)
            .collect()
    }

    /// Schedules a FAILURE or DISCARDED delivery again at `now`. `Ok(Err(status))`
    /// names the status that does not allow it.
    pub async fn retry_delivery(
        &self,
        project: &ProjectId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Result<Delivery, DeliveryStatus>, StoreError> {
        let _write = self.write_lock().await;
        // One transaction: no process may claim the delivery while its
        // endpoint is still INACTIVE.
        let txn = self.db.begin().await?;
        let filter = DeliveryFilter::default();
        let updated = reschedule(
            filter_condition(project, &filter).add(delivery::Column::Id.eq(id.as_str())),
            now,
        )
        .exec(&txn)
        .await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(Err(self.get_delivery(project, id).await?.status));
        }
        // Retrying into an INACTIVE endpoint is how it gets another chance.
        txn.execute_raw(statement(
            self.db.get_database_backend(),
            "UPDATE endpoints SET status = 'pending', status_changed_at = ?, revision = revision + 1 \
             WHERE id = (SELECT endpoint_id FROM deliveries WHERE id = ?) AND project_id = ? \
             AND status = 'inactive'",
            vec![now.unix_micros().into(), id.as_str().into(), project.as_str().into()],
        ))
        .await?;
        // Read inside the transaction: once it commits, a poller may claim
        // the delivery at once, and the caller should see what it did.
        let row = delivery::Entity::find_by_id(id.as_str())
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound)?;
        txn.commit().await?;
        Ok(Ok(delivery_from_row(row)?))
    }

    /// Schedules every FAILURE or DISCARDED delivery matching `filter` again.
    /// Statuses in the filter other than those two match nothing.
    pub async fn retry_deliveries(
        &self,
        project: &ProjectId,
        filter: &DeliveryFilter,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let _write = self.write_lock().await;
        let txn = self.db.begin().await?;
        let scheduled = reschedule(filter_condition(project, filter), now)
            .exec(&txn)
            .await?
            .rows_affected;
        // INACTIVE endpoints whose deliveries were just scheduled get their
        // chance (PENDING), as with a single retry.
        txn.execute_raw(statement(
            self.db.get_database_backend(),
            "UPDATE endpoints SET status = 'pending', status_changed_at = ?, revision = revision + 1 \
             WHERE project_id = ? AND status = 'inactive' AND id IN (SELECT endpoint_id FROM deliveries \
             WHERE project_id = ? AND status = 'scheduled' AND updated_at = ?)",
            vec![
                now.unix_micros().into(),
                project.as_str().into(),
                project.as_str().into(),
                now.unix_micros().into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        Ok(scheduled)
    }

    /// Marks up to `limit` due deliveries as held by `me` and returns them:
    /// SCHEDULED or RETRY ones whose time has come, and PROCESSING ones a
    /// dead node held (freed by [`Store::free_dead_leases`]). Skips the
    /// endpoints in `skip` (their queues are full). Claims are exclusive even with several processes: PostgreSQL
    /// skips rows another claim has locked and re-checks them; SQLite has a
    /// single writer.
    ///
    /// The candidates come from `deliveries_waiting`, which holds only
    /// deliveries no node holds, in time order: a claim reads about as many
    /// rows as it takes. The outer UPDATE names rows by id alone, so that it
    /// looks each up by key.
    pub async fn claim_due(
        &self,
        me: &NodeId,
        now: Timestamp,
        skip: &[EndpointId],
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let _write = self.write_lock().await;
        let candidates = claim_candidates(self.db.get_database_backend(), now, skip, limit);
        let rows = delivery::Entity::update_many()
            .col_expr(delivery::Column::LeaseOwner, Expr::value(me.as_str()))
            .col_expr(
                delivery::Column::Status,
                Expr::value(DeliveryStatus::Processing.as_str()),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now.unix_micros()))
            .filter(delivery::Column::Id.in_subquery(candidates))
            .exec_with_returning(&self.db)
            .await?;
        rows.into_iter().map(delivery_from_row).collect()
    }

    /// Hands back the deliveries held by nodes other than `me` that have not
    /// heart-beaten since `alive_since` (or were forgotten: an embedded
    /// database's previous run), so that claims take them. The holders are
    /// found by a loose scan of `deliveries_leased`, one index seek per holder,
    /// so this costs next to nothing when every holder is alive.
    pub async fn free_dead_leases(
        &self,
        me: &NodeId,
        now: Timestamp,
        alive_since: Timestamp,
    ) -> Result<u64, StoreError> {
        let _write = self.write_lock().await;
        let backend = self.db.get_database_backend();
        let holders = self
            .db
            .query_all_raw(statement(
                backend,
                "WITH RECURSIVE holders(owner) AS ( \
                     SELECT MIN(lease_owner) FROM deliveries WHERE lease_owner IS NOT NULL \
                     UNION ALL \
                     SELECT (SELECT MIN(lease_owner) FROM deliveries WHERE lease_owner > holders.owner) \
                     FROM holders WHERE holders.owner IS NOT NULL) \
                 SELECT owner FROM holders WHERE owner IS NOT NULL AND owner <> ? \
                 AND owner NOT IN (SELECT id FROM nodes WHERE heartbeat_at >= ?)",
                vec![me.as_str().into(), alive_since.unix_micros().into()],
            ))
            .await?;
        let dead: Vec<String> = holders
            .iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?;
        if dead.is_empty() {
            return Ok(0);
        }
        tracing::info!(nodes = ?dead, "taking over the deliveries of nodes that stopped");
        let freed = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now.unix_micros()))
            .filter(delivery::Column::LeaseOwner.is_in(dead))
            .exec(&self.db)
            .await?;
        Ok(freed.rows_affected)
    }

    /// Records what happened to held deliveries, in one transaction (see
    /// [`ResultBatch`]). Returns the endpoints whose status the circuit
    /// breaker changed.
    pub async fn record_results(
        &self,
        batch: &ResultBatch<'_>,
    ) -> Result<Vec<StatusChange>, StoreError> {
        let (_, changed) = self.write(&[], batch.now, Some(batch)).await?;
        Ok(changed)
    }

    /// Publishes `records` (as [`Store::publish`]) and records `results` (as
    /// [`Store::record_results`]) in one transaction: on the delivery path
    /// both kinds of write share one commit and, on SQLite, one round trip
    /// to the connection's worker.
    pub async fn write(
        &self,
        records: &[&PublishRecord],
        dedup_since: Timestamp,
        results: Option<&ResultBatch<'_>>,
    ) -> Result<(Vec<Published>, Vec<StatusChange>), StoreError> {
        let backend = self.db.get_database_backend();
        let health = results
            .map(|batch| health_of(batch.results))
            .unwrap_or_default();
        // Only the breaker's status changes return rows.
        let keyed = records.iter().any(|r| r.event.idempotency_key.is_some());
        let (outcomes, returned) = if backend == DbBackend::Sqlite && !keyed {
            // Nothing to read first: the statements are built before the
            // write lock is taken, and the whole transaction goes in one trip.
            let outcomes = vec![Published::Stored; records.len()];
            let statements = write_statements(backend, records, &outcomes, results, &health);
            let returned = self.transact_sqlite(statements).await?;
            (outcomes, returned)
        } else {
            // A keyed publish must read first: its statements wait for that.
            let _write = self.write_lock().await;
            let txn = self.db.begin().await?;
            let outcomes = super::events::claim_keys(&txn, records, dedup_since).await?;
            let statements = write_statements(backend, records, &outcomes, results, &health);
            let mut returned = Vec::new();
            for statement in rows::chain(backend, statements) {
                returned.extend(txn.query_all_raw(statement).await?);
            }
            txn.commit().await?;
            (outcomes, returned)
        };
        Ok((outcomes, breaker_changes(&returned, &health)?))
    }

    /// Announces a node (or refreshes its heartbeat).
    pub async fn heartbeat(&self, me: &NodeId, now: Timestamp) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        let updated = node::Entity::update_many()
            .col_expr(node::Column::HeartbeatAt, Expr::value(now.unix_micros()))
            .filter(node::Column::Id.eq(me.as_str()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            node::Entity::insert(node::ActiveModel {
                id: Set(me.to_string()),
                started_at: Set(now.unix_micros()),
                heartbeat_at: Set(now.unix_micros()),
            })
            .exec_without_returning(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Hands back every delivery `me` holds and forgets the node: on a clean
    /// shutdown, so others need not wait for its heartbeat to go stale.
    pub async fn release_node(&self, me: &NodeId, now: Timestamp) -> Result<u64, StoreError> {
        let _write = self.write_lock().await;
        let released = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                delivery::Column::Status,
                Expr::value(DeliveryStatus::Scheduled.as_str()),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now.unix_micros()))
            .filter(delivery::Column::LeaseOwner.eq(me.as_str()))
            .filter(delivery::Column::Status.eq(DeliveryStatus::Processing.as_str()))
            .exec(&self.db)
            .await?;
        node::Entity::delete_by_id(me.as_str())
            .exec(&self.db)
            .await?;
        Ok(released.rows_affected)
    }

    /// Forgets every other node: for an embedded (single-process) database,
    /// where any other holder is a previous run of this process that died.
    pub async fn forget_other_nodes(&self, me: &NodeId) -> Result<(), StoreError> {
        let _write = self.write_lock().await;
        node::Entity::delete_many()
            .filter(node::Column::Id.ne(me.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// True for a single-process embedded database.
    pub fn is_embedded(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Sqlite
    }
}

/// The ids a claim takes: waiting deliveries (no holder), due by `now`, in
/// time order, none for the endpoints in `skip`.
pub(super) fn claim_candidates(
    backend: DbBackend,
    now: Timestamp,
    skip: &[EndpointId],
    limit: u32,
) -> sea_orm::sea_query::SelectStatement {
    let mut candidates = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::Id)
        .filter(delivery::Column::LeaseOwner.is_null())
        .filter(delivery::Column::NextAttemptAt.lte(now.unix_micros()))
        .filter(delivery::Column::Status.is_in([
            DeliveryStatus::Scheduled.as_str(),
            DeliveryStatus::Retry.as_str(),
            DeliveryStatus::Processing.as_str(),
        ]))
        .filter(delivery::Column::EndpointId.is_not_in(skip.iter().map(EndpointId::as_str)))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .limit(u64::from(limit))
        .into_query();
    if backend == DbBackend::Postgres {
        candidates.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    candidates
}

/// A status change made by the circuit breaker.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub endpoint_id: EndpointId,
    pub status: crate::domain::endpoint::EndpointStatus,
    pub reason: String,
    /// What the last failed attempt got (empty when reviving).
    pub last_error: String,
}

/// The statements of a write: the records' inserts (those `outcomes` lets
/// be stored), the results', and the circuit breaker's.
fn write_statements(
    backend: DbBackend,
    records: &[&PublishRecord],
    outcomes: &[Published],
    results: Option<&ResultBatch<'_>>,
    health: &BTreeMap<&EndpointId, Health>,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    super::events::publish_statements(backend, records, outcomes, &mut statements);
    if let Some(batch) = results {
        statements.extend(result_statements(backend, batch));
        statements.extend(breaker_statements(
            backend,
            health,
            batch.now,
            batch.breaker_failures,
        ));
    }
    statements
}

/// What a batch of results says about one endpoint's health.
#[derive(Default)]
struct Health {
    last_error: String,
    succeeded: bool,
    /// Failed attempts after the last success in the batch (or in all of it).
    failures: i64,
    /// The receiver answered 410 Gone after the last success.
    gone: bool,
}

/// What each endpoint's results in `results` say about its health.
fn health_of(results: &[DeliveryResult]) -> BTreeMap<&EndpointId, Health> {
    let mut health: BTreeMap<&EndpointId, Health> = BTreeMap::new();
    for result in results {
        if let DeliveryResult::Attempted {
            attempt,
            endpoint_id,
            verdict,
            ..
        } = result
        {
            let entry = health.entry(endpoint_id).or_default();
            if *verdict == Verdict::Success {
                *entry = Health {
                    succeeded: true,
                    ..Health::default()
                };
            } else {
                entry.failures += 1;
                entry.gone |= attempt.http_status == Some(410);
                entry.last_error = match (&attempt.error, attempt.http_status) {
                    (Some(error), _) => error.to_string(),
                    (None, Some(status)) => format!("HTTP {status}"),
                    (None, None) => String::new(),
                };
            }
        }
    }
    health
}

/// The circuit breaker's statements for a batch (see [`ResultBatch`]), set
/// based over one row per endpoint (id, succeeded, failures, gone; see
/// [`rows`]), so their text is the same whatever the endpoints and they
/// chain with the batch's other writes. In order: a success makes a PENDING endpoint ACTIVE
/// and sets its failure count to the failures after it (usually already 0:
/// then no row is written); failures alone add to the count; then an ACTIVE
/// or PENDING endpoint with failures becomes INACTIVE at the threshold, on
/// 410 Gone, or at once if PENDING. The two status changes return
/// `(id, status)` rows; see [`breaker_changes`].
fn breaker_statements(
    backend: DbBackend,
    health: &BTreeMap<&EndpointId, Health>,
    now: Timestamp,
    breaker_failures: u32,
) -> Vec<Statement> {
    use rows::Field::{Integer, Text};
    // Each pair changes only endpoints with a success, or only endpoints
    // with failures: a batch without any leaves its pair out (the common
    // all-success batch writes two statements, not four).
    let any_success = health.values().any(|h| h.succeeded);
    let any_failure = health.values().any(|h| h.failures > 0);
    let rows: Vec<_> = health
        .iter()
        .map(|(id, h)| {
            (
                id.as_str(),
                i64::from(h.succeeded),
                h.failures,
                i64::from(h.gone),
            )
        })
        .collect();
    let kinds = [Text, Integer, Integer, Integer];
    let now: sea_orm::Value = now.unix_micros().into();
    let update = |before: &[sea_orm::Value],
                  after: &[sea_orm::Value],
                  sql: &dyn Fn(&rows::Source<'_>) -> String| {
        rows::batched(backend, &kinds, rows.clone(), before, after, sql)
    };
    let mut statements = Vec::with_capacity(4);
    if any_success {
        statements.extend(update(std::slice::from_ref(&now), &[], &|r| {
            format!(
                "UPDATE endpoints SET status = 'active', status_changed_at = ?, \
                 revision = endpoints.revision + 1 FROM {source} \
                 WHERE endpoints.id = {id} AND {succeeded} = 1 AND endpoints.status = 'pending' \
                 RETURNING endpoints.id, endpoints.status",
                source = r.table(),
                id = r.field(0),
                succeeded = r.field(1),
            )
        }));
        statements.extend(update(&[], &[], &|r| {
            format!(
                "UPDATE endpoints SET consecutive_failures = {failures} FROM {source} \
                 WHERE endpoints.id = {id} AND {succeeded} = 1 \
                 AND endpoints.consecutive_failures <> {failures}",
                source = r.table(),
                id = r.field(0),
                succeeded = r.field(1),
                failures = r.field(2),
            )
        }));
    }
    if any_failure {
        statements.extend(update(&[], &[], &|r| {
            format!(
                "UPDATE endpoints SET consecutive_failures = endpoints.consecutive_failures + {failures} \
                 FROM {source} WHERE endpoints.id = {id} AND {succeeded} = 0 AND {failures} > 0",
                source = r.table(),
                id = r.field(0),
                succeeded = r.field(1),
                failures = r.field(2),
            )
        }));
        statements.extend(update(
            &[now],
            &[i64::from(breaker_failures).into()],
            &|r| {
                format!(
                    "UPDATE endpoints SET status = 'inactive', status_changed_at = ?, \
                     revision = endpoints.revision + 1 FROM {source} \
                     WHERE endpoints.id = {id} AND {failures} > 0 \
                     AND endpoints.status IN ('active', 'pending') \
                     AND (endpoints.status = 'pending' OR {gone} = 1 OR endpoints.consecutive_failures >= \
                     COALESCE((SELECT breaker_failures FROM projects WHERE projects.id = endpoints.project_id), ?)) \
                     RETURNING endpoints.id, endpoints.status",
                    source = r.table(),
                    id = r.field(0),
                    failures = r.field(2),
                    gone = r.field(3),
                )
            },
        ));
    }
    statements
}

/// The status changes in the rows the breaker's statements returned.
fn breaker_changes(
    rows: &[sea_orm::QueryResult],
    health: &BTreeMap<&EndpointId, Health>,
) -> Result<Vec<StatusChange>, StoreError> {
    use crate::domain::endpoint::EndpointStatus;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get_by_index(0)?;
        let status: String = row.try_get_by_index(1)?;
        // The statements return only endpoints of the batch.
        let Some((endpoint_id, health)) = health.iter().find(|(known, _)| known.as_str() == id)
        else {
            return Err(StoreError::Corrupt {
                table: "endpoints",
                detail: format!("the breaker changed {id}, which had no results"),
            });
        };
        let endpoint_id = (*endpoint_id).clone();
        let gone = health.gone;
        changes.push(if status == EndpointStatus::Active.as_str() {
            StatusChange {
                endpoint_id,
                status: EndpointStatus::Active,
                reason: "a retried delivery succeeded".to_owned(),
                last_error: String::new(),
            }
        } else {
            StatusChange {
                endpoint_id,
                status: EndpointStatus::Inactive,
                reason: if gone {
                    "the receiver answered 410 Gone".to_owned()
                } else {
                    "consecutive failed attempts reached the breaker threshold".to_owned()
                },
                last_error: health.last_error.clone(),
            }
        });
    }
    Ok(changes)
}

/// The new state of one delivery after a result.
pub(super) struct Settled<'a> {
    pub(super) id: &'a str,
    pub(super) status: DeliveryStatus,
    /// `None`: unchanged.
    pub(super) attempts: Option<i32>,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) description: &'a str,
    /// `None`: unchanged.
    pub(super) http_status: Option<i32>,
}

impl<'a> Settled<'a> {
    fn of(result: &'a DeliveryResult) -> Self {
        match result {
            DeliveryResult::Attempted {
                attempt,
                verdict,
                description,
                ..
            } => {
                let (status, next_attempt_at) = match verdict {
                    Verdict::Success => (DeliveryStatus::Success, None),
                    Verdict::Retry { at } => (DeliveryStatus::Retry, Some(at.unix_micros())),
                    Verdict::Failure { .. } => (DeliveryStatus::Failure, None),
                };
                Self {
                    id: attempt.delivery_id.as_str(),
                    status,
                    attempts: Some(attempt.number as i32),
                    next_attempt_at,
                    description,
                    http_status: attempt.http_status.map(i32::from),
                }
            }
            DeliveryResult::Discarded {
                delivery_id,
                description,
            } => Self {
                id: delivery_id.as_str(),
                status: DeliveryStatus::Discarded,
                attempts: None,
                next_attempt_at: None,
                description,
                http_status: None,
            },
            DeliveryResult::Released { delivery_id, at } => Self {
                id: delivery_id.as_str(),
                status: DeliveryStatus::Scheduled,
                attempts: None,
                next_attempt_at: Some(at.unix_micros()),
                description: "",
                http_status: None,
            },
        }
    }
}

/// What happened to held deliveries, to be recorded. A delivery no longer
/// held by `me` (another node took it over after presuming `me` dead) keeps
/// its state; its attempt is still recorded.
///
/// The circuit breaker runs too: a success resets the endpoint's count of
/// consecutive failed attempts (and makes a PENDING endpoint ACTIVE);
/// failures add to it, and at `breaker_failures`, or at once on HTTP 410
/// Gone, an ACTIVE or PENDING endpoint becomes INACTIVE.
pub struct ResultBatch<'a> {
    pub me: &'a NodeId,
    pub results: &'a [DeliveryResult],
    pub now: Timestamp,
    pub breaker_failures: u32,
}

/// The attempts' INSERTs and the deliveries' UPDATEs for `batch`.
fn result_statements(backend: DbBackend, batch: &ResultBatch<'_>) -> Vec<Statement> {
    let attempts: Vec<AttemptRow<'_>> = batch
        .results
        .iter()
        .filter_map(|r| match r {
            DeliveryResult::Attempted { attempt, .. } => Some(attempt_row(attempt)),
            _ => None,
        })
        .collect();
    let mut statements = rows::insert(backend, "delivery_attempts", &ATTEMPT_COLUMNS, attempts);
    let settled: Vec<Settled<'_>> = batch.results.iter().map(Settled::of).collect();
    statements.extend(settle_statements(backend, batch.me, &settled, batch.now));
    statements
}

/// UPDATEs for many deliveries at once (rows joined on id), instead of one
/// statement each: with SQLite every statement is a round trip to its
/// worker thread. Only deliveries still held by `me` change.
///
/// The lease check is wrapped in COALESCE so that no index serves it: SQLite
/// would otherwise walk every delivery `me` holds (the lease-owner index)
/// and scan the rows for each, instead of looking each row up by id.
pub(super) fn settle_statements(
    backend: DbBackend,
    me: &NodeId,
    settled: &[Settled<'_>],
    now: Timestamp,
) -> Vec<Statement> {
    use rows::Field::{Integer, Text};
    let rows: Vec<_> = settled
        .iter()
        .map(|r| {
            (
                r.id,
                r.status.as_str(),
                r.attempts,
                r.next_attempt_at,
                r.description,
                r.http_status,
            )
        })
        .collect();
    rows::batched(
        backend,
        &[Text, Text, Integer, Integer, Text, Integer],
        rows,
        &[now.unix_micros().into()],
        &[me.as_str().into()],
        |r| {
            format!(
                "UPDATE deliveries SET status = {status}, \
                 attempts = COALESCE({attempts}, deliveries.attempts), \
                 next_attempt_at = {next}, lease_owner = NULL, description = {description}, \
                 last_http_status = COALESCE({http_status}, deliveries.last_http_status), \
                 updated_at = ? FROM {source} \
                 WHERE deliveries.id = {id} AND COALESCE(deliveries.lease_owner, '') = ?",
                id = r.field(0),
                status = r.field(1),
                attempts = r.field(2),
                next = r.field(3),
                description = r.field(4),
                http_status = r.field(5),
                source = r.table(),
            )
        },
    )
}

fn settle(
    status: DeliveryStatus,
    next: Option<i64>,
    description: &str,
) -> sea_orm::UpdateMany<delivery::Entity> {
    delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(status.as_str()))
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
        .col_expr(
            delivery::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(delivery::Column::Description, Expr::value(description))
}

fn reschedule(condition: Condition, now: Timestamp) -> sea_orm::UpdateMany<delivery::Entity> {
    settle(DeliveryStatus::Scheduled, Some(now.unix_micros()), "")
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now.unix_micros()))
        .filter(condition)
        .filter(delivery::Column::Status.is_in([
            DeliveryStatus::Failure.as_str(),
            DeliveryStatus::Discarded.as_str(),
        ]))
}

fn filter_condition(project: &ProjectId, filter: &DeliveryFilter) -> Condition {
    let mut condition = Condition::all().add(delivery::Column::ProjectId.eq(project.as_str()));
    if let Some(event) = &filter.event_id {
        condition = condition.add(delivery::Column::EventId.eq(event.as_str()));
    }
    if let Some(endpoint) = &filter.endpoint_id {
        condition = condition.add(delivery::Column::EndpointId.eq(endpoint.as_str()));
    }
    if !filter.statuses.is_empty() {
        condition = condition
            .add(delivery::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(after) = filter.created_after {
        condition = condition.add(delivery::Column::CreatedAt.gte(after.unix_micros()));
    }
    if let Some(before) = filter.created_before {
        condition = condition.add(delivery::Column::CreatedAt.lt(before.unix_micros()));
    }
    condition
}

/// A `delivery_attempts` row as [`rows::insert`] writes it, in
/// `ATTEMPT_COLUMNS` order.
type AttemptRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    u32,
    &'a str,
    i64,
    Option<i64>,
    Option<u16>,
    Option<String>,
    String,
    &'a str,
    &'a str,
    &'a str,
    i64,
);

const ATTEMPT_COLUMNS: [(&str, Field); 14] = [
    ("id", Field::Text),
    ("delivery_id", Field::Text),
    ("project_id", Field::Text),
    ("number", Field::Integer),
    ("url", Field::Text),
    ("requested_at", Field::Integer),
    ("responded_at", Field::Integer),
    ("http_status", Field::Integer),
    ("error", Field::Text),
    ("ip_address", Field::Text),
    ("request_headers", Field::Text),
    ("response_headers", Field::Text),
    ("response_body", Field::Text),
    ("duration_ms", Field::Integer),
];

fn attempt_row(a: &Attempt) -> AttemptRow<'_> {
    (
        a.id.as_str(),
        a.delivery_id.as_str(),
        a.project_id.as_str(),
        a.number,
        &a.url,
        a.requested_at.unix_micros(),
        a.responded_at.map(Timestamp::unix_micros),
        a.http_status,
        a.error.as_ref().map(ToString::to_string),
        a.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
        a.request_headers.as_json(),
        a.response_headers.as_json(),
        &a.response_body,
        // The column is a 32-bit INTEGER.
        i64::from(a.duration_ms.min(i32::MAX as u32)),
    )
}

fn delivery_from_row(row: delivery::Model) -> Result<Delivery, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "deliveries",
        detail: format!("{} {field}: {detail}", row.id),
    };
    Ok(Delivery {
        id: row
            .id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("id", e.0))?,
        project_id: row
            .project_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("project_id", e.0))?,
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
        acknowledged_at: Timestamp::from_unix_micros(row.acknowledged_at),
        updated_at: Timestamp::from_unix_micros(row.updated_at),
        last_http_status: u16::try_from(row.last_http_status).ok().filter(|s| *s != 0),
        description: row.description,
    })
}

pub(super) fn attempt_from_row(row: delivery_attempt::Model) -> Result<Attempt, StoreError> {
    let corrupt = |field: &str, detail: String| StoreError::Corrupt {
        table: "delivery_attempts",
        detail: format!("{} {field}: {detail}", row.id),
    };
    let error = row.error.as_deref().map(|text| {
        let (class, message) = text.split_once(": ").unwrap_or(("other", text));
        AttemptError {
            class: ErrorClass::from_stored(class),
            message: message.to_owned(),
        }
    });
    Ok(Attempt {
        id: row
            .id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("id", e.0))?,
        delivery_id: row
            .delivery_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("delivery_id", e.0))?,
        project_id: row
            .project_id
            .parse()
            .map_err(|e: crate::domain::Invalid| corrupt("project_id", e.0))?,
        number: u32::try_from(row.number).unwrap_or(0),
        url: row.url,
        requested_at: Timestamp::from_unix_micros(row.requested_at),
        responded_at: row.responded_at.map(Timestamp::from_unix_micros),
        http_status: row.http_status.and_then(|s| u16::try_from(s).ok()),
        error,
        ip_address: row.ip_address.parse().ok(),
        request_headers: RecordedHeaders::from_json(row.request_headers)
            .map_err(|e| corrupt("request_headers", e.to_string()))?,
        response_headers: RecordedHeaders::from_json(row.response_headers)
            .map_err(|e| corrupt("response_headers", e.to_string()))?,
        response_body: row.response_body,
        duration_ms: u32::try_from(row.duration_ms).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(succeeded: bool, failures: i64) -> Health {
        Health {
            succeeded,
            failures,
            ..Health::default()
        }
    }

    /// The statements' text, first words only, for `health` by endpoint.
    fn breaker_sql(entries: Vec<(u128, Health)>) -> Vec<String> {
        let ids: Vec<EndpointId> = entries
            .iter()
            .map(|(id, _)| EndpointId::from_uuid(uuid::Uuid::from_u128(*id)))
            .collect();
        let map: BTreeMap<&EndpointId, Health> = ids
            .iter()
            .zip(entries.into_iter().map(|(_, h)| h))
            .collect();
        breaker_statements(DbBackend::Sqlite, &map, Timestamp::from_unix_micros(0), 50)
            .into_iter()
            .map(|s| s.sql.chars().take(100).collect())
            .collect()
    }

    #[test]
    fn breaker_writes_only_the_statements_a_batch_can_change() {
        let (a, b) = (1, 2);
        assert!(breaker_sql(vec![]).is_empty());

        let successes = breaker_sql(vec![(a, health(true, 0)), (b, health(true, 0))]);
        assert_eq!(successes.len(), 2, "{successes:?}");
        assert!(successes[0].contains("status = 'active'"), "{successes:?}");
        assert!(
            successes[1].contains("consecutive_failures = "),
            "{successes:?}"
        );

        let failures = breaker_sql(vec![(a, health(false, 3))]);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].contains("consecutive_failures + "),
            "{failures:?}"
        );
        assert!(failures[1].contains("status = 'inactive'"), "{failures:?}");

        // A success followed by failures needs all four: its count is set
        // to the failures after the success, then checked against the
        // threshold.
        assert_eq!(breaker_sql(vec![(a, health(true, 2))]).len(), 4);
        assert_eq!(
            breaker_sql(vec![(a, health(true, 0)), (b, health(false, 1))]).len(),
            4
        );
    }
}
