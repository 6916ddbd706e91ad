//! Storage facts that the API cannot show: SQLite's journal and sync modes,
//! keys kept only as hashes, concurrent migration on PostgreSQL. Each runs
//! on SQLite, and on PostgreSQL too when `HOOKD_TEST_DATABASE_URL` is set.

use sea_orm::{ConnectionTrait, Statement};

use super::{DatabaseTarget, Durability, Store};
use crate::domain::project::ProjectName;

fn postgres_target() -> Option<DatabaseTarget> {
    let url = std::env::var("HOOKD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    Some(DatabaseTarget::Postgres {
        url,
        schema: Some(format!("t_{}", uuid::Uuid::new_v4().simple())),
        max_connections: 4,
    })
}

/// SQLite in `dir`, then PostgreSQL when `HOOKD_TEST_DATABASE_URL` is set.
fn every_backend(
    dir: &std::path::Path,
    durability: Durability,
) -> impl Iterator<Item = DatabaseTarget> {
    let sqlite = DatabaseTarget::Sqlite {
        path: dir.join("hookd.db"),
        durability,
    };
    std::iter::once(sqlite).chain(postgres_target())
}

async fn drop_schema(store: &Store, target: &DatabaseTarget) {
    if let DatabaseTarget::Postgres {
        schema: Some(schema),
        ..
    } = target
    {
        store
            .db
            .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }
}

async fn text_column(store: &Store, sql: &str) -> Vec<String> {
    let backend = store.db.get_database_backend();
    store
        .db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// A migrated SQLite store in a new temporary directory (kept alive by the
/// returned handle).
async fn sqlite_store(durability: Durability) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&DatabaseTarget::Sqlite {
        path: dir.path().join("hookd.db"),
        durability,
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_uses_wal_and_fsyncs_every_commit_by_default() {
    let dir = tempfile::tempdir().unwrap();
    for (durability, synchronous) in [(Durability::Full, 2), (Durability::Relaxed, 1)] {
        let target = DatabaseTarget::Sqlite {
            path: dir.path().join(format!("{durability:?}.db")),
            durability,
        };
        let store = Store::connect(&target).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(text_column(&store, "PRAGMA journal_mode").await, ["wal"]);
        let backend = store.db.get_database_backend();
        let row = store
            .db
            .query_one_raw(Statement::from_string(backend, "PRAGMA synchronous"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get_by_index::<i32>(0).unwrap(),
            synchronous,
            "{durability:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_checkpoints_only_when_asked() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let backend = store.db.get_database_backend();
    let row = store
        .db
        .query_one_raw(Statement::from_string(backend, "PRAGMA wal_autocheckpoint"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 0);
    let (pages, copied) = store.checkpoint().await.unwrap().unwrap();
    assert!(pages > 0, "the WAL held the migrations until now");
    assert_eq!(
        copied, pages,
        "with no reader in the way, all of it is copied"
    );
}

#[tokio::test]
async fn api_keys_are_stored_only_as_sha256() {
    let dir = tempfile::tempdir().unwrap();
    for target in every_backend(dir.path(), Durability::Full) {
        let store = Store::connect(&target).await.unwrap();
        store.migrate().await.unwrap();
        let (_, key) = crate::cli::project::create(&store, ProjectName::parse("p").unwrap())
            .await
            .unwrap();
        let hashes = text_column(&store, "SELECT key_hash FROM api_keys").await;
        assert_eq!(hashes, [key.hash().as_str()]);
        for column in ["id", "project_id", "key_hash", "display_prefix"] {
            for value in text_column(&store, &format!("SELECT {column} FROM api_keys")).await {
                assert!(!value.contains(key.expose()), "{column} holds the key");
            }
        }
        drop_schema(&store, &target).await;
    }
}

#[tokio::test]
async fn concurrent_migrations_on_postgres_take_turns() {
    let Some(target) = postgres_target() else {
        eprintln!("HOOKD_TEST_DATABASE_URL unset: PostgreSQL run skipped");
        return;
    };
    use sea_orm_migration::MigratorTrait;

    // Four "processes" starting at once on an empty schema.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Store::connect(&target).await.unwrap());
    }
    let mut migrating = tokio::task::JoinSet::new();
    for store in stores.clone() {
        migrating.spawn(async move { store.migrate().await });
    }
    while let Some(result) = migrating.join_next().await {
        result.unwrap().expect("every concurrent migrator succeeds");
    }
    let applied = text_column(&stores[0], "SELECT version FROM seaql_migrations").await;
    assert_eq!(
        applied.len(),
        crate::migration::Migrator::migrations().len()
    );
    drop_schema(&stores[0], &target).await;
}

/// The steps of SQLite's plan for `statement`, as `EXPLAIN QUERY PLAN`
/// gives them.
async fn query_plan(store: &Store, statement: Statement) -> Vec<String> {
    // EXPLAIN opens no transaction, so it would plan with whatever schema
    // its connection last read (perhaps from before the migrations): read
    // the table first, on the same connection.
    let txn = sea_orm::TransactionTrait::begin(&store.db).await.unwrap();
    txn.query_one_raw(Statement::from_string(
        statement.db_backend,
        "SELECT count(*) FROM deliveries",
    ))
    .await
    .unwrap();
    txn.query_all_raw(Statement {
        sql: format!("EXPLAIN QUERY PLAN {}", statement.sql),
        ..statement
    })
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "detail").unwrap())
    .collect()
}

/// A claim must walk `deliveries_waiting` in time order and stop at its
/// limit, not read and sort every due delivery (which made each claim cost
/// as much as the whole backlog).
#[tokio::test]
async fn sqlite_claims_walk_the_waiting_index_without_sorting() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let backend = store.db.get_database_backend();
    let skip = [crate::domain::ids::EndpointId::from_uuid(
        uuid::Uuid::now_v7(),
    )];
    let candidates = super::deliveries::claim_candidates(
        backend,
        crate::domain::time::Timestamp::from_unix_micros(1),
        &skip,
        1000,
    );
    let plan = query_plan(&store, backend.build(&candidates)).await;
    assert!(
        plan.iter().any(|step| step.contains("deliveries_waiting")),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.contains("TEMP B-TREE")),
        "{plan:?}"
    );
}

/// SQLite is built with the options in .cargo/config.toml: a build that
/// lost them (the variable renamed upstream, say) would still work, only
/// slower.
#[tokio::test]
async fn sqlite_is_built_multi_threaded_without_memory_statistics() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let options = text_column(&store, "PRAGMA compile_options").await;
    for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
        assert!(
            options.iter().any(|o| o == wanted),
            "{wanted} not in {options:?}"
        );
    }
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
}

