//! One function per measurement. Each starts from fresh hookd processes on a
//! fresh database, so scenarios do not disturb each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::client::Api;
use super::progress::Progress;
use super::receiver::{Receiver, now_micros};
use super::server::{BenchDatabase, Servers};
use super::watcher::Watcher;
use crate::domain::secret::Secret;
use crate::grpc::pb;
use crate::grpc::pb::create_event_request::Target;

pub(super) const SECRET: &str = "bench-signing-secret";

fn secret() -> Secret {
    Secret::parse(SECRET).expect("a valid constant secret")
}

/// What a scenario counted for the accounting.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Accounting {
    pub(super) acknowledged: u64,
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    pub(super) bad_signatures: u64,
}

impl Accounting {
    pub(super) fn add(&mut self, other: Accounting) {
        self.acknowledged += other.acknowledged;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.bad_signatures += other.bad_signatures;
    }
}

/// Waits until the receiver has `expected` requests, or `limit` passes.
async fn await_count(receiver: &Receiver, expected: u64, limit: Duration, progress: &Progress) {
    let started = Instant::now();
    loop {
        let received = receiver.tally.received.load(Relaxed);
        progress.show(received, expected);
        if received >= expected || started.elapsed() > limit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn account(receiver: &Receiver, acknowledged: u64) -> Accounting {
    let tally = &receiver.tally;
    let distinct = tally.received.load(Relaxed) - tally.duplicates.load(Relaxed);
    Accounting {
        acknowledged,
        lost: acknowledged.saturating_sub(distinct),
        duplicates: tally.duplicates.load(Relaxed),
        bad_signatures: tally.signatures_bad.load(Relaxed),
    }
}

fn event(event_type: &str, payload: String, target: Target) -> pb::CreateEventRequest {
    pb::CreateEventRequest {
        event_type: event_type.into(),
        payload,
        target: Some(target),
        ..Default::default()
    }
}

/// Requests/s the receiver takes from a plain hyper client loop at
/// `concurrency`, without hookd: the machine's ceiling for this receiver.
/// Each loop keeps one HTTP/1.1 connection of its own (hyper's `conn`
/// API, as hookd's sender does), so the ceiling spends no more per request
/// than the least a hyper client can.
pub(super) async fn ceiling(
    concurrency: usize,
    duration: Duration,
    progress: &Progress,
) -> Result<f64, String> {
    let receiver = Receiver::start(secret(), false)
        .await
        .map_err(|e| e.to_string())?;
    let (addr, host) = (receiver.addr, receiver.addr.to_string());
    let deadline = Instant::now() + duration;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (host, sent) = (host.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            while Instant::now() < deadline {
                let request = hyper::Request::post("/ceiling")
                    .header("host", &host)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(br#"{"n":1}"#)))
                    .expect("a valid request");
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                sent.fetch_add(1, Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    let started = Instant::now();
    while Instant::now() < deadline {
        progress.show(sent.load(Relaxed), 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(receiver.tally.received.load(Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Events/s acknowledged: single CreateEvent calls at `concurrency`, then
/// BatchCreateEvents. Returns (single, batch).
pub(super) async fn publish(
    database: &BenchDatabase,
    instances: usize,
    events: u64,
    concurrency: usize,
    progress: &Progress,
) -> Result<((f64, f64), Accounting), String> {
    let servers = Servers::start(database, instances, &[])?;
    let api = Api::connect(&servers.addrs, &servers.api_key).await?;
    let receiver = Receiver::start(secret(), false)
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = api
        .create_endpoint(receiver.url("/publish"), "", SECRET)
        .await?;

    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency as u64 {
        let (mut client, endpoint, acked) = (api.events(), endpoint.clone(), acked.clone());
        let share = events / concurrency as u64 + u64::from(worker < events % concurrency as u64);
        tasks.push(tokio::spawn(async move {
            for n in 0..share {
                let request = event(
                    "bench.publish",
                    format!(r#"{{"n":{n}}}"#),
                    Target::EndpointId(endpoint.clone()),
                );
                client
                    .create_event(request)
                    .await
                    .map_err(|e| e.message().to_owned())?;
                acked.fetch_add(1, Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    let single = finish(tasks, &acked, events, started, progress).await?;

    let acked_batch = Arc::new(AtomicU64::new(0));
    let batch = batch_publish(&api, events, &acked_batch, progress, |n| {
        event(
            "bench.publish",
            format!(r#"{{"n":{n}}}"#),
            Target::EndpointId(endpoint.clone()),
        )
    })
    .await?;
    await_count(&receiver, 2 * events, Duration::from_secs(120), progress).await;
    Ok(((single, batch), account(&receiver, 2 * events)))
}

async fn finish(
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    acked: &AtomicU64,
    expected: u64,
    started: Instant,
    progress: &Progress,
) -> Result<f64, String> {
    let all = futures_like_join(tasks);
    tokio::pin!(all);
    loop {
        tokio::select! {
            result = &mut all => {
                result?;
                return Ok(expected as f64 / started.elapsed().as_secs_f64());
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => progress.show(acked.load(Relaxed), expected),
        }
    }
}

async fn futures_like_join(
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
) -> Result<(), String> {
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Publishes `events` with BatchCreateEvents, 100 per call, 8 calls at once.
/// Returns events/s acknowledged.
async fn batch_publish(
    api: &Api,
    events: u64,
    acked: &Arc<AtomicU64>,
    progress: &Progress,
    make: impl Fn(u64) -> pb::CreateEventRequest,
) -> Result<f64, String> {
    const BATCH: u64 = 100;
    const CALLS: u64 = 8;
    let batches: Vec<Vec<pb::CreateEventRequest>> = (0..events)
        .collect::<Vec<_>>()
        .chunks(BATCH as usize)
        .map(|chunk| chunk.iter().map(|&n| make(n)).collect())
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CALLS {
        let (mut client, queue, acked) = (api.events(), queue.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(events) = next else {
                    return Ok(());
                };
                let n = events.len() as u64;
                client
                    .batch_create_events(pb::BatchCreateEventsRequest { events })
                    .await
                    .map_err(|e| e.message().to_owned())?;
                acked.fetch_add(n, Relaxed);
            }
        }));
    }
    finish(tasks, acked, events, started, progress).await
}

/// What one end-to-end run measured.
pub(super) struct Throughput {
    /// Deliveries/s from the first publish until the last was received.
    pub(super) rate: f64,
    /// Seconds until every publish was acknowledged, and how many
    /// deliveries had been received by then: which side held the run back.
    pub(super) published_after: f64,
    pub(super) received_by_then: u64,
    /// Peak RSS of the hookd processes (MiB).
    pub(super) peak_rss_mb: f64,
    /// CPU time hookd used per delivery, in microseconds.
    pub(super) cpu_us_per_delivery: f64,
    pub(super) accounting: Accounting,
}

/// `deliveries` to one endpoint, or fanned out by owner to `endpoints`,
/// from the first publish until the receiver has them all.
pub(super) async fn end_to_end(
    database: &BenchDatabase,
    instances: usize,
    deliveries: u64,
    endpoints: u64,
    watch: bool,
    progress: &Progress,
) -> Result<Throughput, String> {
    let servers = Servers::start(database, instances, &[])?;
    let api = Api::connect(&servers.addrs, &servers.api_key).await?;
    let watcher = if watch {
        Some(Watcher::start(&api).await?)
    } else {
        None
    };
    let receiver = Receiver::start(secret(), false)
        .await
        .map_err(|e| e.to_string())?;
    let mut single = String::new();
    for n in 0..endpoints {
        single = api
            .create_endpoint(receiver.url(&format!("/e{n}")), "fan", SECRET)
            .await?;
    }
    let target = move || {
        if endpoints == 1 {
            Target::EndpointId(single.clone())
        } else {
            Target::OwnerId("fan".into())
        }
    };
    let events = deliveries / endpoints;
    let cpu_before = servers.cpu_seconds();
    let started_micros = now_micros();
    let acked = Arc::new(AtomicU64::new(0));
    batch_publish(&api, events, &acked, progress, |n| {
        event("bench.e2e", format!(r#"{{"n":{n}}}"#), target())
    })
    .await?;
    let published_after = now_micros().saturating_sub(started_micros) as f64 / 1e6;
    let received_by_then = receiver.tally.received.load(Relaxed);
    await_count(
        &receiver,
        events * endpoints,
        Duration::from_secs(300),
        progress,
    )
    .await;
    let elapsed = (receiver
        .tally
        .last_at
        .load(Relaxed)
        .saturating_sub(started_micros)) as f64
        / 1e6;
    let cpu = servers.cpu_seconds() - cpu_before;
    let (_, peak) = servers.memory_mb();
    let received = receiver.tally.received.load(Relaxed);
    let rate = received as f64 / elapsed.max(1e-6);
    let mut counted = account(&receiver, events * endpoints);
    if let Some(watcher) = watcher {
        let expected = events * endpoints;
        let (seen, resumes) = watcher.finish(expected, Duration::from_secs(60)).await;
        progress.note(&format!(
            "the watcher saw {seen} of {expected} successes ({resumes} resumes)"
        ));
        // A success the stream never showed counts as lost.
        counted.lost += expected.saturating_sub(seen);
    }
    Ok(Throughput {
        rate,
        published_after,
        received_by_then,
        peak_rss_mb: peak,
        cpu_us_per_delivery: cpu * 1e6 / received.max(1) as f64,
        accounting: counted,
    })
}

/// Latency at a fixed publish rate: (ack p50, ack p99, e2e p50, e2e p99,
/// e2e max), in milliseconds.
pub(super) async fn latency(
    database: &BenchDatabase,
    instances: usize,
    rate: u32,
    duration: Duration,
    progress: &Progress,
) -> Result<([f64; 5], Accounting), String> {
    let servers = Servers::start(database, instances, &[])?;
    let api = Api::connect(&servers.addrs, &servers.api_key).await?;
    let receiver = Receiver::start(secret(), false)
        .await
        .map_err(|e| e.to_string())?;
    receiver.tally.measure_latency.store(true, Relaxed);
    let endpoint = api
        .create_endpoint(receiver.url("/latency"), "", SECRET)
        .await?;
    // Warm the connections before measuring.
    let mut warm = api.events();
    for _ in 0..50 {
        let request = event(
            "bench.warm",
            "{\"warm\":true}".into(),
            Target::EndpointId(endpoint.clone()),
        );
        warm.create_event(request)
            .await
            .map_err(|e| e.message().to_owned())?;
    }
    await_count(&receiver, 50, Duration::from_secs(30), progress).await;
    receiver.tally.reset();

    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let acks = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (mut client, endpoint, acks) = (api.events(), endpoint.clone(), acks.clone());
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let request = event(
                "bench.latency",
                format!(r#"{{"t":{},"n":{n}}}"#, now_micros()),
                Target::EndpointId(endpoint),
            );
            let result = client.create_event(request).await;
            acks.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sent.elapsed().as_micros() as u64);
            result.map(drop).map_err(|e| e.message().to_owned())
        }));
        if n % 100 == 0 {
            progress.show(n, total);
        }
    }
    futures_like_join(calls).await?;
    await_count(&receiver, total, Duration::from_secs(60), progress).await;
    let mut acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
    let mut e2e = std::mem::take(
        &mut *receiver
            .tally
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let ms = |v: &mut Vec<u64>, q: f64| super::report::percentile(v, q) / 1000.0;
    let figures = [
        ms(&mut acks, 0.5),
        ms(&mut acks, 0.99),
        ms(&mut e2e, 0.5),
        ms(&mut e2e, 0.99),
        ms(&mut e2e, 1.0),
    ];
    Ok((figures, account(&receiver, total)))
}

/// Healthy throughput to 10 endpoints without, then with, an 11th that
/// never answers (deliveries/s).
///
/// After an unmeasured warm-up, phases without (A) and with (B) the black
/// hole alternate A B B A A B B A on the same hookd processes, each with
/// its own endpoints and `deliveries / 4`, and each side's throughput is the
/// mean of its four phases. One pair in one order was biased by whatever
/// drifts during a run (caches warming, the database growing): the second
/// phase, the one with the black hole, came out up to 13 % faster than the
/// first. Alternating also averages out the machine's noise, which moves a
/// single phase by ±10–20 %.
pub(super) async fn isolation(
    database: &BenchDatabase,
    instances: usize,
    deliveries: u64,
    progress: &Progress,
) -> Result<([f64; 2], Accounting), String> {
    /// Whether each measured phase has the black hole beside its 10 healthy
    /// endpoints.
    const BESIDE: [bool; 8] = [false, true, true, false, false, true, true, false];
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    let mut accounting = Accounting::default();
    // Every phase on the same hookd processes, so only the black hole
    // differs: separate processes per phase made the ratio swing by ±0.15.
    let servers = Servers::start(database, instances, &[])?;
    let api = Api::connect(&servers.addrs, &servers.api_key).await?;
    let black_hole = Receiver::start(secret(), true)
        .await
        .map_err(|e| e.to_string())?;
    let warm_up = (false, deliveries / 50);
    let measured = BESIDE.map(|with_black_hole| (with_black_hole, deliveries / 40));
    for (phase, (with_black_hole, events)) in std::iter::once(warm_up).chain(measured).enumerate() {
        let owner = format!("iso-{phase}");
        let owner = owner.as_str();
        let healthy = Receiver::start(secret(), false)
            .await
            .map_err(|e| e.to_string())?;
        for n in 0..10 {
            api.create_endpoint(healthy.url(&format!("/h{n}")), owner, SECRET)
                .await?;
        }
        if with_black_hole {
            api.create_endpoint(black_hole.url(&format!("/{owner}")), owner, SECRET)
                .await?;
        }
        let started_micros = now_micros();
        let acked = Arc::new(AtomicU64::new(0));
        batch_publish(&api, events, &acked, progress, |n| {
            event(
                "bench.iso",
                format!(r#"{{"n":{n}}}"#),
                Target::OwnerId(owner.into()),
            )
        })
        .await?;
        await_count(&healthy, events * 10, Duration::from_secs(300), progress).await;
        let elapsed = (healthy
            .tally
            .last_at
            .load(Relaxed)
            .saturating_sub(started_micros)) as f64
            / 1e6;
        let rate = healthy.tally.received.load(Relaxed) as f64 / elapsed.max(1e-6);
        accounting.add(account(&healthy, events * 10));
        match (phase, with_black_hole) {
            (0, _) => {}
            (_, false) => alone.push(rate),
            (_, true) => beside.push(rate),
        }
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    Ok(([mean(&alone), mean(&beside)], accounting))
}

/// RSS added by a backlog of `deliveries` waiting to retry, in MiB.
pub(super) async fn backlog(
    database: &BenchDatabase,
    deliveries: u64,
    progress: &Progress,
) -> Result<f64, String> {
    let extra = ["--retry-initial-delay", "1h"].map(str::to_owned);
    let servers = Servers::start(database, 1, &extra)?;
    let api = Api::connect(&servers.addrs, &servers.api_key).await?;
    // Nothing listens there: every first attempt fails at once.
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.local_addr().map_err(|e| e.to_string())?
    };
    let endpoint = api
        .create_endpoint(format!("http://{refused}/nobody"), "", SECRET)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = servers.memory_mb();
    let acked = Arc::new(AtomicU64::new(0));
    batch_publish(&api, deliveries, &acked, progress, |n| {
        event(
            "bench.backlog",
            format!(r#"{{"n":{n}}}"#),
            Target::EndpointId(endpoint.clone()),
        )
    })
    .await?;
    // Wait until hookd holds nothing in memory: every delivery has had its
    // first attempt and waits in the store.
    let mut client = api.events();
    loop {
        let page = client
            .list_deliveries(pb::ListDeliveriesRequest {
                page_size: 1,
                endpoint_id: endpoint.clone(),
                statuses: vec![
                    pb::DeliveryStatus::Processing as i32,
                    pb::DeliveryStatus::Scheduled as i32,
                ],
                ..Default::default()
            })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        if page.deliveries.is_empty() {
            break;
        }
        progress.show(acked.load(Relaxed), deliveries);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (after, _) = servers.memory_mb();
    Ok(after - before)
}
