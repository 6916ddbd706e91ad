//! The benchmark's HTTP receiver: answers 200 at once over keep-alive,
//! counts every delivery, notices duplicates, checks a sample of signatures
//! and, for the latency scenario, reads the send time from the payload.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::secret::Secret;
use crate::domain::signature::SignatureConfig;

/// Every how many requests a signature is verified.
const VERIFY_EVERY: u64 = 997;

#[derive(Default)]
pub(super) struct Tally {
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) signatures_checked: AtomicU64,
    pub(super) signatures_bad: AtomicU64,
    /// Microseconds since the Unix epoch of the last request.
    pub(super) last_at: AtomicU64,
    seen: Mutex<HashSet<u128>>,
    /// Publish-to-receive latencies in microseconds, when measuring them.
    pub(super) latencies: Mutex<Vec<u64>>,
    pub(super) measure_latency: AtomicBool,
}

impl Tally {
    pub(super) fn reset(&self) {
        self.received.store(0, Relaxed);
        self.duplicates.store(0, Relaxed);
        self.last_at.store(0, Relaxed);
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

pub(super) struct Receiver {
    pub(super) addr: SocketAddr,
    pub(super) tally: Arc<Tally>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(super) fn now_micros() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

impl Receiver {
    /// `hang`: accept requests and never answer (the black-hole endpoint).
    pub(super) async fn start(secret: Secret, hang: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::default());
        let stop = CancellationToken::new();
        let (task_tally, task_stop) = (tally.clone(), stop.clone());
        let secret = Arc::new(secret);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    () = task_stop.cancelled() => return,
                };
                let _ = stream.set_nodelay(true);
                let (tally, secret, stop) = (task_tally.clone(), secret.clone(), task_stop.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (tally, secret) = (tally.clone(), secret.clone());
                        async move { handle(request, &tally, &secret, hang).await }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self { addr, tally, stop })
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn handle(
    request: Request<Incoming>,
    tally: &Tally,
    secret: &Secret,
    hang: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delivery = request
        .headers()
        .get("x-hookd-delivery-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("dlv_"))
        .and_then(|v| uuid::Uuid::try_parse(v).ok())
        .map(|id| id.as_u128());
    let signature = request
        .headers()
        .get("x-convoy-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if hang {
        std::future::pending::<()>().await;
    }
    let at = now_micros();
    let count = tally.received.fetch_add(1, Relaxed) + 1;
    tally.last_at.fetch_max(at, Relaxed);
    if let Some(id) = delivery
        && !tally
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
    {
        tally.duplicates.fetch_add(1, Relaxed);
    }
    if tally.measure_latency.load(Relaxed)
        && let Ok(sent) = serde_json::from_slice::<SentAt>(&body)
    {
        tally
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(at.saturating_sub(sent.t));
    }
    if count % VERIFY_EVERY == 1 {
        tally.signatures_checked.fetch_add(1, Relaxed);
        if !verifies(signature.as_deref(), secret, &body) {
            tally.signatures_bad.fetch_add(1, Relaxed);
        }
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

#[derive(serde::Deserialize)]
struct SentAt {
    t: u64,
}

/// Checks a Convoy advanced signature by recomputing it.
fn verifies(header: Option<&str>, secret: &Secret, body: &[u8]) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Some(t) = header.split(',').find_map(|p| p.strip_prefix("t=")) else {
        return false;
    };
    let Ok(t) = t.parse::<i64>() else {
        return false;
    };
    let expected = SignatureConfig::default().sign(std::slice::from_ref(secret), t, "", body);
    expected.first().is_some_and(|(_, value)| value == header)
}
