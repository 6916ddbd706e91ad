//! Group commit: publishes that arrive while a transaction is being written
//! wait and share the next one, so durable (fsync'd) commits do not cap
//! throughput at the disk's sync rate. Delivery results (from [`results`])
//! join the same transactions. After each commit the deliveries that got a
//! place in memory go straight to the dispatcher.
//!
//! One stage: a batch is gathered, built and written before the next is
//! gathered, so that everything that arrived during a write shares the next
//! transaction. (Building the next batch while the store wrote the one
//! before split small batches at low rates, so a publish could wait behind
//! two transactions: it raised the ack latency at 1,000 events/s and gained
//! no throughput measurably.)
//!
//! [`results`]: super::results

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Job, Shared};
use crate::domain::delivery::DeliveryStatus;
use crate::store::{DeliveryResult, PublishRecord, Published, StatusChange, StoreError};

/// Deliveries per transaction, at most (a single larger request still goes
/// in one transaction).
const MAX_BATCH_DELIVERIES: usize = 5_000;
/// Fewer results than this, with no publish to go with them, wait up to
/// `LINGER` for one. At low rates each result would otherwise take a
/// transaction (and an fsync) of its own, and the next publish would queue
/// behind it for SQLite's single writer; this way it carries them. Under
/// load, results find publishes waiting and never linger.
///
/// 10 ms covers the gap between publishes down to about 100 events/s: at
/// 250 events/s, 2 ms left 1.44 commits per event and 10 ms leaves 1.05
/// (docs/BENCHMARKS.md). The cost is that a result reaches the store, and
/// the watch streams, up to 10 ms later when nothing else is being written.
const LINGER_BELOW: usize = 32;
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

pub(super) struct CommitRequest {
    pub(super) records: Vec<PublishRecord>,
    /// Results to record in the same transaction (at most one request in a
    /// transaction carries any).
    pub(super) results: Option<Arc<Vec<DeliveryResult>>>,
    pub(super) reply: oneshot::Sender<Result<Committed, Arc<StoreError>>>,
}

impl CommitRequest {
    fn size(&self) -> usize {
        let records: usize = self.records.iter().map(|r| r.deliveries.len().max(1)).sum();
        records + self.results.as_ref().map_or(0, |r| r.len())
    }
}

/// The records as stored (leases decided) and what became of each, and the
/// endpoints whose status recording the results changed.
pub(super) struct Committed {
    pub(super) records: Vec<PublishRecord>,
    pub(super) outcomes: Vec<Published>,
    pub(super) changes: Vec<StatusChange>,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<CommitRequest>,
    cancel: CancellationToken,
) {
    // A request with results that found the batch already holding some.
    let mut held: Option<CommitRequest> = None;
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                () = cancel.cancelled() => return,
            },
        };
        let linger = first.records.is_empty() && first.size() < LINGER_BELOW;
        let mut batch = Batch::default();
        batch.add(first);
        if linger && let Ok(Some(next)) = tokio::time::timeout(LINGER, requests.recv()).await {
            held = batch.add(next);
        }
        while held.is_none() && batch.size < MAX_BATCH_DELIVERIES {
            match requests.try_recv() {
                Ok(next) => held = batch.add(next),
                Err(_) => break,
            }
        }
        commit(&shared, batch.requests).await;
    }
}

/// The requests one transaction takes.
#[derive(Default)]
struct Batch {
    requests: Vec<CommitRequest>,
    size: usize,
    with_results: bool,
}

impl Batch {
    /// Takes `next`, or hands it back when the batch has results already.
    fn add(&mut self, next: CommitRequest) -> Option<CommitRequest> {
        if next.results.is_some() && self.with_results {
            return Some(next);
        }
        self.size += next.size();
        self.with_results |= next.results.is_some();
        self.requests.push(next);
        None
    }
}

/// Leases the batch's deliveries, commits them with its results, then queues
/// the held deliveries and answers each request.
async fn commit(shared: &Shared, mut batch: Vec<CommitRequest>) {
    for request in &mut batch {
        lease(shared, &mut request.records);
    }
    let written = {
        let all: Vec<&PublishRecord> = batch.iter().flat_map(|r| r.records.iter()).collect();
        let results = batch.iter().find_map(|r| r.results.as_deref());
        let result_batch = results.map(|results| shared.result_batch(results));
        shared
            .store
            .write(&all, shared.dedup_since(), result_batch.as_ref())
            .await
    };
    match written {
        Ok((outcomes, mut changes)) => {
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
                    changes: if request.results.is_some() {
                        std::mem::take(&mut changes)
                    } else {
                        Vec::new()
                    },
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
        let cost = super::dispatcher::cost(record.event.payload.as_str().len());
        for delivery in &mut record.deliveries {
            if delivery.status == DeliveryStatus::Scheduled
                && shared.dispatcher.try_reserve(&delivery.endpoint_id, cost)
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
        let cost = super::dispatcher::cost(record.event.payload.as_str().len());
        for delivery in &record.deliveries {
            if delivery.lease_owner.is_some() {
                shared.dispatcher.unreserve(&delivery.endpoint_id, cost);
            }
        }
    }
}

fn hand_over(shared: &Shared, records: &[PublishRecord], outcomes: &[Published]) {
    let mut overflowed = false;
    for (record, outcome) in records.iter().zip(outcomes) {
        if *outcome != Published::Stored {
            unlease(shared, std::slice::from_ref(record));
            continue;
        }
        overflowed |= record
            .deliveries
            .iter()
            .any(|d| d.status == DeliveryStatus::Scheduled);
        let event = &record.event;
        for delivery in record.deliveries.iter().filter(|d| d.lease_owner.is_some()) {
            shared.dispatcher.push_reserved(Job {
                delivery_id: delivery.id.clone(),
                endpoint_id: delivery.endpoint_id.clone(),
                event: event.clone(),
                attempts: 0,
            });
        }
    }
    // Once for the batch: deliveries that found memory full wait in the store.
    if overflowed {
        shared.dispatcher.note_backlog();
    }
}
