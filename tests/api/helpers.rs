//! `spawn_app()` and friends: one isolated server and database per test.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use hookd::app::{App, AppConfig, AppError};
use hookd::delivery::{DeliveryConfig, Engine};
use hookd::domain::ids::ProjectId;
use hookd::domain::project::ProjectName;
use hookd::grpc::pb;
use hookd::grpc::pb::endpoint_service_client::EndpointServiceClient;
use hookd::grpc::pb::event_service_client::EventServiceClient;
use hookd::grpc::{WatchConfig, Watches};
use hookd::store::{DatabaseTarget, Durability, Store};
use hookd::system::ShiftedClock;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

pub(crate) const POSTGRES_URL_VAR: &str = "HOOKD_TEST_DATABASE_URL";

/// Runs the body once per database backend, as separate tests:
/// `db_test!(name, |app| async move { ... })` makes `name::sqlite` and
/// `name::postgres`. The PostgreSQL one passes vacuously only when
/// `HOOKD_TEST_DATABASE_URL` is unset; CI always sets it.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                $body.await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = $crate::helpers::Backend::postgres() else {
                    eprintln!(
                        "{} unset: PostgreSQL run skipped",
                        $crate::helpers::POSTGRES_URL_VAR
                    );
                    return;
                };
                let $app = $crate::helpers::spawn_app(backend).await;
                $body.await;
            }
        }
    };
}

/// For cases that need their own server setup: `backend_test!(name, body)`
/// makes `name::sqlite` and `name::postgres`, each calling the async
/// `body(backend)` defined beside it. The PostgreSQL one passes vacuously only
/// when `HOOKD_TEST_DATABASE_URL` is unset; CI always sets it.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = $crate::helpers::Backend::postgres() else {
                    eprintln!(
                        "{} unset: PostgreSQL run skipped",
                        $crate::helpers::POSTGRES_URL_VAR
                    );
                    return;
                };
                super::$body(backend).await;
            }
        }
    };
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite,
    Postgres { url: String },
}

impl Backend {
    pub(crate) fn postgres() -> Option<Self> {
        std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| Self::Postgres { url })
    }
}

/// A database of the test's own: a temp SQLite file, or a fresh PostgreSQL
/// schema that is dropped afterwards.
pub(crate) struct TestDb {
    pub(crate) target: DatabaseTarget,
    _dir: Option<tempfile::TempDir>,
    /// Whether dropping this drops the PostgreSQL schema.
    owner: bool,
}

impl TestDb {
    pub(crate) fn new(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                Self {
                    target: DatabaseTarget::Sqlite {
                        path: dir.path().join("hookd.db"),
                        durability: Durability::Full,
                    },
                    _dir: Some(dir),
                    owner: true,
                }
            }
            Backend::Postgres { url } => Self {
                target: DatabaseTarget::Postgres {
                    url: url.clone(),
                    schema: Some(format!("t_{}", uuid::Uuid::new_v4().simple())),
                    max_connections: 8,
                },
                _dir: None,
                owner: true,
            },
        }
    }
}

impl TestDb {
    /// The same database, for a second server; only the original drops it.
    pub(crate) fn shared_with(other: &TestDb) -> Self {
        Self {
            target: other.target.clone(),
            _dir: None,
            owner: false,
        }
    }

    /// Opens a transaction that blocks every write to `endpoints` until it
    /// ends, so a test can keep a call in flight as long as it likes.
    pub(crate) async fn hold_endpoint_writes(&self) -> sea_orm::DatabaseTransaction {
        use sea_orm::{ConnectOptions, ConnectionTrait, Database, TransactionTrait};
        let (options, lock) = match &self.target {
            DatabaseTarget::Sqlite { path, .. } => (
                ConnectOptions::new(format!("sqlite://{}", path.display())),
                // Any write takes SQLite's single write lock.
                "UPDATE projects SET updated_at = updated_at",
            ),
            DatabaseTarget::Postgres { url, schema, .. } => {
                let mut options = ConnectOptions::new(url.clone());
                if let Some(schema) = schema {
                    options.set_schema_search_path(schema.clone());
                }
                (options, "LOCK TABLE endpoints IN EXCLUSIVE MODE")
            }
        };
        let db = Database::connect(options).await.expect("connects");
        let txn = db.begin().await.expect("begins");
        txn.execute_unprepared(lock).await.expect("takes the lock");
        txn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let DatabaseTarget::Postgres {
            url,
            schema: Some(schema),
            ..
        } = &self.target
        else {
            return;
        };
        if !self.owner {
            return;
        }
        let (url, schema) = (url.clone(), schema.clone());
        // Drop runs inside the test's runtime; a fresh one on a plain thread
        // can block on the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(db) = sea_orm::Database::connect(url).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                    let _ = db.close().await;
                }
            });
        })
        .join();
    }
}

