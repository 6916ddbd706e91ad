//! The delivery engine: publishes events durably, sends them as signed HTTP
//! POSTs, retries with backoff and records every attempt.
//!
//! Flow: `publish` → [`committer`] (group commit, leases deliveries to this
//! node) → [`dispatcher`] (fair in-memory lanes) → `send_one` ([`request`] +
//! [`http`]) → [`results`] (batched writes; on SQLite back through the
//! committer, to share its transactions). The [`poller`] feeds the
//! dispatcher from the store: retries that come due, overflow, and the
//! deliveries of nodes that died.

mod cache;
mod committer;
mod dispatcher;
mod http;
mod meta;
mod poller;
mod request;
mod results;

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dispatcher::Limits;

use self::cache::EndpointCache;
use self::committer::CommitRequest;
use self::dispatcher::Dispatcher;
use crate::domain::delivery::{
    Attempt, AttemptError, Delivery, DeliveryStatus, ErrorClass, Verdict, judge, reason,
};
use crate::domain::endpoint::{Endpoint, EndpointStatus};
use crate::domain::event::{Event, EventTarget, NewEvent};
use crate::domain::fields::RateLimit;
use crate::domain::ids::{AttemptId, DeliveryId, EndpointId, EventId, NodeId, ProjectId};
use crate::domain::network::NetworkPolicy;
use crate::domain::rate::TokenBucket;
use crate::domain::retry::RetryPolicy;
use crate::domain::time::{Clock, Timestamp};
use crate::store::{DeliveryResult, NewDelivery, PublishRecord, Published, Store, StoreError};
use crate::system;

/// How the engine behaves; the defaults suit a small server.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry: RetryPolicy,
    pub limits: Limits,
    /// How often the store is checked for due deliveries.
    pub poll_interval: Duration,
    /// A node whose heartbeat is older than this is presumed dead and its
    /// deliveries are taken over (PostgreSQL; an embedded database has one
    /// process, which takes over its predecessor's at start).
    pub node_ttl: Duration,
    pub idempotency_window: Duration,
    pub max_payload_bytes: usize,
    /// How long endpoint settings read by senders may be stale when changed
    /// by another process.
    pub endpoint_cache_ttl: Duration,
    /// CA certificates trusted for receivers besides the web PKI roots.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Which addresses deliveries may connect to (the SSRF guard).
    pub network: NetworkPolicy,
    /// Consecutive failed attempts after which an endpoint becomes INACTIVE
    /// (an HTTP 410 Gone does it at once).
    pub breaker_failures: u32,
    /// How long delivery status changes are kept for watchers that resume.
    pub change_retention: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            limits: Limits {
                per_endpoint_in_flight: 64,
                per_endpoint_queued: 10_000,
                max_in_flight: 1_024,
                max_queued: 100_000,
                max_queued_bytes: 32 << 20,
            },
            poll_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(30),
            idempotency_window: Duration::from_secs(24 * 3600),
            max_payload_bytes: 1024 * 1024,
            endpoint_cache_ttl: Duration::from_secs(1),
            extra_roots: Vec::new(),
            network: NetworkPolicy::default(),
            breaker_failures: 50,
            change_retention: Duration::from_secs(3600),
        }
    }
}

/// One held delivery on its way through memory (its project is its
/// event's).
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event: Arc<Event>,
    /// Attempts already made.
    pub attempts: u32,
}

impl Job {
    /// What this delivery counts against the memory limit.
    fn cost(&self) -> usize {
        dispatcher::cost(self.event.payload.as_str().len())
    }
}

/// A publish as the API reports it.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    pub event: Arc<Event>,
    pub endpoint_ids: Vec<EndpointId>,
    pub deliveries: Vec<Delivery>,
    /// The idempotency key matched an earlier event, which this is.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event at `index` names a target that does not exist.
    #[error("events[{index}]: {what} not found")]
    TargetNotFound { index: usize, what: &'static str },
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
    #[error("the delivery engine is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for PublishError {
    fn from(err: StoreError) -> Self {
        Self::Store(Arc::new(err))
    }
}