/// Statement journals stay in memory (2 = MEMORY): with the default, every
/// large multi-row statement of a transaction spilled its journal to a new
/// file in /var/tmp (75 such files in a quick end-to-end and fan-out run).
#[tokio::test]
async fn sqlite_connections_keep_temporary_files_in_memory() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    assert_eq!(
        text_column(
            &store,
            "SELECT CAST(temp_store AS TEXT) FROM pragma_temp_store"
        )
        .await,
        ["2"]
    );
}

/// Rows bound as parameters: the rows of NULLs that fill a statement to its
/// size are not written, and a settle looks each delivery up by its key
/// (walking the held-deliveries index instead, or the whole table, made
/// every settle cost as much as the deliveries held).
#[tokio::test]
async fn sqlite_bound_rows_write_only_real_rows_and_settle_by_key() {
    use super::rows::{self, Field};
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let backend = store.db.get_database_backend();
    store
        .db
        .execute_unprepared("CREATE TABLE t (id TEXT NOT NULL, n INTEGER)")
        .await
        .unwrap();
    let columns = [("id", Field::Text), ("n", Field::Integer)];
    let statements = rows::insert(backend, "t", &columns, vec![("a", 1), ("b", 3), ("c", 5)]);
    assert_eq!(statements.len(), 1, "one statement of four rows");
    store.transact_sqlite(statements).await.unwrap();
    assert_eq!(
        text_column(&store, "SELECT group_concat(id || n) FROM t").await,
        ["a1,b3,c5"]
    );

    let me = crate::domain::ids::NodeId::from_uuid(uuid::Uuid::now_v7());
    let id = crate::domain::ids::DeliveryId::from_uuid(uuid::Uuid::now_v7());
    let settled = [super::deliveries::Settled {
        id: id.as_str(),
        status: crate::domain::delivery::DeliveryStatus::Success,
        attempts: Some(1),
        next_attempt_at: None,
        description: "",
        http_status: Some(200),
    }];
    let settle = super::deliveries::settle_statements(
        backend,
        &me,
        &settled,
        crate::domain::time::Timestamp::from_unix_micros(1),
    )
    .remove(0);
    let plan = query_plan(&store, settle).await;
    assert!(
        plan.iter().any(
            |step| step.starts_with("SEARCH deliveries USING INDEX") && step.contains("(id=?)")
        ),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.starts_with("SCAN deliveries")),
        "{plan:?}"
    );
}