/// Sends `Bearer <api_key>` with every call.
fn authorize_with(api_key: &str) -> Authorize {
    let key = format!("Bearer {api_key}");
    Box::new(move |mut req: Request<()>| {
        req.metadata_mut()
            .insert("authorization", key.parse().expect("ascii metadata"));
        Ok(req)
    })
}

/// Adds the `authorization` metadata to every call.
type Authorize = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
pub(crate) type EndpointClient = EndpointServiceClient<InterceptedService<Channel, Authorize>>;
pub(crate) type EventClient = EventServiceClient<InterceptedService<Channel, Authorize>>;
pub(crate) type ProjectClient =
    pb::project_service_client::ProjectServiceClient<InterceptedService<Channel, Authorize>>;
pub(crate) type MetaEventClient =
    pb::meta_event_service_client::MetaEventServiceClient<InterceptedService<Channel, Authorize>>;

pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) project_id: ProjectId,
    pub(crate) api_key: String,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    /// The server's open streams.
    pub(crate) watches: Watches,
    /// Move time forward with `clock.advance(..)`, then `engine.tick()`.
    pub(crate) clock: Arc<ShiftedClock>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), AppError>>>,
    // Last: the database outlives the server and store handles above.
    // `None` only while `restart` moves it to the next server.
    db: Option<TestDb>,
}

pub(crate) const TEST_GRACE: Duration = Duration::from_secs(2);

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_on(TestDb::new(&backend), test_delivery_config()).await
}

/// Test settings: quick polling, receivers on loopback allowed; otherwise
/// the defaults.
pub(crate) fn test_delivery_config() -> DeliveryConfig {
    DeliveryConfig {
        poll_interval: Duration::from_millis(50),
        node_ttl: Duration::from_secs(10),
        network: hookd::domain::network::NetworkPolicy::new(LOOPBACK, []).expect("valid CIDRs"),
        ..DeliveryConfig::default()
    }
}

/// What tests allow deliveries to reach: the receivers run on loopback.
pub(crate) const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// A server on an existing database (to restart one, say).
pub(crate) async fn spawn_app_on(db: TestDb, delivery: DeliveryConfig) -> TestApp {
    spawn_app_with(db, delivery, false).await
}

/// The same, choosing whether new endpoints are pinged.
pub(crate) async fn spawn_app_with(
    db: TestDb,
    delivery: DeliveryConfig,
    ping_endpoints: bool,
) -> TestApp {
    spawn_app_watching(db, delivery, ping_endpoints, WatchConfig::default()).await
}

/// The same, choosing how watch streams behave.
pub(crate) async fn spawn_app_watching(
    db: TestDb,
    delivery: DeliveryConfig,
    ping_endpoints: bool,
    watch: WatchConfig,
) -> TestApp {
    let clock = Arc::new(ShiftedClock::default());
    let app = App::build(AppConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: db.target.clone(),
        shutdown_grace: TEST_GRACE,
        delivery,
        clock: clock.clone(),
        rotation: hookd::domain::secret::RotationPolicy::default(),
        // Most tests point endpoints at addresses that cannot answer; the
        // ping has tests of its own.
        ping_endpoints,
        watch,
    })
    .await
    .expect("app builds");
    let addr = app.local_addr();
    let engine = app.engine();
    let watches = app.watches();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let store = Store::connect(&db.target).await.expect("store connects");
    let (project_id, key) =
        hookd::cli::project::create(&store, ProjectName::parse("test").unwrap())
            .await
            .expect("project created");
    TestApp {
        addr,
        project_id,
        api_key: key.expose().to_owned(),
        store,
        engine,
        watches,
        clock,
        shutdown: Some(tx),
        server: Some(server),
        db: Some(db),
    }
}

