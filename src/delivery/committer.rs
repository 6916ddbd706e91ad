//! Group commit: publishes that arrive while a transaction is being written
//! wait and share the next one, so durable (fsync'd) commits do not cap
//! throughput at the disk's sync rate. After each commit the deliveries that
//! got a place in memory go straight to the dispatcher.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Job, Shared};
use crate::domain::delivery::DeliveryStatus;
use crate::store::{PublishRecord, Published, StoreError};

/// Deliveries per transaction, at most (a single larger request still goes
/// in one transaction).
const MAX_BATCH_DELIVERIES: usize = 5_000;

pub(super) struct CommitRequest {
    pub(super) records: Vec<PublishRecord>,
    pub(super) reply: oneshot::Sender<Result<Committed, Arc<StoreError>>>,
}

/// The records as stored (leases decided) and what became of each.
pub(super) struct Committed {
    pub(super) records: Vec<PublishRecord>,
    pub(super) outcomes: Vec<Published>,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<CommitRequest>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let mut batch = vec![first];
        let mut size: usize = batch[0]
            .records
            .iter()
            .map(|r| r.deliveries.len().max(1))
            .sum();
        while size < MAX_BATCH_DELIVERIES {
            match requests.try_recv() {
                Ok(next) => {
                    size += next
                        .records
                        .iter()
                        .map(|r| r.deliveries.len().max(1))
                        .sum::<usize>();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        commit(&shared, batch).await;
    }
}

async fn commit(shared: &Shared, mut batch: Vec<CommitRequest>) {
    for request in &mut batch {
        lease(shared, &mut request.records);
    }
    let all: Vec<PublishRecord> = batch
        .iter()
        .flat_map(|r| r.records.iter().cloned())
        .collect();
    let dedup_since = shared.dedup_since();
    match shared.store.publish(&all, dedup_since).await {
        Ok(outcomes) => {
            use std::sync::atomic::Ordering::Relaxed;
            shared.stats.commits.fetch_add(1, Relaxed);
            let stored = outcomes.iter().filter(|o| **o == Published::Stored).count();
            shared.stats.events.fetch_add(stored as u64, Relaxed);
            let mut outcomes = outcomes.into_iter();
            for request in batch {
                let mine: Vec<Published> = outcomes.by_ref().take(request.records.len()).collect();
                hand_over(shared, &request.records, &mine);
                let _ = request.reply.send(Ok(Committed {
                    records: request.records,
                    outcomes: mine,
                }));
            }
        }
        Err(err) if batch.len() > 1 => {
            // One request may have spoiled the batch (an idempotency key
            // race, say): give each its own transaction so only it fails.
            tracing::warn!(error = %err, requests = batch.len(), "batch commit failed; committing one by one");
            for request in batch {
                unlease(shared, &request.records);
                Box::pin(commit(shared, vec![request])).await;
            }
        }
        Err(err) => {
            if let Some(request) = batch.pop() {
                unlease(shared, &request.records);
                let _ = request.reply.send(Err(Arc::new(err)));
            }
        }
    }
}

/// Gives each pending delivery a place in memory if there is one: it is then
/// stored as PROCESSING, held by this node, and dispatched right after the
/// commit. The others stay SCHEDULED for the poller.
fn lease(shared: &Shared, records: &mut [PublishRecord]) {
    for record in records {
        for delivery in &mut record.deliveries {
            if delivery.status == DeliveryStatus::Scheduled
                && shared.dispatcher.try_reserve(&delivery.endpoint_id)
            {
                delivery.status = DeliveryStatus::Processing;
                delivery.lease_owner = Some(shared.node.clone());
            }
        }
    }
}

/// Undoes `lease` for records that were not stored.
fn unlease(shared: &Shared, records: &[PublishRecord]) {
    for record in records {
        for delivery in &record.deliveries {
            if delivery.lease_owner.is_some() {
                shared.dispatcher.unreserve(&delivery.endpoint_id);
            }
        }
    }
}

fn hand_over(shared: &Shared, records: &[PublishRecord], outcomes: &[Published]) {
    for (record, outcome) in records.iter().zip(outcomes) {
        if *outcome != Published::Stored {
            unlease(shared, std::slice::from_ref(record));
            continue;
        }
        let event = Arc::new(record.event.clone());
        for delivery in record.deliveries.iter().filter(|d| d.lease_owner.is_some()) {
            shared.dispatcher.push_reserved(Job {
                delivery_id: delivery.id.clone(),
                project_id: record.event.project_id.clone(),
                endpoint_id: delivery.endpoint_id.clone(),
                event: event.clone(),
                attempts: 0,
            });
        }
    }
}