/// Results waiting to be written may take this fraction of the memory the
/// queued deliveries may (`Limits::max_queued_bytes`), besides it. At the
/// default 32 MiB that is 8 MiB: more than the results channel's 8,192
/// results of short 200 responses (under 1 KiB each), so in the bench the
/// count binds first and sending runs ahead while the writer is busy with
/// publishes, as before; an eighth held fan-out back.
const RESULT_SHARE: usize = 4;

/// State shared by the engine's tasks.
struct Shared {
    store: Store,
    clock: Arc<dyn Clock>,
    node: NodeId,
    config: DeliveryConfig,
    dispatcher: Dispatcher,
    /// Memory for results waiting to be written.
    result_memory: results::Budget,
    /// The runtime the engine was started on: sends and alerts run there,
    /// not on the writer's thread.
    runtime: tokio::runtime::Handle,
    cache: EndpointCache,
    http: http::HttpSender,
    user_agent: HeaderValue,
    poll_wake: Notify,
    /// Set when shutdown begins.
    stopping: CancellationToken,
    stats: Counters,
    /// One bucket per rate-limited endpoint.
    buckets: std::sync::Mutex<std::collections::HashMap<EndpointId, TokenBucket>>,
}

#[derive(Default)]
struct Counters {
    commits: std::sync::atomic::AtomicU64,
    events: std::sync::atomic::AtomicU64,
}

/// What the engine has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Publish transactions committed.
    pub commits: u64,
    /// Events stored by them.
    pub events: u64,
}

impl Shared {
    /// `results` as this node records them now.
    fn result_batch<'a>(&'a self, results: &'a [DeliveryResult]) -> crate::store::ResultBatch<'a> {
        crate::store::ResultBatch {
            me: &self.node,
            results,
            now: self.clock.now(),
            breaker_failures: self.config.breaker_failures,
        }
    }

    fn dedup_since(&self) -> Timestamp {
        let window = i64::try_from(self.config.idempotency_window.as_micros()).unwrap_or(i64::MAX);
        Timestamp::from_unix_micros(self.clock.now().unix_micros().saturating_sub(window))
    }
}

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    commits: mpsc::Sender<CommitRequest>,
    results: mpsc::Sender<results::Message>,
    tasks: TaskTracker,
    sends: TaskTracker,
    /// Stops the committer, dispatcher and poller.
    cancel: CancellationToken,
}

