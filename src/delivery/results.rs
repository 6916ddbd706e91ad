//! Writes what happened to deliveries, many per transaction. Senders hand
//! results over a bounded channel, and take their size from a [`Budget`]
//! first (a result may carry a 64 KiB response body), so a slow database
//! slows sending rather than growing memory. On SQLite, which has one
//! writer, batches go through the [`committer`] to share its transactions
//! with publishes; once the engine stops taking publishes they are written
//! directly.
//!
//! [`committer`]: super::committer

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::Shared;
use super::committer::CommitRequest;
use crate::store::{DeliveryResult, StatusChange, StoreError};

/// Results per transaction, at most.
const MAX_BATCH: usize = 1_000;
/// Pause before writing a failed batch again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Memory for results on their way to the database, in bytes.
pub(super) struct Budget {
    bytes: Arc<Semaphore>,
    /// What one result may take at most, so that any result fits.
    max: u32,
}

impl Budget {
    pub(super) fn new(bytes: usize) -> Self {
        let max = u32::try_from(bytes.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Self {
            bytes: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// Waits until there is room for `result`; the room is given back when
    /// the returned permit is dropped, once the result is written.
    pub(super) async fn reserve(&self, result: &DeliveryResult) -> Option<OwnedSemaphorePermit> {
        let size = u32::try_from(result.memory()).map_or(self.max, |n| n.min(self.max));
        // `None` only if the semaphore were closed, which it never is.
        self.bytes.clone().acquire_many_owned(size).await.ok()
    }
}

pub(super) enum Message {
    /// A result, with its share of the [`Budget`].
    Result(DeliveryResult, Option<OwnedSemaphorePermit>),
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
    let mut held = Vec::with_capacity(MAX_BATCH);
    while messages.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut flushed = Vec::new();
        for message in received.drain(..) {
            match message {
                Message::Result(result, room) => {
                    batch.push(result);
                    held.extend(room);
                }
                Message::Flush(done) => flushed.push(done),
            }
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            write(&shared, &commits, Arc::new(full)).await;
            held.clear();
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
                    shared
                        .runtime
                        .spawn(super::send_alert(shared.clone(), change));
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::domain::ids::DeliveryId;

    fn discarded(description_len: usize) -> DeliveryResult {
        DeliveryResult::Discarded {
            delivery_id: DeliveryId::from_uuid(uuid::Uuid::from_u128(1)),
            description: "x".repeat(description_len),
        }
    }

    /// Polls `reserve` once: `Some` if there was room at once.
    fn try_reserve(budget: &Budget, result: &DeliveryResult) -> Option<OwnedSemaphorePermit> {
        let mut reserving = pin!(budget.reserve(result));
        match reserving
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(permit) => Some(permit.expect("the budget is never closed")),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_result_waits_for_room_until_earlier_ones_are_written() {
        let (small, large) = (discarded(100), discarded(10_000));
        assert!(large.memory() > 10_000, "the description is counted");
        let budget = Budget::new(large.memory() + small.memory());

        let written_later = try_reserve(&budget, &large).expect("room for the first");
        let _small = try_reserve(&budget, &small).expect("room for the second");
        assert!(
            try_reserve(&budget, &small).is_none(),
            "the budget is spent"
        );

        drop(written_later);
        assert!(
            try_reserve(&budget, &small).is_some(),
            "written: room again"
        );
    }

    #[test]
    fn a_result_larger_than_the_whole_budget_still_fits_alone() {
        let budget = Budget::new(1_000);
        let huge = try_reserve(&budget, &discarded(64 * 1024)).expect("fits alone");
        assert!(try_reserve(&budget, &discarded(0)).is_none());
        drop(huge);
        assert!(try_reserve(&budget, &discarded(0)).is_some());
    }
}