impl TestApp {
    pub(crate) fn db(&self) -> &TestDb {
        self.db.as_ref().expect("the database stays with the app")
    }

    /// Stops this server cleanly and starts a new one on the same database
    /// (with its own project; this one's key still works).
    pub(crate) async fn restart(mut self, delivery: DeliveryConfig) -> TestApp {
        self.shutdown().await.expect("clean shutdown");
        let db = self.db.take().expect("the database stays with the app");
        spawn_app_on(db, delivery).await
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .unwrap()
            .connect()
            .await
            .expect("connects to the server")
    }

    /// An EndpointService client sending `authorization` as given (or none).
    pub(crate) async fn endpoints_with(&self, authorization: Option<String>) -> EndpointClient {
        let interceptor: Authorize = Box::new(move |mut req: Request<()>| {
            if let Some(value) = &authorization {
                req.metadata_mut()
                    .insert("authorization", value.parse().expect("ascii metadata"));
            }
            Ok(req)
        });
        EndpointServiceClient::with_interceptor(self.channel().await, interceptor)
    }

    /// An EventService client acting for this app's project.
    pub(crate) async fn events(&self) -> EventClient {
        self.events_with(&self.api_key).await
    }

    /// An EventService client acting for the project of `api_key`.
    pub(crate) async fn events_with(&self, api_key: &str) -> EventClient {
        let key = format!("Bearer {api_key}");
        let interceptor: Authorize = Box::new(move |mut req: Request<()>| {
            req.metadata_mut()
                .insert("authorization", key.parse().expect("ascii metadata"));
            Ok(req)
        });
        EventServiceClient::with_interceptor(self.channel().await, interceptor)
    }

    /// Adds this app's API key to every call.
    fn authorize(&self) -> Authorize {
        authorize_with(&self.api_key)
    }

    /// A ProjectService client acting for this app's project.
    pub(crate) async fn projects(&self) -> ProjectClient {
        pb::project_service_client::ProjectServiceClient::with_interceptor(
            self.channel().await,
            self.authorize(),
        )
    }

    /// A MetaEventService client acting for this app's project.
    pub(crate) async fn meta_events(&self) -> MetaEventClient {
        self.meta_events_with(&self.api_key).await
    }

    /// A MetaEventService client acting for the project of `api_key`.
    pub(crate) async fn meta_events_with(&self, api_key: &str) -> MetaEventClient {
        pb::meta_event_service_client::MetaEventServiceClient::with_interceptor(
            self.channel().await,
            authorize_with(api_key),
        )
    }

    /// An EndpointService client acting for this app's project.
    pub(crate) async fn endpoints(&self) -> EndpointClient {
        self.endpoints_with(Some(format!("Bearer {}", self.api_key)))
            .await
    }

    /// A second project with its own key, for isolation tests.
    pub(crate) async fn other_project(&self) -> (ProjectId, String) {
        let (id, key) =
            hookd::cli::project::create(&self.store, ProjectName::parse("other").unwrap())
                .await
                .expect("project created");
        (id, key.expose().to_owned())
    }

    /// Creates an endpoint with just a name and URL.
    pub(crate) async fn create_endpoint(&self, name: &str) -> pb::Endpoint {
        self.endpoints()
            .await
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(endpoint(name)),
                ..Default::default()
            })
            .await
            .expect("endpoint created")
            .into_inner()
    }

    /// Stops the server as a signal would; returns what `run` returned.
    pub(crate) async fn shutdown(&mut self) -> Result<(), AppError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task did not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A minimal valid endpoint message.
pub(crate) fn endpoint(name: &str) -> pb::Endpoint {
    pb::Endpoint {
        name: name.to_owned(),
        url: "https://example.com/webhooks".to_owned(),
        ..Default::default()
    }
}

