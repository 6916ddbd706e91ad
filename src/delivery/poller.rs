//! Takes due deliveries from the store: retries whose time has come,
//! deliveries published while memory was full, and those held by a node that
//! died. Also keeps this node's heartbeat fresh, which is what keeps other
//! nodes away from the deliveries it holds, and, on SQLite, checkpoints the
//! WAL beside the writer.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Job, Shared};
use crate::domain::ids::EventId;
use crate::domain::time::Timestamp;
use crate::store::StoreError;

/// Deliveries claimed per query, at most.
const CLAIM_BATCH: u32 = 1_000;

/// Claims what is due now and queues it. Returns how many were claimed.
///
/// Clears the dispatcher's backlog flag first and sets it again when it
/// stops with more perhaps left (memory full, or an error); a publish that
/// overflows while this runs sets it too. Lanes skipped because they were
/// full are marked to ask for a refill themselves.
pub(super) async fn tick(shared: &Shared) -> Result<usize, StoreError> {
    shared.dispatcher.take_backlog();
    let result = async {
        free_dead_leases(shared).await?;
        claim(shared).await
    }
    .await;
    if result.is_err() {
        shared.dispatcher.note_backlog();
    }
    result
}

/// Frees what nodes presumed dead (silent for `node_ttl`) held, once a
/// round rather than before every claim.
async fn free_dead_leases(shared: &Shared) -> Result<(), StoreError> {
    let now = shared.clock.now();
    let alive_since = Timestamp::from_unix_micros(
        now.unix_micros() - i64::try_from(shared.config.node_ttl.as_micros()).unwrap_or(i64::MAX),
    );
    shared
        .store
        .free_dead_leases(&shared.node, now, alive_since)
        .await?;
    Ok(())
}

async fn claim(shared: &Shared) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let capacity = shared.dispatcher.capacity();
        let limit = u32::try_from(capacity.free)
            .unwrap_or(u32::MAX)
            .min(CLAIM_BATCH);
        if limit == 0 {
            shared.dispatcher.note_backlog();
            // Memory may have drained while this looked (its sends go on),
            // before the flag was back to ask for a refill.
            if shared.dispatcher.half_empty() {
                continue;
            }
            return Ok(total);
        }
        let claimed = shared
            .store
            .claim_due(&shared.node, shared.clock.now(), &capacity.full, limit)
            .await?;
        let count = claimed.len();
        if count > 0 {
            let ids: Vec<EventId> = claimed.iter().map(|d| d.event_id.clone()).collect();
            let events: HashMap<EventId, Arc<crate::domain::event::Event>> = shared
                .store
                .events_by_ids(&ids)
                .await?
                .into_iter()
                .map(|e| (e.id.clone(), Arc::new(e)))
                .collect();
            for delivery in claimed {
                let Some(event) = events.get(&delivery.event_id) else {
                    tracing::error!(delivery = %delivery.id, "claimed delivery has no event");
                    continue;
                };
                shared.dispatcher.push_claimed(Job {
                    delivery_id: delivery.id,
                    endpoint_id: delivery.endpoint_id,
                    event: event.clone(),
                    attempts: delivery.attempts,
                });
            }
        }
        total += count;
        if count < limit as usize {
            // The lanes this claim skipped ask when they drain; if one
            // already has, go round again.
            if !capacity.full.is_empty() && shared.dispatcher.note_skipped(&capacity.full) {
                continue;
            }
            return Ok(total);
        }
    }
}

/// Tells the other nodes this one is alive (as of its clock's now). Node
/// clocks must agree to well within `node_ttl` (NTP does).
pub(super) async fn heartbeat(shared: &Shared) -> Result<(), StoreError> {
    shared
        .store
        .heartbeat(&shared.node, shared.clock.now())
        .await
}

/// Polls every `poll_interval` (sooner when woken, or when the dispatcher
/// wants a refill) and heart-beats every
/// `node_ttl / 3`, until cancelled.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let heartbeat_every = shared.config.node_ttl / 3;
    let mut last_heartbeat = tokio::time::Instant::now();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(shared.config.poll_interval) => {}
            () = shared.poll_wake.notified() => {}
            () = shared.dispatcher.refill_wanted() => {}
            () = cancel.cancelled() => return,
        }
        if last_heartbeat.elapsed() >= heartbeat_every {
            match shared
                .store
                .heartbeat(&shared.node, shared.clock.now())
                .await
            {
                Ok(()) => last_heartbeat = tokio::time::Instant::now(),
                Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
            }
        }
        if let Err(err) = tick(&shared).await {
            tracing::warn!(error = %err, "claiming due deliveries failed");
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            if let Err(err) = prune(&shared).await {
                tracing::warn!(error = %err, "pruning the change log failed");
            }
        }
    }
}

/// How often the SQLite WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// On SQLite, checkpoints the WAL every `CHECKPOINT_EVERY` until cancelled
/// (see `Store::checkpoint`); returns at once on PostgreSQL.
pub(super) async fn checkpoints(shared: Arc<Shared>, cancel: CancellationToken) {
    if !shared.store.is_embedded() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            () = cancel.cancelled() => return,
        }
        match shared.store.checkpoint().await {
            Ok(Some((pages, copied))) if copied < pages => {
                tracing::debug!(pages, copied, "WAL checkpoint held back by readers");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed"),
        }
    }
}

/// How often old delivery changes are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes the delivery changes older than the retention period.
pub(super) async fn prune(shared: &Shared) -> Result<u64, StoreError> {
    let retention = i64::try_from(shared.config.change_retention.as_micros()).unwrap_or(i64::MAX);
    let before =
        Timestamp::from_unix_micros(shared.clock.now().unix_micros().saturating_sub(retention));
    let pruned = shared.store.prune_delivery_changes(before).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "pruned old delivery changes");
    }
    Ok(pruned)
}
