//! Assembles the server: store, services, listener. `App::build` binds (port
//! 0 in tests) and `App::run` serves until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::delivery::{DeliveryConfig, Engine};
use crate::domain::secret::RotationPolicy;
use crate::domain::time::Clock;
use crate::grpc::pb::endpoint_service_server::EndpointServiceServer;
use crate::grpc::pb::event_service_server::EventServiceServer;
use crate::grpc::pb::meta_event_service_server::MetaEventServiceServer;
use crate::grpc::pb::project_service_server::ProjectServiceServer;
use crate::grpc::{Authenticator, EndpointApi, EventApi, ProjectApi, WatchConfig, Watches, pb};
use crate::store::{DatabaseTarget, Store, StoreError};

/// Everything `App::build` needs, already validated.
#[derive(Clone)]
pub struct AppConfig {
    pub listen: SocketAddr,
    pub database: DatabaseTarget,
    /// How long in-flight calls (and then in-flight deliveries) may run on
    /// after shutdown begins.
    pub shutdown_grace: Duration,
    pub delivery: DeliveryConfig,
    /// The system clock in production; tests move time by hand.
    pub clock: Arc<dyn Clock>,
    /// How long old signing secrets keep signing after a rotation.
    pub rotation: RotationPolicy,
    /// Ping new (and re-pointed) endpoints unless the request skips it.
    pub ping_endpoints: bool,
    /// How WatchDeliveries and WatchMetaEvents streams behave.
    pub watch: WatchConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the database: {0}")]
    Database(#[source] StoreError),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] StoreError),
    #[error("cannot start the delivery engine: {0}")]
    Engine(#[source] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Keepalive pings keep long calls (streams) alive behind proxies that drop
/// idle connections, and find dead peers.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Store,
    engine: Engine,
    clock: Arc<dyn Clock>,
    rotation: RotationPolicy,
    ping_endpoints: bool,
    shutdown_grace: Duration,
    watches: Watches,
}

impl App {
    /// Connects and migrates the database, starts the delivery engine, then
    /// binds the listener.
    pub async fn build(config: AppConfig) -> Result<Self, AppError> {
        let store = Store::connect(&config.database)
            .await
            .map_err(AppError::Database)?;
        store.migrate().await.map_err(AppError::Migrate)?;
        let engine = Engine::start(store.clone(), config.clock.clone(), config.delivery.clone())
            .await
            .map_err(AppError::Engine)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            store,
            engine,
            clock: config.clock,
            rotation: config.rotation,
            ping_endpoints: config.ping_endpoints,
            shutdown_grace: config.shutdown_grace,
            watches: Watches::new(config.watch),
        })
    }

    /// A handle to the delivery engine (tests drive its poller by hand).
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// The open streams (tests count them).
    pub fn watches(&self) -> Watches {
        self.watches.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then: health turns NOT_SERVING, no
    /// new connections are taken, and in-flight calls get the grace period
    /// to finish before they are dropped.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AppError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest & co., so clients can decode error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let auth = Authenticator::new(self.store.clone());
        let endpoints = EndpointApi::new(
            self.store.clone(),
            auth.clone(),
            self.engine.clone(),
            self.clock.clone(),
            self.rotation,
            self.ping_endpoints,
        );
        let projects = || {
            ProjectApi::new(
                self.store.clone(),
                auth.clone(),
                self.clock.clone(),
                self.watches.clone(),
            )
        };
        let (project_api, meta_api) = (projects(), projects());
        let events = EventApi::new(
            self.store.clone(),
            auth,
            self.engine.clone(),
            self.clock.clone(),
            self.watches.clone(),
        );
        // Room for a full batch of maximum-size events.
        let max_message = (self.engine.max_payload_bytes() * 16).max(4 * 1024 * 1024);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(EndpointServiceServer::new(endpoints))
            .add_service(EventServiceServer::new(events).max_decoding_message_size(max_message))
            .add_service(ProjectServiceServer::new(project_api))
            .add_service(MetaEventServiceServer::new(meta_api))
            // The builder's tcp_nodelay only applies to listeners tonic binds
            // itself; without it on ours, small responses wait on Nagle.
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(KEEPALIVE_INTERVAL)),
                async {
                    let _ = stop_rx.await;
                },
            );
        let mut serve = std::pin::pin!(serve);
        tracing::info!(addr = %self.local_addr, "serving gRPC");

        tokio::select! {
            result = &mut serve => {
                result?;
                return Ok(());
            }
            () = shutdown => {}
        }

        tracing::info!(grace = ?self.shutdown_grace, "shutting down");
        set_health(&health, ServingStatus::NotServing).await;
        // Open streams would hold the graceful stop for the whole grace
        // period; they end now and their clients resume elsewhere.
        self.watches.stop().await;
        let _ = stop_tx.send(());
        let served = match tokio::time::timeout(self.shutdown_grace, &mut serve).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("grace period over; dropping the calls still in flight");
                Ok(())
            }
        };
        self.engine.shutdown(self.shutdown_grace).await;
        if let Err(err) = self.store.close().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// Sets the overall status ("") and every hookd service's.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    use tonic::server::NamedService;
    for service in [
        <EndpointServiceServer<EndpointApi> as NamedService>::NAME,
        <EventServiceServer<EventApi> as NamedService>::NAME,
        <ProjectServiceServer<ProjectApi> as NamedService>::NAME,
        <MetaEventServiceServer<ProjectApi> as NamedService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}