/// Asserts INVALID_ARGUMENT with a BadRequest violation naming `field`.
#[track_caller]
pub(crate) fn assert_invalid_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let violations = &details
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"))
        .field_violations;
    assert!(
        violations.iter().any(|v| v.field == field),
        "expected a violation of `{field}`, got {violations:?}"
    );
}

/// Polls GetDelivery until the delivery has `status` (or panics after
/// `within`, showing the last state seen).
pub(crate) async fn wait_for_delivery(
    app: &TestApp,
    id: &str,
    status: pb::DeliveryStatus,
    within: Duration,
) -> pb::Delivery {
    wait_for_delivery_with(app, &app.api_key, id, status, within).await
}

/// The same, for the project of `api_key`.
pub(crate) async fn wait_for_delivery_with(
    app: &TestApp,
    api_key: &str,
    id: &str,
    status: pb::DeliveryStatus,
    within: Duration,
) -> pb::Delivery {
    let mut client = app.events_with(api_key).await;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let delivery = client
            .get_delivery(pb::GetDeliveryRequest { id: id.to_owned() })
            .await
            .expect("delivery readable")
            .into_inner();
        if delivery.status == status as i32 {
            return delivery;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("delivery {id} never became {status:?}; last seen: {delivery:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers an endpoint at `receiver`'s `/hook`, signed with `secret`, with
/// whatever else `f` sets.
pub(crate) async fn receiver_endpoint(
    app: &TestApp,
    receiver: &crate::receiver::TestReceiver,
    secret: &str,
    f: impl FnOnce(&mut pb::Endpoint),
) -> pb::Endpoint {
    let mut ep = pb::Endpoint {
        name: "receiver".into(),
        url: receiver.url("/hook"),
        secret: secret.into(),
        ..Default::default()
    };
    f(&mut ep);
    app.endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(ep),
            ..Default::default()
        })
        .await
        .expect("endpoint created")
        .into_inner()
}

/// An `order.paid` event to one endpoint.
pub(crate) fn to_endpoint(id: &str, payload: &str) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event_type: "order.paid".into(),
        payload: payload.into(),
        target: Some(pb::create_event_request::Target::EndpointId(id.into())),
        ..Default::default()
    }
}

/// Publishes `event` and returns its first delivery's id.
pub(crate) async fn publish_event(app: &TestApp, event: pb::CreateEventRequest) -> String {
    app.events()
        .await
        .create_event(event)
        .await
        .expect("published")
        .into_inner()
        .deliveries[0]
        .id
        .clone()
}

/// Publishes a small event to `endpoint` and returns its delivery's id.
pub(crate) async fn publish_one(app: &TestApp, endpoint: &str) -> String {
    publish_event(app, to_endpoint(endpoint, r#"{"n":1}"#)).await
}

/// The first page of a delivery's attempts.
pub(crate) async fn attempts_of(app: &TestApp, delivery: &str) -> Vec<pb::DeliveryAttempt> {
    app.events()
        .await
        .list_delivery_attempts(pb::ListDeliveryAttemptsRequest {
            delivery_id: delivery.to_owned(),
            ..Default::default()
        })
        .await
        .expect("attempts readable")
        .into_inner()
        .attempts
}

/// The flags that point the hookd binary at a test database.
pub(crate) fn database_args(db: &TestDb) -> Vec<String> {
    match &db.target {
        DatabaseTarget::Sqlite { path, .. } => {
            vec![
                "--database-url".into(),
                format!("sqlite://{}", path.display()),
            ]
        }
        DatabaseTarget::Postgres { url, schema, .. } => {
            let mut args = vec!["--database-url".into(), url.clone()];
            args.extend(
                schema
                    .iter()
                    .flat_map(|s| ["--database-schema".into(), s.clone()]),
            );
            args
        }
    }
}

/// Seconds from `from` to `to`.
pub(crate) fn seconds_between(
    from: &Option<prost_types::Timestamp>,
    to: &Option<prost_types::Timestamp>,
) -> f64 {
    let secs = |t: &Option<prost_types::Timestamp>| {
        let t = t.as_ref().expect("timestamp set");
        t.seconds as f64 + f64::from(t.nanos) / 1e9
    };
    secs(to) - secs(from)
}
