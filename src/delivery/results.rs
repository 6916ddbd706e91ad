//! Writes what happened to deliveries, many per transaction. Senders hand
//! results over a bounded channel, so a slow database slows sending rather
//! than growing memory. On SQLite, which has one writer, batches go through
//! the [`committer`] to share its transactions with publishes; once the
//! engine stops taking publishes they are written directly.
//!
//! [`committer`]: super::committer

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::committer::CommitRequest;
use crate::store::{DeliveryResult, StatusChange, StoreError};

/// Results per transaction, at most.
const MAX_BATCH: usize = 1_000;
/// Pause before writing a failed batch again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

pub(super) enum Message {
    Result(DeliveryResult),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Runs until every sender is gone.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut messages: mpsc::Receiver<Message>,
    commits: mpsc::Sender<CommitRequest>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while messages.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut flushed = Vec::new();
        for message in received.drain(..) {
            match message {
                Message::Result(result) => batch.push(result),
                Message::Flush(done) => flushed.push(done),
            }
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            write(&shared, &commits, Arc::new(full)).await;
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Keeps trying: a result that is never written means the delivery is sent
/// again after this node's lease lapses, which is allowed (at least once)
/// but worth avoiding. Gives up only when the engine is told to stop.
async fn write(
    shared: &Arc<Shared>,
    commits: &mpsc::Sender<CommitRequest>,
    batch: Arc<Vec<DeliveryResult>>,
) {
    loop {
        match commit(shared, commits, &batch).await {
            Ok(changes) => {
                for change in changes {
                    shared.cache.invalidate(&change.endpoint_id);
                    tracing::info!(
                        endpoint = %change.endpoint_id,
                        status = change.status.as_str(),
                        reason = %change.reason,
                        "endpoint status changed by the circuit breaker"
                    );
                    tokio::spawn(super::send_alert(shared.clone(), change));
                }
                return;
            }
            Err(err) if shared.stopping.is_cancelled() => {
                tracing::error!(error = %err, results = batch.len(), "could not record delivery results at shutdown; they will be sent again");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, results = batch.len(), "recording delivery results failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Records `batch`: on SQLite in the committer's next transaction (or on
/// its own once the committer has stopped). PostgreSQL runs transactions
/// side by side, so there results keep their own, next to the publishes'.
async fn commit(
    shared: &Shared,
    commits: &mpsc::Sender<CommitRequest>,
    batch: &Arc<Vec<DeliveryResult>>,
) -> Result<Vec<StatusChange>, Arc<StoreError>> {
    if shared.store.is_embedded() {
        let (reply, committed) = oneshot::channel();
        let request = CommitRequest {
            records: Vec::new(),
            results: Some(batch.clone()),
            reply,
        };
        if commits.send(request).await.is_ok()
            && let Ok(committed) = committed.await
        {
            return committed.map(|c| c.changes);
        }
    }
    shared
        .store
        .record_results(&shared.result_batch(batch))
        .await
        .map_err(Arc::new)
}