/// Under writes that never pause, a passive checkpoint never finds the WAL
/// fully copied, and the WAL only starts over after one that is; the
/// checkpoint must finish the job itself so that the WAL stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_steady_writes() {
    /// Seven times the restart limit.
    const PAGES: u64 = 30_000;
    let (_dir, store) = sqlite_store(Durability::Relaxed).await;
    store
        .db
        .execute_unprepared("CREATE TABLE filler (body BLOB NOT NULL)")
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while written < PAGES {
                // Like the engine's writes, under the write lock.
                let _write = store.write_lock().await;
                store
                    .db
                    .execute_unprepared("INSERT INTO filler (body) VALUES (zeroblob(40000))")
                    .await
                    .unwrap();
                written += 10;
            }
        })
    };
    let mut largest = 0;
    while !writer.is_finished() {
        let (pages, _) = store.checkpoint().await.unwrap().unwrap();
        largest = largest.max(pages);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
    assert!(largest < 12_288, "the WAL reached {largest} pages");
}

/// Inserts node `id`: a write for the one-trip transaction tests.
fn insert_node(id: &str) -> Statement {
    Statement::from_sql_and_values(
        sea_orm::DbBackend::Sqlite,
        "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?, 0, 0)",
        [id.into()],
    )
}

/// A write that fails after its first statement.
fn broken_write() -> Vec<Statement> {
    vec![
        insert_node("never"),
        Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "INSERT INTO no_such_table VALUES (1)",
        ),
    ]
}

/// Writes on the write connection, then through every connection of the
/// pool: all of them land only if no connection was left inside a
/// transaction (one would hold SQLite's write lock, and the others would
/// time out behind it).
async fn assert_every_connection_writes(store: &Store) {
    let ids: Vec<String> = (0..12).map(|n| format!("n{n:02}")).collect();
    for id in &ids[..6] {
        store.transact_sqlite(vec![insert_node(id)]).await.unwrap();
    }
    for id in &ids[6..] {
        store.db.execute_raw(insert_node(id)).await.unwrap();
    }
    assert_eq!(
        text_column(store, "SELECT id FROM nodes ORDER BY id").await,
        ids
    );
}

/// The write connection stays between transactions, out of the pool, and
/// is let go when one fails.
#[tokio::test]
async fn sqlite_write_connection_is_kept_until_a_write_fails() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let kept = || async { store.write_lock().await.connection().unwrap().is_some() };
    assert!(!kept().await, "none before the first write");
    store.transact_sqlite(vec![insert_node("a")]).await.unwrap();
    assert!(kept().await);
    let pool = store.db.get_sqlite_connection_pool();
    let in_pool = pool.size();
    store.transact_sqlite(vec![insert_node("b")]).await.unwrap();
    assert!(kept().await);
    assert_eq!(
        pool.size(),
        in_pool,
        "no connection taken from the pool again"
    );
    assert!(store.transact_sqlite(broken_write()).await.is_err());
    assert!(!kept().await, "closed after a failed write");
    store.transact_sqlite(vec![insert_node("c")]).await.unwrap();
    assert_eq!(
        text_column(&store, "SELECT id FROM nodes ORDER BY id").await,
        ["a", "b", "c"]
    );
}

/// Closing the store closes the write connection before the pool, so that
/// the last connection to close checkpoints and removes the WAL.
#[tokio::test]
async fn sqlite_close_leaves_no_wal() {
    let (dir, store) = sqlite_store(Durability::Full).await;
    store.transact_sqlite(vec![insert_node("a")]).await.unwrap();
    let wal = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-wal"))
        .expect("a WAL while open");
    store.close().await.unwrap();
    assert!(!wal.exists(), "{} left behind", wal.display());
}