impl Engine {
    /// Registers this node and starts the engine's tasks.
    pub async fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        config: DeliveryConfig,
    ) -> Result<Self, StoreError> {
        let node = NodeId::from_uuid(system::new_uuid());
        store.heartbeat(&node, clock.now()).await?;
        if store.is_embedded() {
            // One process per embedded database: whatever an earlier run held
            // is free the moment this one starts.
            store.forget_other_nodes(&node).await?;
        }
        let shared = Arc::new(Shared {
            cache: EndpointCache::new(store.clone(), config.endpoint_cache_ttl),
            dispatcher: Dispatcher::new(config.limits),
            result_memory: results::Budget::new(config.limits.max_queued_bytes / RESULT_SHARE),
            runtime: tokio::runtime::Handle::current(),
            http: http::HttpSender::new(&config.extra_roots, Arc::new(config.network.clone())),
            user_agent: HeaderValue::from_static(concat!("hookd/", env!("CARGO_PKG_VERSION"))),
            poll_wake: Notify::new(),
            stopping: CancellationToken::new(),
            stats: Counters::default(),
            buckets: Default::default(),
            store,
            clock,
            node,
            config,
        });
        let (commits, commit_rx) = mpsc::channel(4_096);
        let (results, results_rx) = mpsc::channel(8_192);
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        start_writer(
            &tasks,
            shared.store.is_embedded(),
            vec![
                Box::pin(committer::run(shared.clone(), commit_rx, cancel.clone())),
                Box::pin(results::run(shared.clone(), results_rx, commits.clone())),
            ],
        );
        tasks.spawn(poller::run(shared.clone(), cancel.clone()));
        tasks.spawn(poller::checkpoints(shared.clone(), cancel.clone()));
        tasks.spawn(meta::run(shared.clone(), cancel.clone()));
        let engine = Self {
            shared,
            commits,
            results,
            tasks,
            sends: TaskTracker::new(),
            cancel,
        };
        engine.tasks.spawn(engine.clone().dispatch());
        engine.wake();
        tracing::info!(node = %engine.shared.node, "delivery engine started");
        Ok(engine)
    }

    pub fn max_payload_bytes(&self) -> usize {
        self.shared.config.max_payload_bytes
    }

    /// Stores the events and their deliveries, durably, then starts sending.
    pub async fn publish(
        &self,
        project: &ProjectId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<PublishedEvent>, PublishError> {
        let now = self.shared.clock.now();
        let mut records = Vec::with_capacity(events.len());
        let mut targets = Vec::with_capacity(events.len());
        for (index, new) in events.into_iter().enumerate() {
            let endpoints = self.resolve(project, &new, index).await?;
            let event = Event {
                id: EventId::from_uuid(system::new_uuid()),
                project_id: project.clone(),
                event_type: new.event_type,
                payload: new.payload,
                custom_headers: new.custom_headers,
                idempotency_key: new.idempotency_key,
                created_at: now,
            };
            let deliveries = endpoints
                .iter()
                .map(|(endpoint, status)| {
                    let refused = match status {
                        EndpointStatus::Paused => Some(reason::ENDPOINT_PAUSED),
                        EndpointStatus::Inactive => Some(reason::ENDPOINT_INACTIVE),
                        EndpointStatus::Active | EndpointStatus::Pending => None,
                    };
                    NewDelivery {
                        id: DeliveryId::from_uuid(system::new_uuid()),
                        endpoint_id: endpoint.clone(),
                        status: if refused.is_some() {
                            DeliveryStatus::Discarded
                        } else {
                            DeliveryStatus::Scheduled
                        },
                        lease_owner: None,
                        description: refused.unwrap_or_default().to_owned(),
                    }
                })
                .collect();
            targets.push(endpoints.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
            records.push(PublishRecord {
                event: Arc::new(event),
                deliveries,
            });
        }

        let (reply, committed) = oneshot::channel();
        self.commits
            .send(CommitRequest {
                records,
                results: None,
                reply,
            })
            .await
            .map_err(|_| PublishError::ShuttingDown)?;
        let committed = committed.await.map_err(|_| PublishError::ShuttingDown)??;

        let mut published = Vec::with_capacity(committed.records.len());
        for ((record, outcome), endpoint_ids) in committed
            .records
            .into_iter()
            .zip(committed.outcomes)
            .zip(targets)
        {
            published.push(match outcome {
                Published::Stored => PublishedEvent {
                    deliveries: record
                        .deliveries
                        .iter()
                        .map(|d| new_delivery_view(&record.event, d))
                        .collect(),
                    event: record.event,
                    endpoint_ids,
                    duplicate: false,
                },
                Published::Duplicate(original) => {
                    let (event, endpoint_ids) =
                        self.shared.store.get_event(project, &original).await?;
                    let filter = crate::store::DeliveryFilter {
                        event_id: Some(original),
                        ..Default::default()
                    };
                    let deliveries = self
                        .shared
                        .store
                        .list_deliveries(project, &filter, None, 10_000)
                        .await?;
                    PublishedEvent {
                        event: Arc::new(event),
                        endpoint_ids,
                        deliveries,
                        duplicate: true,
                    }
                }
            });
        }
        Ok(published)
    }

    /// The endpoints an event goes to, as of at most `endpoint_cache_ttl`
    /// ago (at once for changes made through this process). A target the
    /// cache does not know is looked up in the store before it is refused,
    /// so an endpoint created through another process can be published to
    /// at once.
    async fn resolve(
        &self,
        project: &ProjectId,
        new: &NewEvent,
        index: usize,
    ) -> Result<Vec<(EndpointId, EndpointStatus)>, PublishError> {
        let cache = &self.shared.cache;
        let target = |e: &Endpoint| (e.id.clone(), e.status);
        let admits = |e: &&Endpoint| e.event_types.admits(&new.event_type);
        let in_project = |snapshot: Option<Arc<cache::EndpointSnapshot>>| {
            snapshot.filter(|s| s.endpoint.project_id == *project)
        };
        Ok(match &new.target {
            EventTarget::Endpoint(id) => {
                let snapshot = match in_project(cache.get(id).await?) {
                    Some(snapshot) => Some(snapshot),
                    None => in_project(cache.refresh(id).await?),
                };
                let Some(snapshot) = snapshot else {
                    return Err(PublishError::TargetNotFound {
                        index,
                        what: "endpoint",
                    });
                };
                vec![target(&snapshot.endpoint)]
            }
            EventTarget::Owner(owner) => {
                let owns = |e: &&Endpoint| e.owner_id.as_ref() == Some(owner);
                let mut all = cache.project_endpoints(project).await?;
                if !all.iter().any(|e| owns(&e)) {
                    all = match cache.refresh_project_for_owner(project, owner).await? {
                        Some(fresh) if fresh.iter().any(|e| owns(&e)) => fresh,
                        _ => {
                            return Err(PublishError::TargetNotFound {
                                index,
                                what: "owner_id",
                            });
                        }
                    };
                }
                all.iter().filter(owns).filter(admits).map(target).collect()
            }
            EventTarget::Broadcast => cache
                .project_endpoints(project)
                .await?
                .iter()
                .filter(admits)
                .map(target)
                .collect(),
        })
    }

    /// Claims and queues whatever is due now; returns how many. The poller
    /// does this every `poll_interval`; tests call it after moving the clock.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        poller::tick(&self.shared).await
    }

    /// Prunes delivery changes older than the retention period; returns how
    /// many. The poller does this every minute.
    pub async fn prune_changes(&self) -> Result<u64, StoreError> {
        poller::prune(&self.shared).await
    }

    pub fn stats(&self) -> EngineStats {
        use std::sync::atomic::Ordering::Relaxed;
        EngineStats {
            commits: self.shared.stats.commits.load(Relaxed),
            events: self.shared.stats.events.load(Relaxed),
        }
    }

    /// Sends `endpoint` a signed test request (event type `hookd.ping`), as
    /// a delivery would go, and says why it failed unless it got a 2xx.
    pub async fn ping(
        &self,
        endpoint: &Endpoint,
        secret: &crate::domain::secret::Secret,
    ) -> Result<(), String> {
        let payload = r#"{"event_type":"hookd.ping"}"#.to_owned();
        post_once(
            &self.shared,
            endpoint,
            std::slice::from_ref(secret),
            "hookd.ping",
            payload,
        )
        .await
    }

    /// Refreshes this node's heartbeat now (the poller does so every third
    /// of `node_ttl`).
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        poller::heartbeat(&self.shared).await
    }

    /// Asks the poller to look at the store now.
    pub fn wake(&self) {
        self.shared.poll_wake.notify_one();
    }

    /// Any number of endpoints may have changed (a batch retry).
    pub fn endpoints_changed(&self) {
        self.shared.cache.invalidate_all();
    }

    /// An endpoint changed or was deleted through this process.
    pub fn endpoint_changed(&self, id: &EndpointId) {
        self.shared.cache.invalidate(id);
    }

    /// Stops taking work, lets sends in flight finish for up to `grace`,
    /// writes their results, and hands every delivery still queued back to
    /// the store for whoever runs next.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stopping.cancel();
        self.cancel.cancel();
        self.sends.close();
        if tokio::time::timeout(grace, self.sends.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.shared.dispatcher.in_flight(),
                "sends still in flight after the grace period; they will be sent again"
            );
        }
        let queued = self.shared.dispatcher.drain_queued().len();
        self.tasks.close();
        // Every finished send has queued its result; have them written
        // before the node lets go of its deliveries.
        let (flushed, written) = oneshot::channel();
        if self
            .results
            .send(results::Message::Flush(flushed))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(grace, written).await;
        }
        match self
            .shared
            .store
            .release_node(&self.shared.node, self.shared.clock.now())
            .await
        {
            Ok(released) => tracing::info!(queued, released, "delivery engine stopped"),
            Err(err) => {
                tracing::warn!(error = %err, "could not hand back held deliveries; others take them after the node TTL")
            }
        }
    }

    /// Starts sends while the dispatcher has work and room.
    async fn dispatch(self) {
        loop {
            while let Some(job) = self.shared.dispatcher.next() {
                let shared = self.shared.clone();
                let results = self.results.clone();
                // The send is boxed: its future is kilobytes, and a spawn
                // copies the future it is given more than once.
                self.sends.spawn(async move {
                    let endpoint = job.endpoint_id.clone();
                    let result = Box::pin(send_one(&shared, job)).await;
                    let room = shared.result_memory.reserve(&result).await;
                    if results
                        .send(results::Message::Result(result, room))
                        .await
                        .is_err()
                    {
                        tracing::error!("result writer is gone; a delivery result was lost");
                    }
                    shared.dispatcher.complete(&endpoint);
                });
            }
            tokio::select! {
                () = self.shared.dispatcher.changed() => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }
}

/// A task of the engine's, boxed so that tasks of different kinds can be
/// handed over together.
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Starts the committer and the results writer (`tasks`). On SQLite they get
/// a thread and a runtime of their own: its single writer is the limit under
/// load, and on the shared runtime each hand-off to them waited behind the
/// send tasks (fan-out ran at 10.6k against 12.5k deliveries/s in alternated
/// runs; see docs/BENCHMARKS.md). PostgreSQL, whose connections belong to
/// the shared runtime, keeps them there, as does SQLite if no thread can be
/// made.
fn start_writer(tracker: &TaskTracker, embedded: bool, mut tasks: Vec<Task>) {
    if embedded {
        match on_own_thread(tasks) {
            Ok(done) => {
                tracker.spawn(async move {
                    let _ = done.await;
                });
                return;
            }
            Err(handed_back) => tasks = handed_back,
        }
    }
    for task in tasks {
        tracker.spawn(task);
    }
}

/// Runs `tasks` on a current-thread runtime on a thread of their own; the
/// receiver hears once all have ended. Hands them back if no runtime or no
/// thread can be made.
fn on_own_thread(tasks: Vec<Task>) -> Result<oneshot::Receiver<()>, Vec<Task>> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::warn!(error = %err, "no runtime for the writer; sharing the main one");
            return Err(tasks);
        }
    };
    // The tasks follow once the thread exists, so that they can be handed
    // back if it cannot be made.
    let (hand, take) = std::sync::mpsc::channel::<Vec<Task>>();
    let (finished, done) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("hookd-writer".into())
        .spawn(move || {
            if let Ok(tasks) = take.recv() {
                runtime.block_on(async move {
                    let running: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
                    for task in running {
                        if let Err(err) = task.await {
                            tracing::error!(error = %err, "the writer's task failed");
                        }
                    }
                });
            }
            let _ = finished.send(());
        });
    match spawned {
        Ok(_) => {
            // The thread waits for exactly this, so the send cannot fail.
            let _ = hand.send(tasks);
            Ok(done)
        }
        Err(err) => {
            tracing::warn!(error = %err, "no thread for the writer; sharing the main runtime");
            Err(tasks)
        }
    }
}

