//! Meta events on their way out: delivery outcomes are forwarded from the
//! change log into meta events, and due meta events are POSTed to their
//! project's URL, signed (Convoy simple: HMAC-SHA256, hex, in
//! `X-Convoy-Signature`), retried by the same policy as deliveries, and
//! recorded attempt by attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::http::Destination;
use super::request::Outbound;
use crate::domain::delivery::{Verdict, judge};
use crate::domain::ids::ProjectId;
use crate::domain::meta::{MetaAttempt, MetaEvent, MetaEventStatus, MetaSettings};
use crate::domain::retry::RetryPolicy;
use crate::domain::signature::{
    HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme,
};
use crate::store::StoreError;
use crate::system;

/// Meta events sent per pass, at most.
const SEND_BATCH: u32 = 100;
/// How long a claimed meta event is this process's to send.
const LEASE: Duration = Duration::from_secs(120);
/// The shortest time between two passes woken by writes.
const WAKE_GAP: Duration = Duration::from_millis(100);
/// Meta-event URLs get the default endpoint timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Forwards delivery outcomes, then sends what is due. Returns how many
/// were sent.
pub(super) async fn tick(shared: &Arc<Shared>) -> Result<usize, StoreError> {
    // Sending goes on even when forwarding fails.
    if let Err(err) = shared
        .store
        .forward_delivery_meta_events(shared.clock.now())
        .await
    {
        log_failure(shared, &err, "forwarding meta events");
    }
    let mut total = 0;
    loop {
        let due = shared
            .store
            .claim_due_meta_events(&shared.node, shared.clock.now(), LEASE, SEND_BATCH)
            .await?;
        let count = due.len();
        // Each project's settings once per batch, not once per meta event.
        let mut projects: HashMap<ProjectId, Arc<Sending>> = HashMap::new();
        let mut sends = tokio::task::JoinSet::new();
        for event in due {
            let sending = match projects.get(&event.project_id) {
                Some(sending) => sending.clone(),
                None => match shared.store.meta_sending(&event.project_id).await {
                    Ok(read) => {
                        let sending = Arc::new(read);
                        projects.insert(event.project_id.clone(), sending.clone());
                        sending
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, project = %event.project_id, "cannot read meta event settings");
                        continue;
                    }
                },
            };
            let shared = shared.clone();
            sends.spawn(async move { send(&shared, &sending, event).await });
        }
        while let Some(sent) = sends.join_next().await {
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "recording a meta event attempt failed")
                }
                Err(err) => tracing::error!(error = %err, "meta event send panicked"),
            }
        }
        total += count;
        if count < SEND_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Runs `tick` every `poll_interval` until cancelled; sends in flight may
/// take up to their timeout.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut writes = shared.store.writes();
    loop {
        let last = tokio::time::Instant::now();
        tokio::select! {
            () = tokio::time::sleep(shared.config.poll_interval) => {}
            // Something was written here: likely an outcome to forward or a
            // meta event to send. At most one pass per `WAKE_GAP`, however
            // often the store is written.
            Ok(()) = writes.changed() => tokio::time::sleep_until(last + WAKE_GAP).await,
            () = cancel.cancelled() => return,
        }
        // Shutdown's own writes wake this loop; the store is closing then.
        if cancel.is_cancelled() {
            return;
        }
        if let Err(err) = tick(&shared).await {
            log_failure(&shared, &err, "sending meta events");
        }
    }
}

/// A failed pass is a WARN, except once shutdown has begun: the store may
/// be closing then, and nothing is lost (the next start takes it up).
fn log_failure(shared: &Shared, err: &StoreError, what: &str) {
    if shared.stopping.is_cancelled() {
        tracing::debug!(error = %err, "{what} stopped by shutdown");
    } else {
        tracing::warn!(error = %err, "{what} failed");
    }
}

/// A project's meta-event settings and its own retry policy, if any.
type Sending = (MetaSettings, Option<RetryPolicy>);

async fn send(shared: &Shared, sending: &Sending, event: MetaEvent) -> Result<(), StoreError> {
    let (settings, retry) = sending;
    let Some(url) = &settings.url else {
        // The URL was removed since: nothing to send to; a retry by hand
        // after a URL is set again sends it.
        return shared
            .store
            .release_meta_event_unsent(&shared.node, &event.id, shared.clock.now())
            .await;
    };
    let number = event.attempts + 1;
    let requested_at = shared.clock.now();
    let body = Bytes::from(event.payload.clone());
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, shared.user_agent.clone());
    headers.insert(
        "x-hookd-meta-event-id",
        HeaderValue::from_str(event.id.as_str()).expect("ids are ASCII"),
    );
    if let Some(secret) = &settings.secret {
        let convoy = SignatureConfig::new(
            SignatureScheme::ConvoySimple,
            HashAlgorithm::Sha256,
            SignatureEncoding::Hex,
        )
        .expect("Convoy simple signs with any hash");
        for (name, value) in convoy.sign(
            std::slice::from_ref(secret),
            requested_at.to_seconds_nanos().0,
            event.id.as_str(),
            &body,
        ) {
            headers.insert(name, HeaderValue::from_str(&value).expect("hex is ASCII"));
        }
    }
    let attempt_error = |message: String| MetaAttempt {
        number,
        url: url.as_str().to_owned(),
        requested_at,
        responded_at: None,
        http_status: None,
        error: Some(crate::domain::delivery::AttemptError {
            class: crate::domain::delivery::ErrorClass::Other,
            message,
        }),
        ip_address: None,
        duration_ms: 0,
    };
    let (attempt, retry_after) = match Destination::parse(url.as_str()) {
        Err(err) => (
            attempt_error(format!("the URL cannot be requested: {err}")),
            None,
        ),
        Ok(destination) => {
            let response = shared
                .http
                .send(
                    Outbound {
                        destination: Arc::new(destination),
                        headers,
                        body,
                        recorded_headers: Default::default(),
                    },
                    TIMEOUT,
                )
                .await;
            let responded_at = response.status.map(|_| shared.clock.now());
            (
                MetaAttempt {
                    number,
                    url: url.as_str().to_owned(),
                    requested_at,
                    responded_at,
                    http_status: response.status,
                    error: response.error,
                    ip_address: response.ip_address,
                    duration_ms: u32::try_from(response.elapsed.as_millis()).unwrap_or(u32::MAX),
                },
                response.retry_after,
            )
        }
    };
    let now = shared.clock.now();
    let (status, next, description) = match judge(
        attempt.http_status,
        retry_after,
        number,
        retry.as_ref().unwrap_or(&shared.config.retry),
        system::random_fraction(),
        now,
    ) {
        Verdict::Success => (MetaEventStatus::Success, None, String::new()),
        Verdict::Retry { at } => (MetaEventStatus::Retry, Some(at), String::new()),
        Verdict::Failure { description } => (MetaEventStatus::Failure, None, description),
    };
    if status != MetaEventStatus::Success {
        tracing::info!(meta_event = %event.id, attempt = number, status = status.as_str(), "meta event not delivered");
    }
    shared
        .store
        .record_meta_attempt(
            &shared.node,
            &event.id,
            &attempt,
            status,
            next,
            &description,
            now,
        )
        .await
}