/// A write that fails part-way leaves nothing behind, neither its earlier
/// statements' rows nor a connection still inside its transaction.
#[tokio::test]
async fn sqlite_one_trip_transaction_fails_whole_and_leaves_no_connection_in_it() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let failed = store.transact_sqlite(broken_write()).await;
    assert!(failed.is_err());
    assert!(text_column(&store, "SELECT id FROM nodes").await.is_empty());
    assert_every_connection_writes(&store).await;
}

/// A write dropped while its text runs (say, by a timeout around it) may
/// fail there with nobody to roll it back: its connection must not be kept.
#[tokio::test]
async fn sqlite_one_trip_transaction_dropped_part_way_leaves_no_connection_in_it() {
    let (_dir, store) = sqlite_store(Durability::Full).await;
    for _ in 0..4 {
        let write = store.transact_sqlite(broken_write());
        // Polled until it waits for the worker, then dropped.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, write).await;
    }
    assert_every_connection_writes(&store).await;
}

/// vendor/sqlx-sqlite holds a statement's result back until the next row
/// or the end of the text: the results still come in the text's order,
/// rows as they are read, and those before an error come before it.
#[tokio::test]
async fn sqlite_texts_of_many_statements_keep_their_results_in_order() {
    use sea_orm::sqlx::{self, Either, Row};
    use tokio_stream::StreamExt;
    let (_dir, store) = sqlite_store(Durability::Full).await;
    let mut conn = store
        .db
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .unwrap();
    // What a text yields, in order, up to its first error.
    let mut run = async |text: &'static str| {
        let mut seen = Vec::new();
        let mut results = sqlx::raw_sql(sqlx::AssertSqlSafe(text)).fetch_many(&mut *conn);
        while let Some(item) = results.next().await {
            seen.push(match item {
                Ok(Either::Left(_)) => "done".to_owned(),
                Ok(Either::Right(row)) => format!("row {}", row.get::<i64, _>(0)),
                Err(_) => "error".to_owned(),
            });
        }
        seen
    };
    assert_eq!(
        run(
            "CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2); \
             SELECT n FROM t ORDER BY n; INSERT INTO t VALUES (3); SELECT count(*) FROM t"
        )
        .await,
        [
            "done", "done", "row 1", "row 2", "done", "done", "row 3", "done"
        ]
    );
    assert_eq!(
        run("INSERT INTO t VALUES (4); INSERT INTO t VALUES (5); INSERT INTO nowhere VALUES (1)")
            .await,
        ["done", "done", "error"]
    );
}