/// What the API shows for a delivery just stored.
fn new_delivery_view(event: &Event, new: &NewDelivery) -> Delivery {
    Delivery {
        id: new.id.clone(),
        project_id: event.project_id.clone(),
        event_id: event.id.clone(),
        endpoint_id: new.endpoint_id.clone(),
        event_type: event.event_type.clone(),
        status: new.status,
        attempts: 0,
        next_attempt_at: (new.status != DeliveryStatus::Discarded).then_some(event.created_at),
        acknowledged_at: event.created_at,
        updated_at: event.created_at,
        description: new.description.clone(),
        last_http_status: None,
    }
}

/// One signed POST of `payload` to `target.url`, as a delivery would go
/// (SSRF guard, headers, signature, timeout), outside the delivery pipeline:
/// for pings and alerts. `Err` says why it did not get a 2xx.
async fn post_once(
    shared: &Shared,
    target: &Endpoint,
    secrets: &[crate::domain::secret::Secret],
    event_type: &str,
    payload: String,
) -> Result<(), String> {
    if let Some(why) = blocked_literal(shared, target) {
        return Err(why);
    }
    let now = shared.clock.now();
    let event = Event {
        id: EventId::from_uuid(system::new_uuid()),
        project_id: target.project_id.clone(),
        event_type: crate::domain::fields::EventType::parse(event_type).map_err(|e| e.0)?,
        payload: crate::domain::event::Payload::parse(&payload, shared.config.max_payload_bytes)
            .map_err(|e| e.0)?,
        custom_headers: Default::default(),
        idempotency_key: None,
        created_at: now,
    };
    let job = Job {
        delivery_id: DeliveryId::from_uuid(system::new_uuid()),
        endpoint_id: target.id.clone(),
        event: Arc::new(event),
        attempts: 0,
    };
    let template = request::Template::new(target);
    let outbound = request::build(&job, target, &template, secrets, 1, now, &shared.user_agent)?;
    let timeout = Duration::from_secs(u64::from(target.timeout.get()));
    let response = shared.http.send(outbound, timeout).await;
    match (response.status, response.error) {
        (Some(status), _) if (200..300).contains(&status) => Ok(()),
        (Some(status), _) => Err(format!("the URL answered HTTP {status}")),
        (None, Some(error)) => Err(error.to_string()),
        (None, None) => Err("no response".to_owned()),
    }
}

