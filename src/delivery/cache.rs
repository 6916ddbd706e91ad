//! Endpoint settings and secrets for the senders, and each project's list of
//! endpoints for publishing, read from the store at most once per `ttl`. Changes made through this process are
//! seen at once (the API invalidates the entry); changes made by another
//! process on the same database within `ttl`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::endpoint::Endpoint;
use crate::domain::ids::{EndpointId, ProjectId};
use crate::domain::secret::{Secret, SecretVersion};
use crate::domain::time::Timestamp;
use crate::store::{EndpointFilter, Store, StoreError};

/// What a sender needs to know about an endpoint.
#[derive(Debug)]
pub(super) struct EndpointSnapshot {
    pub(super) endpoint: Endpoint,
    secrets: Vec<SecretVersion>,
    /// The project's retry policy, when it has its own.
    pub(super) retry: Option<crate::domain::retry::RetryPolicy>,
}

impl EndpointSnapshot {
    /// The secrets that sign at `now`, newest first.
    pub(super) fn signing_secrets(&self, now: Timestamp) -> Vec<Secret> {
        self.secrets
            .iter()
            .filter(|s| s.valid_at(now))
            .map(|s| s.secret.clone())
            .collect()
    }
}

/// When an entry was read, and what was read (`None`: no such endpoint).
type Entries = HashMap<EndpointId, (Instant, Option<Arc<EndpointSnapshot>>)>;

/// Entries beyond this are pruned of expired ones.
const PRUNE_ABOVE: usize = 10_000;

/// A project's endpoints, for fan-out and broadcast, with when read.
type ProjectLists = HashMap<ProjectId, (Instant, Arc<Vec<Endpoint>>)>;

pub(super) struct EndpointCache {
    store: Store,
    ttl: Duration,
    entries: RwLock<Entries>,
    projects: RwLock<ProjectLists>,
    /// Bumped by every invalidation. A read from the store is cached only
    /// if no invalidation came while it was under way: otherwise a read
    /// that began before a change could put the old state back after the
    /// change's invalidation, for a whole `ttl` (say, an endpoint still
    /// INACTIVE after it was activated, so publishes to it are discarded).
    generation: AtomicU64,
}

impl EndpointCache {
    pub(super) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: RwLock::new(HashMap::new()),
            projects: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `None` when the endpoint does not exist (any more).
    pub(super) async fn get(
        &self,
        id: &EndpointId,
    ) -> Result<Option<Arc<EndpointSnapshot>>, StoreError> {
        if let Some((loaded, snapshot)) = self.read().get(id)
            && loaded.elapsed() < self.ttl
        {
            return Ok(snapshot.clone());
        }
        let generation = self.generation();
        let snapshot = self.store.endpoint_snapshot(id).await?.map(|stored| {
            Arc::new(EndpointSnapshot {
                endpoint: stored.endpoint,
                secrets: stored.secrets,
                retry: stored.retry,
            })
        });
        self.fill(id, generation, snapshot.clone());
        Ok(snapshot)
    }

    /// Caches what was read from the store for `id`, unless an invalidation
    /// came since `generation` (when the read began).
    fn fill(&self, id: &EndpointId, generation: u64, snapshot: Option<Arc<EndpointSnapshot>>) {
        let mut entries = self.write();
        // Checked under the lock that invalidations take too.
        if self.generation() != generation {
            return;
        }
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        entries.insert(id.clone(), (Instant::now(), snapshot));
    }

    /// Every endpoint of `project`, oldest first.
    pub(super) async fn project_endpoints(
        &self,
        project: &ProjectId,
    ) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        if let Some((loaded, list)) = self
            .projects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
            && loaded.elapsed() < self.ttl
        {
            return Ok(list.clone());
        }
        let generation = self.generation();
        let list = Arc::new(
            self.store
                .list_endpoints(project, &EndpointFilter::default(), None, u32::MAX)
                .await?,
        );
        let mut projects = self.write_lists();
        if self.generation() != generation {
            return Ok(list);
        }
        if projects.len() > PRUNE_ABOVE {
            projects.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        projects.insert(project.clone(), (Instant::now(), list.clone()));
        Ok(list)
    }

    /// Reads the project's endpoints from the store now, whatever is cached.
    pub(super) async fn refresh_project(
        &self,
        project: &ProjectId,
    ) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        self.write_lists().remove(project);
        self.project_endpoints(project).await
    }

    /// Reads the endpoint from the store now, whatever is cached.
    pub(super) async fn refresh(
        &self,
        id: &EndpointId,
    ) -> Result<Option<Arc<EndpointSnapshot>>, StoreError> {
        self.write().remove(id);
        self.get(id).await
    }

    pub(super) fn invalidate_all(&self) {
        self.forget(None);
    }

    /// An endpoint was created, changed or deleted through this process.
    pub(super) fn invalidate(&self, id: &EndpointId) {
        self.forget(Some(id));
    }

    /// Drops the entry of `id` (every entry for `None`) and every project's
    /// list (endpoint changes are rare; that is simplest), under both locks,
    /// and tells reads under way not to cache what they read.
    fn forget(&self, id: Option<&EndpointId>) {
        let mut entries = self.write();
        let mut projects = self.write_lists();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match id {
            Some(id) => {
                entries.remove(id);
            }
            None => entries.clear(),
        }
        projects.clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lists(&self) -> std::sync::RwLockWriteGuard<'_, ProjectLists> {
        self.projects.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DatabaseTarget, Durability};

    async fn cache() -> (EndpointCache, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseTarget::Sqlite {
            path: dir.path().join("cache.db"),
            durability: Durability::Relaxed,
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        (EndpointCache::new(store, Duration::from_secs(60)), dir)
    }

    fn cached(cache: &EndpointCache, id: &EndpointId) -> bool {
        cache.read().contains_key(id)
    }

    #[tokio::test]
    async fn a_read_that_an_invalidation_overtook_is_not_cached() {
        let (cache, _dir) = cache().await;
        let id = EndpointId::from_uuid(uuid::Uuid::from_u128(1));

        // A read that began before the endpoint changed...
        let before_change = cache.generation();
        cache.invalidate(&id);
        // ...and finished after: what it read may be the old state.
        cache.fill(&id, before_change, None);
        assert!(!cached(&cache, &id), "the old state must not be cached");

        cache.fill(&id, cache.generation(), None);
        assert!(cached(&cache, &id), "a read with nothing in between is");

        let before_all = cache.generation();
        cache.invalidate_all();
        assert!(!cached(&cache, &id));
        cache.fill(&id, before_all, None);
        assert!(!cached(&cache, &id), "invalidate_all overtakes reads too");
    }

    #[tokio::test]
    async fn reads_are_cached_until_invalidated() {
        let (cache, _dir) = cache().await;
        let id = EndpointId::from_uuid(uuid::Uuid::from_u128(2));
        assert!(cache.get(&id).await.unwrap().is_none());
        assert!(cached(&cache, &id));
        cache.invalidate(&id);
        assert!(!cached(&cache, &id));
    }
}