/// On PostgreSQL, waits until every row of `delivery_changes` is settled
/// (its transaction older than every running one, see `watch::settled`):
/// other tests' transactions on the same server can hold that back.
async fn wait_until_settled(store: &Store) {
    if store.db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return;
    }
    for _ in 0..200 {
        let unsettled = text_column(
            store,
            "SELECT count(*)::text FROM delivery_changes \
             WHERE txid >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        )
        .await;
        if unsettled == ["0"] {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("delivery changes still unsettled after 10 s");
}

/// The clock of the delivery-path fixtures.
const FIXTURE_NOW: crate::domain::time::Timestamp =
    crate::domain::time::Timestamp::from_unix_micros(1_700_000_000_000_000);

/// A migrated store on `target` with a live node and, for each of `names`,
/// a project with one endpoint; `write_held` publishes through it.
struct Fixture {
    store: Store,
    node: crate::domain::ids::NodeId,
    projects: Vec<(
        crate::domain::ids::ProjectId,
        crate::domain::ids::EndpointId,
    )>,
}

impl Fixture {
    async fn new(target: &DatabaseTarget, names: &[&str]) -> Self {
        use crate::domain::endpoint::{Endpoint, EndpointSpec};
        use crate::domain::fields::{EndpointName, EndpointUrl};
        use crate::domain::ids::{EndpointId, NodeId};
        use crate::domain::secret::Secret;

        let store = Store::connect(target).await.unwrap();
        store.migrate().await.unwrap();
        let node = NodeId::from_uuid(uuid::Uuid::now_v7());
        store.heartbeat(&node, FIXTURE_NOW).await.unwrap();
        let secret = Secret::parse("whsec_abcdefghijklmnopqrstuvwxyz012345").unwrap();
        let mut projects = Vec::new();
        for name in names {
            let (project, _) =
                crate::cli::project::create(&store, ProjectName::parse(name).unwrap())
                    .await
                    .unwrap();
            let endpoint = Endpoint::new(
                EndpointId::from_uuid(uuid::Uuid::now_v7()),
                project.clone(),
                EndpointSpec::new(
                    EndpointName::parse(name).unwrap(),
                    EndpointUrl::parse("http://127.0.0.1:9/hook").unwrap(),
                ),
                FIXTURE_NOW,
            );
            store.insert_endpoint(&endpoint, &secret).await.unwrap();
            projects.push((project, endpoint.id));
        }
        Self {
            store,
            node,
            projects,
        }
    }

    /// Publishes `n` events of project `index`, one held delivery each, in
    /// one write; returns them.
    async fn write_held(&self, index: usize, n: usize) -> Vec<super::PublishRecord> {
        let (project, endpoint) = &self.projects[index];
        let records: Vec<super::PublishRecord> = (0..n)
            .map(|_| held_delivery(project, endpoint, &self.node, FIXTURE_NOW))
            .collect();
        let refs: Vec<&super::PublishRecord> = records.iter().collect();
        self.store.write(&refs, FIXTURE_NOW, None).await.unwrap();
        records
    }
}

/// One delivery, held by `node`, of a new event of `project`.
fn held_delivery(
    project: &crate::domain::ids::ProjectId,
    endpoint: &crate::domain::ids::EndpointId,
    node: &crate::domain::ids::NodeId,
    now: crate::domain::time::Timestamp,
) -> super::PublishRecord {
    use crate::domain::delivery::DeliveryStatus;
    use crate::domain::event::{Event, Payload};
    use crate::domain::fields::{CustomHeaders, EventType};
    use crate::domain::ids::{DeliveryId, EventId};
    super::PublishRecord {
        event: std::sync::Arc::new(Event {
            id: EventId::from_uuid(uuid::Uuid::now_v7()),
            project_id: project.clone(),
            event_type: EventType::parse("quiet.test").unwrap(),
            payload: Payload::parse("{}", 1024).unwrap(),
            custom_headers: CustomHeaders::default(),
            idempotency_key: None,
            created_at: now,
        }),
        deliveries: vec![super::NewDelivery {
            id: DeliveryId::from_uuid(uuid::Uuid::now_v7()),
            endpoint_id: endpoint.clone(),
            status: DeliveryStatus::Processing,
            lease_owner: Some(node.clone()),
            description: String::new(),
        }],
    }
}

/// A project whose changes sit behind tens of thousands of another
/// project's: its watchers and its meta-event forwarding still find every
/// one of its changes, in order, and (on SQLite, where the change log has no
/// per-project index) each read looks through a bounded window and moves
/// past what matched nothing, instead of reading from the same place again.
#[tokio::test]
async fn a_quiet_projects_changes_are_found_behind_a_busy_projects() {
    use crate::domain::delivery::DeliveryStatus;
    use crate::domain::meta::{MetaEventType, MetaSettings};
    use crate::domain::time::Timestamp;
    use crate::domain::watch::{Cursor, WatchFilter};

    let dir = tempfile::tempdir().unwrap();
    for target in every_backend(dir.path(), Durability::Relaxed) {
        let fixture = Fixture::new(&target, &["quiet", "busy"]).await;
        let (store, node, now) = (&fixture.store, &fixture.node, FIXTURE_NOW);
        let is_sqlite = matches!(target, DatabaseTarget::Sqlite { .. });
        let quiet = &fixture.projects[0].0;
        let (quiet_i, busy_i) = (0, 1);
        store
            .set_meta_settings(
                quiet,
                &MetaSettings {
                    enabled: true,
                    url: None,
                    secret: None,
                    types: vec![MetaEventType::DeliveryFailed],
                },
                now,
            )
            .await
            .unwrap();

        let first = fixture.write_held(quiet_i, 1).await;
        // More than twice as many of the busy project's changes as one
        // SQLite read looks through.
        for _ in 0..9 {
            fixture.write_held(busy_i, 5_000).await;
        }
        let second = fixture.write_held(quiet_i, 1).await;
        // The second delivery is given up: a FAILED meta event for it.
        let discard = [super::DeliveryResult::Discarded {
            delivery_id: second[0].deliveries[0].id.clone(),
            description: "given up".into(),
        }];
        store
            .write(
                &[],
                now,
                Some(&super::ResultBatch {
                    me: node,
                    results: &discard,
                    now,
                    breaker_failures: 50,
                }),
            )
            .await
            .unwrap();

        wait_until_settled(store).await;
        let mut seen = Vec::new();
        let (mut cursor, mut reads, mut empty_reads_that_moved) = (Cursor::START, 0, 0);
        loop {
            let page = store
                .delivery_changes(quiet, cursor, &WatchFilter::default(), 100)
                .await
                .unwrap();
            reads += 1;
            assert!(page.through >= cursor, "a read never moves back");
            if let Some(last) = page.items.last() {
                assert!(page.through >= last.cursor);
            } else if page.through > cursor {
                empty_reads_that_moved += 1;
            }
            seen.extend(page.items.iter().map(|c| (c.delivery_id.clone(), c.status)));
            cursor = page.through;
            if !page.more {
                break;
            }
        }
        let expected = vec![
            (
                first[0].deliveries[0].id.clone(),
                DeliveryStatus::Processing,
            ),
            (
                second[0].deliveries[0].id.clone(),
                DeliveryStatus::Processing,
            ),
            (
                second[0].deliveries[0].id.clone(),
                DeliveryStatus::Discarded,
            ),
        ];
        assert_eq!(seen, expected, "{target:?}");
        if is_sqlite {
            assert!(reads > 1, "one read looked through the whole log");
            assert!(
                empty_reads_that_moved > 0,
                "reads moved past the busy project"
            );
        }
        // Nothing new: a read from where the last ended stays there.
        let idle = store
            .delivery_changes(quiet, cursor, &WatchFilter::default(), 100)
            .await
            .unwrap();
        assert!(idle.items.is_empty() && !idle.more && idle.through == cursor);
        // Watching from the head sees only what comes next.
        let head = store.delivery_changes_head(quiet).await.unwrap();
        assert!(head >= cursor);
        let after_head = store
            .delivery_changes(quiet, head, &WatchFilter::default(), 100)
            .await
            .unwrap();
        assert!(after_head.items.is_empty());

        let forwarded = store.forward_delivery_meta_events(now).await.unwrap();
        assert_eq!(forwarded, 1, "{target:?}");
        let meta = store
            .meta_events_after(quiet, Cursor::START, &[], 100)
            .await
            .unwrap();
        assert_eq!(meta.len(), 1);
        assert_eq!(meta[0].event_type, MetaEventType::DeliveryFailed);
        assert!(
            meta[0]
                .payload
                .contains(second[0].deliveries[0].id.as_str())
        );
        assert_eq!(store.forward_delivery_meta_events(now).await.unwrap(), 0);

        // While other projects' changes since the quiet one's position are
        // few, a pass commits nothing; once they add up, it moves past them.
        let position = || async { store.oldest_forward_position().await.unwrap().unwrap() };
        let forwarded_through = position().await;
        fixture.write_held(busy_i, 10).await;
        assert_eq!(store.forward_delivery_meta_events(now).await.unwrap(), 0);
        assert_eq!(position().await, forwarded_through, "{target:?}");
        fixture
            .write_held(busy_i, super::meta::SKIP_AFTER as usize)
            .await;
        assert_eq!(store.forward_delivery_meta_events(now).await.unwrap(), 0);
        if is_sqlite {
            assert!(position().await.seq >= forwarded_through.seq + super::meta::SKIP_AFTER);
        } else {
            // On PostgreSQL the measure is transactions, not changes.
            assert_eq!(position().await, forwarded_through);
            for _ in 0..super::meta::SKIP_AFTER_TRANSACTIONS + 10 {
                store
                    .db
                    .execute_unprepared("SELECT pg_current_xact_id()")
                    .await
                    .unwrap();
            }
            wait_until_settled(store).await;
            assert_eq!(store.forward_delivery_meta_events(now).await.unwrap(), 0);
            let moved = position().await;
            assert!(
                moved.txid >= forwarded_through.txid + super::meta::SKIP_AFTER_TRANSACTIONS,
                "{moved} after {forwarded_through}"
            );
        }
        // With the quiet project's position past them, every change can
        // be pruned, the busy project's last ones too.
        wait_until_settled(store).await;
        let later = Timestamp::from_unix_micros(now.unix_micros() + 1);
        store.prune_delivery_changes(later).await.unwrap();
        let left = text_column(store, "SELECT CAST(count(*) AS TEXT) FROM delivery_changes").await;
        assert_eq!(left, ["0"], "{target:?}");
        drop_schema(store, &target).await;
    }
}

/// A stream started after the change log was pruned empty starts at or
/// after the pruned position, so its first read finds what comes next
/// instead of "fell behind the retained history".
#[tokio::test]
async fn watching_after_the_log_was_pruned_empty_starts_after_the_pruned_position() {
    use crate::domain::time::Timestamp;
    use crate::domain::watch::WatchFilter;

    let dir = tempfile::tempdir().unwrap();
    for target in every_backend(dir.path(), Durability::Relaxed) {
        let fixture = Fixture::new(&target, &["p"]).await;
        let (store, now) = (&fixture.store, FIXTURE_NOW);
        let project = &fixture.projects[0].0;
        fixture.write_held(0, 3).await;
        let later = Timestamp::from_unix_micros(now.unix_micros() + 1);
        // Only settled rows are pruned.
        wait_until_settled(store).await;
        assert_eq!(store.prune_delivery_changes(later).await.unwrap(), 3);
        let pruned = store.delivery_changes_pruned_through().await.unwrap();
        let head = store.delivery_changes_head(project).await.unwrap();
        assert!(
            head >= pruned,
            "{target:?}: head {head} behind pruned {pruned}"
        );

        let next = fixture.write_held(0, 1).await;
        wait_until_settled(store).await;
        let page = store
            .delivery_changes(project, head, &WatchFilter::default(), 100)
            .await
            .unwrap();
        let ids: Vec<_> = page.items.iter().map(|c| c.delivery_id.clone()).collect();
        assert_eq!(ids, [next[0].deliveries[0].id.clone()], "{target:?}");
        drop_schema(store, &target).await;
    }
}

/// Texts are bound in place (vendor/sqlx-sqlite's `SQLITE_STATIC` patch):
/// a cached statement used again, after a failed step and with other
/// arguments, or with fewer of them, sees only the values of its own call.
#[tokio::test]
async fn sqlite_statements_used_again_see_only_their_own_texts() {
    let (_dir, store) = sqlite_store(Durability::Relaxed).await;
    let run = |sql: &str, values: Vec<sea_orm::Value>| {
        store.db.execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            sql,
            values,
        ))
    };
    run(
        "CREATE TABLE bound (k TEXT PRIMARY KEY, v TEXT, b BLOB)",
        vec![],
    )
    .await
    .unwrap();
    let insert = "INSERT INTO bound (k, v, b) VALUES (?, ?, ?)";
    let value = |i: usize| format!("{i}:").repeat(1 + i * 7);
    for i in 0..40 {
        run(
            insert,
            vec![
                format!("k{i}").into(),
                value(i).into(),
                value(i).into_bytes().into(),
            ],
        )
        .await
        .unwrap();
        // The same key again fails on the same cached statement.
        run(
            insert,
            vec![format!("k{i}").into(), "dup".into(), "dup".into()],
        )
        .await
        .unwrap_err();
    }
    // Fewer arguments than parameters: the rest are NULL, not the last call's.
    run(insert, vec!["short".into()]).await.unwrap();
    let rows = store
        .db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT k, v, b FROM bound ORDER BY rowid",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 41);
    for (i, row) in rows.iter().take(40).enumerate() {
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), format!("k{i}"));
        assert_eq!(row.try_get_by_index::<String>(1).unwrap(), value(i));
        assert_eq!(
            row.try_get_by_index::<Vec<u8>>(2).unwrap(),
            value(i).into_bytes()
        );
    }
    assert_eq!(rows[40].try_get_by_index::<String>(0).unwrap(), "short");
    assert_eq!(
        rows[40].try_get_by_index::<Option<String>>(1).unwrap(),
        None
    );
    assert_eq!(
        rows[40].try_get_by_index::<Option<Vec<u8>>>(2).unwrap(),
        None
    );
}