/// Tells the endpoint's `alert_url`, if it has one, that the circuit
/// breaker changed its status. Best effort: one attempt, failures logged.
async fn send_alert(shared: Arc<Shared>, change: crate::store::StatusChange) {
    let snapshot = match shared.cache.get(&change.endpoint_id).await {
        Ok(Some(snapshot)) => snapshot,
        _ => return,
    };
    let Some(alert_url) = snapshot.endpoint.alert_url.clone() else {
        return;
    };
    let now = shared.clock.now();
    let notice = serde_json::json!({
        "event_type": "hookd.endpoint.status_changed",
        "endpoint_id": change.endpoint_id.as_str(),
        "status": change.status.as_str().to_uppercase(),
        "reason": change.reason,
        "last_error": change.last_error,
        "changed_at": now.to_string(),
    });
    let mut target = snapshot.endpoint.clone();
    target.url = alert_url;
    let secrets = snapshot.signing_secrets(now);
    match post_once(
        &shared,
        &target,
        &secrets,
        "hookd.endpoint.status_changed",
        notice.to_string(),
    )
    .await
    {
        Ok(()) => tracing::info!(endpoint = %change.endpoint_id, "status change alert sent"),
        Err(why) => {
            tracing::warn!(endpoint = %change.endpoint_id, %why, "status change alert failed")
        }
    }
}

