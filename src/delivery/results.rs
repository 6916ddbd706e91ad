//! Writes what happened to deliveries, many per transaction. Senders hand
//! results over a bounded channel, so a slow database slows sending rather
//! than growing memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::store::DeliveryResult;

/// Results per transaction, at most.
const MAX_BATCH: usize = 1_000;
/// Pause before writing a failed batch again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A batch smaller than this waits `LINGER` for more results before it is
/// written. At low rates every result would otherwise take a transaction
/// (and an fsync) of its own, and publishes would queue behind them for
/// SQLite's single writer. Under load batches are larger and never wait.
const LINGER_BELOW: usize = 32;
const LINGER: Duration = Duration::from_millis(2);

pub(super) enum Message {
    Result(DeliveryResult),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Runs until every sender is gone.
pub(super) async fn run(shared: Arc<Shared>, mut messages: mpsc::Receiver<Message>) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while messages.recv_many(&mut received, MAX_BATCH).await > 0 {
        if received.len() < LINGER_BELOW {
            let deadline = tokio::time::Instant::now() + LINGER;
            while received.len() < MAX_BATCH {
                let room = MAX_BATCH - received.len();
                match tokio::time::timeout_at(deadline, messages.recv_many(&mut received, room))
                    .await
                {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        let mut flushed = Vec::new();
        for message in received.drain(..) {
            match message {
                Message::Result(result) => batch.push(result),
                Message::Flush(done) => flushed.push(done),
            }
        }
        if !batch.is_empty() {
            write(&shared, &batch).await;
            batch.clear();
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Keeps trying: a result that is never written means the delivery is sent
/// again after this node's lease lapses, which is allowed (at least once)
/// but worth avoiding. Gives up only when the engine is told to stop.
async fn write(shared: &Arc<Shared>, batch: &[DeliveryResult]) {
    loop {
        match shared
            .store
            .record_results(
                &shared.node,
                batch,
                shared.clock.now(),
                shared.config.breaker_failures,
            )
            .await
        {
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
