//! At least once, whatever happens to the process: restarts, crashes,
//! several servers on one database, and endpoints that never answer.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hookd::grpc::pb;
use hookd::grpc::pb::create_event_request::Target;

use crate::backend_test;
use crate::db_test;
use crate::helpers::{
    Backend, TestApp, TestDb, database_args, spawn_app_on, test_delivery_config, wait_for_delivery,
    wait_for_delivery_with,
};
use crate::receiver::{Behavior, TestReceiver};

const WAIT: Duration = Duration::from_secs(20);

fn event_to(endpoint: &str, n: usize) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event_type: "order.paid".into(),
        payload: format!(r#"{{"n":{n}}}"#),
        target: Some(Target::EndpointId(endpoint.to_owned())),
        ..Default::default()
    }
}

async fn create_endpoint(app: &TestApp, url: String) -> String {
    app.endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "r".into(),
                url,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("endpoint created")
        .into_inner()
        .id
}

/// Publishes `count` events to `endpoint` in one batch; returns each
/// event's one delivery, in order.
async fn publish_batch(app: &TestApp, endpoint: &str, count: usize) -> Vec<pb::Delivery> {
    publish_events(app, (0..count).map(|n| event_to(endpoint, n)).collect()).await
}

/// Publishes `events`, each to one endpoint, in one batch; returns each
/// event's one delivery, in order.
async fn publish_events(app: &TestApp, events: Vec<pb::CreateEventRequest>) -> Vec<pb::Delivery> {
    app.events()
        .await
        .batch_create_events(pb::BatchCreateEventsRequest { events })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.deliveries[0].clone())
        .collect()
}