/// Names are checked when resolved; an address written in the URL is
/// checked here. `Some(reason)` when the policy refuses it.
fn blocked_literal(shared: &Shared, endpoint: &Endpoint) -> Option<String> {
    let ip = match endpoint.url.as_url().host()? {
        url::Host::Ipv4(v4) => std::net::IpAddr::V4(v4),
        url::Host::Ipv6(v6) => std::net::IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    shared.config.network.check(ip).err()
}

/// Waits for the endpoint's rate limit to allow one more request. The
/// delivery keeps its place (and its lane slot) meanwhile: waiting spends no
/// attempt and fails nothing.
async fn throttle(shared: &Shared, endpoint: &EndpointId, limit: RateLimit) {
    loop {
        let wait = {
            let mut buckets = shared.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let now = shared.clock.now();
            let bucket = buckets
                .entry(endpoint.clone())
                .or_insert_with(|| TokenBucket::new(limit, now));
            if bucket.limit() != limit {
                *bucket = TokenBucket::new(limit, now);
            }
            match bucket.take(now) {
                Ok(()) => return,
                Err(wait) => wait,
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The endpoint's settings if it may receive `job` now; otherwise what to
/// record instead (discarded, or put back when it cannot be read). `fresh`
/// reads the store rather than the cache.
async fn receivable(
    shared: &Shared,
    job: &Job,
    fresh: bool,
) -> Result<Arc<cache::EndpointSnapshot>, DeliveryResult> {
    let read = if fresh {
        shared.cache.refresh(&job.endpoint_id).await
    } else {
        shared.cache.get(&job.endpoint_id).await
    };
    let discard = |description: &str| DeliveryResult::Discarded {
        delivery_id: job.delivery_id.clone(),
        description: description.to_owned(),
    };
    match read {
        Ok(Some(snapshot)) if snapshot.endpoint.project_id == job.event.project_id => {
            match snapshot.endpoint.status {
                EndpointStatus::Paused => Err(discard(reason::ENDPOINT_PAUSED)),
                EndpointStatus::Inactive => Err(discard(reason::ENDPOINT_INACTIVE)),
                EndpointStatus::Active | EndpointStatus::Pending => Ok(snapshot),
            }
        }
        Ok(_) => Err(discard(reason::ENDPOINT_DELETED)),
        Err(err) => {
            tracing::warn!(error = %err, endpoint = %job.endpoint_id, "cannot read endpoint; delivery put back");
            let at = shared.clock.now().unix_micros() + UNREADABLE_ENDPOINT_PAUSE;
            Err(DeliveryResult::Released {
                delivery_id: job.delivery_id.clone(),
                at: Timestamp::from_unix_micros(at),
            })
        }
    }
}

/// Pause before a delivery whose endpoint could not be read is tried again.
const UNREADABLE_ENDPOINT_PAUSE: i64 = 5_000_000;

/// Sends one delivery (or discards it, if its endpoint may no longer
/// receive) and says what happened.
async fn send_one(shared: &Shared, job: Job) -> DeliveryResult {
    // Sending goes by the cached settings; discarding, which cannot be
    // undone without a manual retry, is decided on a fresh read.
    let snapshot = match receivable(shared, &job, false).await {
        Ok(snapshot) => snapshot,
        Err(_) => match receivable(shared, &job, true).await {
            Ok(snapshot) => snapshot,
            Err(result) => return result,
        },
    };
    let endpoint = &snapshot.endpoint;

    if let Some(limit) = endpoint.rate_limit {
        throttle(shared, &endpoint.id, limit).await;
    }
    let number = job.attempts + 1;
    let requested_at = shared.clock.now();
    let secrets = snapshot.signing_secrets(requested_at);
    let mut attempt = Attempt {
        id: AttemptId::from_uuid(system::new_uuid()),
        delivery_id: job.delivery_id.clone(),
        project_id: job.event.project_id.clone(),
        number,
        url: endpoint.url.as_str().to_owned(),
        requested_at,
        responded_at: None,
        http_status: None,
        error: None,
        ip_address: None,
        request_headers: Default::default(),
        response_headers: Default::default(),
        response_body: String::new(),
        duration_ms: 0,
    };
    let mut retry_after = None;
    let built = match blocked_literal(shared, endpoint) {
        Some(why) => Err(AttemptError {
            class: ErrorClass::Blocked,
            message: why,
        }),
        None => request::build(
            &job,
            endpoint,
            &snapshot.template,
            &secrets,
            number,
            requested_at,
            &shared.user_agent,
        )
        .map_err(|message| AttemptError {
            class: ErrorClass::Other,
            message,
        }),
    };
    match built {
        Ok(mut outbound) => {
            attempt.request_headers = std::mem::take(&mut outbound.recorded_headers);
            let timeout = Duration::from_secs(u64::from(endpoint.timeout.get()));
            let response = shared.http.send(outbound, timeout).await;
            attempt.responded_at = response.status.map(|_| shared.clock.now());
            attempt.http_status = response.status;
            attempt.error = response.error;
            attempt.ip_address = response.ip_address;
            attempt.response_headers = response.headers;
            attempt.response_body = response.body;
            attempt.duration_ms = u32::try_from(response.elapsed.as_millis()).unwrap_or(u32::MAX);
            retry_after = response.retry_after;
        }
        Err(error) => attempt.error = Some(error),
    }
    let verdict = judge(
        attempt.http_status,
        retry_after,
        number,
        snapshot.retry.as_ref().unwrap_or(&shared.config.retry),
        system::random_fraction(),
        shared.clock.now(),
    );
    let description = match &verdict {
        Verdict::Success => String::new(),
        Verdict::Failure { description } => description.clone(),
        Verdict::Retry { .. } => match (&attempt.error, attempt.http_status) {
            (Some(error), _) => error.to_string(),
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => String::new(),
        },
    };
    if let Some(error) = &attempt.error {
        tracing::debug!(delivery = %attempt.delivery_id, %error, "attempt failed");
    }
    DeliveryResult::Attempted {
        attempt: Box::new(attempt),
        endpoint_id: job.endpoint_id,
        verdict,
        description,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures for the engine's unit tests.

    use super::*;
    use crate::domain::event::Payload;
    use crate::domain::fields::{ContentType, CustomHeaders, EndpointName, EndpointUrl, EventType};
    use crate::domain::signature::SignatureConfig;

    /// A job for endpoint number `n` (same `n`, same endpoint).
    pub(crate) fn job_for(n: u128) -> Job {
        let project = ProjectId::from_uuid(uuid::Uuid::from_u128(7));
        Job {
            delivery_id: DeliveryId::from_uuid(uuid::Uuid::from_u128(1000 + n)),
            endpoint_id: EndpointId::from_uuid(uuid::Uuid::from_u128(n)),
            event: Arc::new(Event {
                id: EventId::from_uuid(uuid::Uuid::from_u128(2000 + n)),
                project_id: project,
                event_type: EventType::parse("order.paid").unwrap(),
                payload: Payload::parse(r#"{"order": 42, "note": "ünïcode"}"#, 1024).unwrap(),
                custom_headers: CustomHeaders::default(),
                idempotency_key: None,
                created_at: Timestamp::from_unix_micros(1),
            }),
            attempts: 0,
        }
    }

    pub(crate) fn endpoint_with(content_type: ContentType, signature: SignatureConfig) -> Endpoint {
        Endpoint::new(
            EndpointId::from_uuid(uuid::Uuid::from_u128(1)),
            ProjectId::from_uuid(uuid::Uuid::from_u128(7)),
            crate::domain::endpoint::EndpointSpec {
                content_type,
                signature,
                ..crate::domain::endpoint::EndpointSpec::new(
                    EndpointName::parse("e").unwrap(),
                    EndpointUrl::parse("https://example.com/hook").unwrap(),
                )
            },
            Timestamp::from_unix_micros(1),
        )
    }
}
