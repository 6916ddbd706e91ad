//! `--only store`: the SQLite write path alone, as the delivery engine
//! drives it under load, on one task and a fresh file. Each transaction
//! publishes a batch of one-delivery events, held by this node, and records
//! a successful attempt for each delivery of the transaction before, as the
//! committer's do on a busy server.
//!
//! Not one of the issue's scenarios and not in the default run: it is for
//! telling two builds' write paths apart, where the end-to-end figures swing
//! more than a change does. Its work does not depend on timing, so run
//! under `valgrind --tool=callgrind` it counts the same instructions each
//! time.

use std::sync::Arc;
use std::time::Instant;

use super::progress::Progress;
use crate::domain::delivery::{Attempt, DeliveryStatus, RecordedHeaders, Verdict};
use crate::domain::endpoint::{Endpoint, EndpointSpec};
use crate::domain::event::{Event, Payload};
use crate::domain::fields::{CustomHeaders, EndpointName, EndpointUrl, EventType};
use crate::domain::ids::{AttemptId, DeliveryId, EndpointId, EventId, NodeId, ProjectId};
use crate::domain::project::ProjectName;
use crate::domain::secret::Secret;
use crate::domain::time::{Clock, Timestamp};
use crate::store::{
    DatabaseTarget, DeliveryResult, Durability, NewDelivery, PublishRecord, ResultBatch, Store,
};
use crate::system::{self, SystemClock};

/// What `transactions` transactions of `per_transaction` deliveries took:
/// microseconds of wall time per delivery (its publish and its result).
pub(super) async fn writes(
    transactions: usize,
    per_transaction: usize,
    durability: Durability,
    progress: &Progress,
) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let store = Store::connect(&DatabaseTarget::Sqlite {
        path: dir.path().join("hookd.db"),
        durability,
    })
    .await
    .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let name = ProjectName::parse("bench").map_err(|e| e.0)?;
    let (project, _) = crate::cli::project::create(&store, name)
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = endpoint(&project)?;
    let secret = Secret::parse(super::scenarios::SECRET).map_err(|e| e.0)?;
    store
        .insert_endpoint(&endpoint, &secret)
        .await
        .map_err(|e| e.to_string())?;
    let node = NodeId::from_uuid(system::new_uuid());
    store
        .heartbeat(&node, SystemClock.now())
        .await
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut sent: Vec<DeliveryResult> = Vec::new();
    for n in 0..transactions {
        let now = SystemClock.now();
        let records: Vec<PublishRecord> = (0..per_transaction)
            .map(|i| record(&project, &endpoint.id, &node, n * per_transaction + i, now))
            .collect();
        let refs: Vec<&PublishRecord> = records.iter().collect();
        let batch = ResultBatch {
            me: &node,
            results: &sent,
            now,
            breaker_failures: 50,
        };
        let results = (!sent.is_empty()).then_some(&batch);
        store
            .write(&refs, now, results)
            .await
            .map_err(|e| e.to_string())?;
        sent = records
            .iter()
            .map(|r| success(&r.deliveries[0].id, &project, &endpoint, now))
            .collect();
        progress.show(((n + 1) * per_transaction) as u64, 0);
    }
    let elapsed = started.elapsed();
    Ok(elapsed.as_secs_f64() * 1e6 / (transactions * per_transaction) as f64)
}

fn endpoint(project: &ProjectId) -> Result<Endpoint, String> {
    let spec = EndpointSpec::new(
        EndpointName::parse("store").map_err(|e| e.0)?,
        EndpointUrl::parse("http://127.0.0.1:9/store").map_err(|e| e.0)?,
    );
    Ok(Endpoint::new(
        EndpointId::from_uuid(system::new_uuid()),
        project.clone(),
        spec,
        SystemClock.now(),
    ))
}

/// Event number `n`, with one delivery held by `node`.
fn record(
    project: &ProjectId,
    endpoint: &EndpointId,
    node: &NodeId,
    n: usize,
    now: Timestamp,
) -> PublishRecord {
    let payload = format!(r#"{{"n":{n}}}"#);
    PublishRecord {
        event: Arc::new(Event {
            id: EventId::from_uuid(system::new_uuid()),
            project_id: project.clone(),
            event_type: EventType::parse("bench.store").expect("a valid event type"),
            payload: Payload::parse(&payload, 1024).expect("a valid payload"),
            custom_headers: CustomHeaders::default(),
            idempotency_key: None,
            created_at: now,
        }),
        deliveries: vec![NewDelivery {
            id: DeliveryId::from_uuid(system::new_uuid()),
            endpoint_id: endpoint.clone(),
            status: DeliveryStatus::Processing,
            lease_owner: Some(node.clone()),
            description: String::new(),
        }],
    }
}

/// A first attempt answered 200, with the headers a real one records.
fn success(
    delivery: &DeliveryId,
    project: &ProjectId,
    endpoint: &Endpoint,
    now: Timestamp,
) -> DeliveryResult {
    let sent = [
        ("x-hookd-delivery-id", delivery.as_str()),
        (
            "x-hookd-event-id",
            "evt_0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        ),
        ("x-hookd-event-type", "bench.store"),
        ("x-convoy-signature", "[redacted]"),
        ("x-hookd-attempt", "1"),
        ("content-type", "application/json"),
        ("user-agent", concat!("hookd/", env!("CARGO_PKG_VERSION"))),
    ];
    let received = [
        ("content-length", "0"),
        ("date", "Mon, 07 Dec 2026 00:00:00 GMT"),
    ];
    DeliveryResult::Attempted {
        attempt: Box::new(Attempt {
            id: AttemptId::from_uuid(system::new_uuid()),
            delivery_id: delivery.clone(),
            project_id: project.clone(),
            number: 1,
            url: endpoint.url.as_str().to_owned(),
            requested_at: now,
            responded_at: Some(now),
            http_status: Some(200),
            error: None,
            ip_address: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            request_headers: RecordedHeaders::from_pairs(sent),
            response_headers: RecordedHeaders::from_pairs(received),
            response_body: String::new(),
            duration_ms: 1,
        }),
        endpoint_id: endpoint.id.clone(),
        verdict: Verdict::Success,
        description: String::new(),
    }
}