/// Delivery ids of the requests received, and how often each arrived.
fn delivery_ids(receiver: &TestReceiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for request in receiver.requests() {
        let id = request
            .header("x-hookd-delivery-id")
            .expect("delivery id header")
            .to_owned();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

db_test!(pending_retries_survive_a_restart, |app| async move {
    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Status(500));
    let endpoint = create_endpoint(&app, receiver.url("/")).await;
    let ids: Vec<String> = publish_batch(&app, &endpoint, 5)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    for id in &ids {
        wait_for_delivery(&app, id, pb::DeliveryStatus::Retry, WAIT).await;
    }
    let key = app.api_key.clone();

    let app = app.restart(test_delivery_config()).await;
    receiver.respond_with(Behavior::Status(200));
    app.clock.advance(Duration::from_secs(60));
    app.engine.tick().await.unwrap();
    for id in &ids {
        wait_for_delivery_with(&app, &key, id, pb::DeliveryStatus::Success, WAIT).await;
    }
    assert_eq!(
        receiver.count(),
        10,
        "each delivery: one failure before, one success after"
    );
});

/// `hookd serve` in a child process, killed (if still running) when dropped
/// so a failing test leaves no server behind.
struct ServerProcess(std::process::Child);

impl ServerProcess {
    /// Starts it and waits for its address.
    fn start(db: &TestDb) -> (Self, String) {
        let mut child = ServerProcess(
            Command::new(env!("CARGO_BIN_EXE_hookd"))
                .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
                .args(["--allow-network", "127.0.0.0/8"])
                .args(database_args(db))
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("hookd starts"),
        );
        let stderr = child.0.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("hookd logs its address");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "serving gRPC" {
                let addr = entry["addr"].as_str().expect("addr").to_owned();
                return (child, addr);
            }
        }
    }

    /// SIGKILL: no shutdown, no cleanup, leases left behind.
    fn kill_9(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn crash_recovery(backend: Backend) {
    let db = TestDb::new(&backend);
    let created = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["project", "create", "--name", "crash", "--json"])
        .args(database_args(&db))
        .output()
        .expect("project created");
    let key = serde_json::from_slice::<serde_json::Value>(&created.stdout).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let receiver = TestReceiver::start().await;
    receiver.respond_with(Behavior::Hang);
    let (server, addr) = ServerProcess::start(&db);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth = format!("Bearer {key}");
    let with_key = move |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", auth.parse().unwrap());
        Ok(req)
    };
    let mut endpoints = pb::endpoint_service_client::EndpointServiceClient::with_interceptor(
        channel.clone(),
        with_key.clone(),
    );
    let endpoint = endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "r".into(),
                url: receiver.url("/"),
                ..Default::default()
            }),
            // The receiver hangs on purpose, ping included.
            skip_ping_validation: true,
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut events =
        pb::event_service_client::EventServiceClient::with_interceptor(channel, with_key);
    let published = events
        .batch_create_events(pb::BatchCreateEventsRequest {
            events: (0..20).map(|n| event_to(&endpoint, n)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: HashSet<String> = published
        .results
        .iter()
        .map(|r| r.deliveries[0].id.clone())
        .collect();
    // Every delivery is in flight, held by the child, when it dies.
    receiver.wait_for_count(20, WAIT).await;
    server.kill_9();

    receiver.respond_with(Behavior::Status(200));
    let app = spawn_app_on(db, test_delivery_config()).await;
    // PostgreSQL: the dead node's heartbeat must go stale (node TTL) before
    // its deliveries are taken over; the embedded database frees them at start.
    app.clock.advance(Duration::from_secs(60));
    app.engine.tick().await.unwrap();
    for id in &ids {
        wait_for_delivery_with(&app, &key, id, pb::DeliveryStatus::Success, WAIT).await;
    }
    let seen = delivery_ids(&receiver);
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(
        seen.values().all(|&n| n == 2),
        "each sent once before the crash, once after: {seen:?}"
    );
}

backend_test!(held_deliveries_survive_a_kill_9, crash_recovery);

/// Deliveries that find memory full wait in the store; as memory drains the
/// dispatcher asks for them at once, not at the poller's next round (an
/// hour away here). Memory is full at `limits`, for 200 events of `payload`.
async fn overflow(backend: Backend, limits: hookd::delivery::Limits, payload: &str) {
    let config = hookd::delivery::DeliveryConfig {
        poll_interval: Duration::from_secs(3600),
        limits,
        ..test_delivery_config()
    };
    let app = spawn_app_on(TestDb::new(&backend), config).await;
    let receiver = TestReceiver::start().await;
    let endpoint = create_endpoint(&app, receiver.url("/")).await;
    let events = (0..200)
        .map(|n| pb::CreateEventRequest {
            payload: format!(r#"{{"n":{n},"pad":"{payload}"}}"#),
            ..event_to(&endpoint, n)
        })
        .collect();
    let published = publish_events(&app, events).await;
    let ids: HashSet<String> = published.iter().map(|d| d.id.clone()).collect();
    let stored = published
        .iter()
        .filter(|d| d.status == pb::DeliveryStatus::Scheduled as i32)
        .count();
    assert!(
        stored >= 185,
        "only the first few fit in memory: {stored} stored"
    );
    receiver.wait_for_count(200, WAIT).await;
    let seen = delivery_ids(&receiver);
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(seen.values().all(|&n| n == 1), "each sent once: {seen:?}");
}

/// Memory full by the count of deliveries.
async fn backlog_beyond_memory(backend: Backend) {
    let limits = hookd::delivery::Limits {
        per_endpoint_in_flight: 4,
        per_endpoint_queued: 6,
        max_in_flight: 8,
        max_queued: 10,
        max_queued_bytes: usize::MAX,
    };
    overflow(backend, limits, "").await;
}

/// Memory full by bytes: about ten 4 kB payloads fit.
async fn backlog_beyond_memory_bytes(backend: Backend) {
    let limits = hookd::delivery::Limits {
        per_endpoint_in_flight: 4,
        per_endpoint_queued: 1_000,
        max_in_flight: 8,
        max_queued: 1_000,
        max_queued_bytes: 40_000,
    };
    overflow(backend, limits, &"x".repeat(4_000)).await;
}

backend_test!(
    a_backlog_beyond_memory_in_bytes_flows_without_waiting_for_the_poller,
    backlog_beyond_memory_bytes
);

backend_test!(
    a_backlog_beyond_memory_flows_without_waiting_for_the_poller,
    backlog_beyond_memory
);

/// An endpoint created through one server can be published to through
/// another at once, by id and by owner, although the other server read the
/// project's endpoints (for an owner with none yet) moments before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_can_be_published_to_through_another_server_at_once() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("HOOKD_TEST_DATABASE_URL unset: two-server run skipped (PostgreSQL only)");
        return;
    };
    let config = || hookd::delivery::DeliveryConfig {
        // Far longer than the test: only a fresh read can find the endpoint.
        endpoint_cache_ttl: Duration::from_secs(3600),
        ..test_delivery_config()
    };
    let first = spawn_app_on(TestDb::new(&backend), config()).await;
    let second = spawn_app_on(TestDb::shared_with(first.db()), config()).await;
    let receiver = TestReceiver::start().await;
    let to_owner = || pb::CreateEventRequest {
        event_type: "order.paid".into(),
        payload: "{}".into(),
        target: Some(Target::OwnerId("customer-7".into())),
        ..Default::default()
    };
    let mut events = second.events_with(&first.api_key).await;
    let refused = events
        .create_event(to_owner())
        .await
        .expect_err("no endpoint has this owner yet");
    assert_eq!(refused.code(), tonic::Code::NotFound);

    let endpoint = first
        .endpoints()
        .await
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                name: "r".into(),
                url: receiver.url("/"),
                owner_id: "customer-7".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("endpoint created")
        .into_inner()
        .id;
    let by_owner = events
        .create_event(to_owner())
        .await
        .expect("published by owner through the other server")
        .into_inner();
    assert_eq!(by_owner.deliveries.len(), 1);
    assert_eq!(by_owner.deliveries[0].endpoint_id, endpoint);
    events
        .create_event(event_to(&endpoint, 1))
        .await
        .expect("published by id through the other server");
    receiver.wait_for_count(2, WAIT).await;
}

/// Two servers on one PostgreSQL database (the scale-out setup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_work_without_duplicates() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("HOOKD_TEST_DATABASE_URL unset: two-server run skipped (PostgreSQL only)");
        return;
    };
    // Retries wait an hour unless the test moves the clock.
    let config = || hookd::delivery::DeliveryConfig {
        retry: hookd::domain::retry::RetryPolicy::new(
            5,
            Duration::from_secs(3600),
            2.0,
            Duration::from_secs(7200),
            0.0,
            Duration::from_secs(7200),
        )
        .unwrap(),
        // Every first attempt fails on purpose; the breaker must not trip.
        breaker_failures: 100_000,
        ..test_delivery_config()
    };
    let first = spawn_app_on(TestDb::new(&backend), config()).await;
    let second = spawn_app_on(TestDb::shared_with(first.db()), config()).await;
    let receiver = TestReceiver::start().await;
    // Everything fails once, so the retries are claimed by both servers'
    // pollers racing for the same rows.
    receiver.respond_with(Behavior::Status(500));
    let endpoint = create_endpoint(&first, receiver.url("/")).await;

    let mut ids = HashSet::new();
    for (server, batch) in [(&first, 0), (&second, 1)].into_iter().cycle().take(10) {
        let published = server
            .events_with(&first.api_key)
            .await
            .batch_create_events(pb::BatchCreateEventsRequest {
                events: (0..100)
                    .map(|n| event_to(&endpoint, batch * 1000 + n))
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(published.results.iter().map(|r| r.deliveries[0].id.clone()));
    }
    assert_eq!(ids.len(), 1000);
    receiver.wait_for_count(1000, WAIT).await;
    for id in ids.iter().take(50) {
        wait_for_delivery(&first, id, pb::DeliveryStatus::Retry, WAIT).await;
    }

    receiver.respond_with(Behavior::Status(200));
    first.clock.advance(Duration::from_secs(3601));
    second.clock.advance(Duration::from_secs(3601));
    // Both stay alive in each other's eyes after the jump in time.
    first.engine.heartbeat().await.unwrap();
    second.engine.heartbeat().await.unwrap();
    let (a, b) = tokio::join!(first.engine.tick(), second.engine.tick());
    let claimed = a.unwrap() + b.unwrap();
    receiver.wait_for_count(2000, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = delivery_ids(&receiver);
    assert_eq!(seen.len(), 1000, "every delivery arrived");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 2).take(5).collect();
    assert!(
        twice.is_empty(),
        "each delivery arrives once failing and once succeeding, never twice at once; e.g. {twice:?}"
    );
    assert!(claimed <= 1000);
    // Every result is recorded: all 1000 succeeded after 2 attempts.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut events = first.events().await;
    loop {
        let done = events
            .list_deliveries(pb::ListDeliveriesRequest {
                page_size: 1000,
                endpoint_id: endpoint.clone(),
                statuses: vec![pb::DeliveryStatus::Success as i32],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        if done.len() == 1000 {
            assert!(done.iter().all(|d| d.attempts == 2));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 1000 succeeded",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

db_test!(
    an_endpoint_that_never_answers_does_not_slow_the_others,
    |app| async move {
        let healthy = TestReceiver::start().await;
        let black_hole = TestReceiver::start().await;
        black_hole.respond_with(Behavior::Hang);
        let stuck = create_endpoint(&app, black_hole.url("/")).await;
        let mut others = Vec::new();
        for n in 0..10 {
            others.push(create_endpoint(&app, healthy.url(&format!("/{n}"))).await);
        }
        let mut events = Vec::new();
        for n in 0..20 {
            events.push(event_to(&stuck, n));
            for endpoint in &others {
                events.push(event_to(endpoint, n));
            }
        }
        let published = app
            .events()
            .await
            .batch_create_events(pb::BatchCreateEventsRequest { events })
            .await
            .unwrap()
            .into_inner();
        // All 200 healthy deliveries arrive while the stuck endpoint's requests
        // are still hanging (its timeout is the default 10 s).
        let started = std::time::Instant::now();
        healthy.wait_for_count(200, WAIT).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "healthy deliveries waited on the stuck endpoint"
        );
        black_hole.wait_for_count(20, WAIT).await;
        let stuck_ids: Vec<&String> = published
            .results
            .iter()
            .flat_map(|r| &r.deliveries)
            .filter(|d| d.endpoint_id == stuck)
            .map(|d| &d.id)
            .collect();
        for id in stuck_ids {
            let delivery = app
                .events()
                .await
                .get_delivery(pb::GetDeliveryRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                delivery.status,
                pb::DeliveryStatus::Processing as i32,
                "still waiting"
            );
        }
    }
);
