//! Endpoint settings and secrets for the senders, and each project's list of
//! endpoints for publishing, read from the store at most once per `ttl`.
//! Changes made through this process are seen at once (the API invalidates
//! the entry); changes made by another process on the same database within
//! `ttl` and one read.
//!
//! When an entry expires, one caller reads it again and the others go on
//! with the old value until that read is in. Otherwise every send under way
//! to the endpoint (up to its in-flight limit, 64 by default) read the store
//! at the same moment, once per `ttl`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::endpoint::Endpoint;
use crate::domain::fields::OwnerId;
use crate::domain::ids::{EndpointId, ProjectId};
use crate::domain::secret::{Secret, SecretVersion};
use crate::domain::time::Timestamp;
use crate::store::{EndpointFilter, Store, StoreError};

/// What a sender needs to know about an endpoint.
#[derive(Debug)]
pub(super) struct EndpointSnapshot {
    pub(super) endpoint: Endpoint,
    /// What every request to it carries.
    pub(super) template: super::request::Template,
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

/// A value read from the store, when it was read, and whether a caller is
/// reading it again.
struct Slot<T> {
    loaded: Instant,
    value: T,
    refreshing: bool,
}

impl<T> Slot<T> {
    fn new(value: T) -> Self {
        Self {
            loaded: Instant::now(),
            value,
            refreshing: false,
        }
    }
}

/// What `lookup` found.
enum Lookup<T> {
    Cached(T),
    /// The caller reads the store (and `fill`s or `unmark`s the slot).
    Read,
}

/// The cached value of `key` unless it is missing, or expired with nobody
/// reading it again yet: then the caller is the one to read it.
fn lookup<K, T>(map: &RwLock<HashMap<K, Slot<T>>>, key: &K, ttl: Duration) -> Lookup<T>
where
    K: std::hash::Hash + Eq,
    T: Clone,
{
    if let Some(slot) = map.read().unwrap_or_else(|p| p.into_inner()).get(key)
        && slot.loaded.elapsed() < ttl
    {
        return Lookup::Cached(slot.value.clone());
    }
    match map.write().unwrap_or_else(|p| p.into_inner()).get_mut(key) {
        Some(slot) if slot.refreshing || slot.loaded.elapsed() < ttl => {
            Lookup::Cached(slot.value.clone())
        }
        Some(slot) => {
            slot.refreshing = true;
            Lookup::Read
        }
        None => Lookup::Read,
    }
}

/// A read of `key` failed: the next caller tries again.
fn unmark<K: std::hash::Hash + Eq, T>(map: &RwLock<HashMap<K, Slot<T>>>, key: &K) {
    if let Some(slot) = map.write().unwrap_or_else(|p| p.into_inner()).get_mut(key) {
        slot.refreshing = false;
    }
}

/// The read `lookup` handed to a caller, which `unmark`s its slot when
/// dropped unless it was filled: a read that fails, and one whose caller
/// stops waiting (a publish whose client gave up), both let the next caller
/// read. Otherwise the slot would stay marked and its old value be served
/// until something invalidated it.
struct Reading<'a, K: std::hash::Hash + Eq, T> {
    map: &'a RwLock<HashMap<K, Slot<T>>>,
    key: &'a K,
    filled: bool,
}

impl<K: std::hash::Hash + Eq, T> Drop for Reading<'_, K, T> {
    fn drop(&mut self) {
        if !self.filled {
            unmark(self.map, self.key);
        }
    }
}

/// Each endpoint's snapshot (`None`: no such endpoint).
type Entries = HashMap<EndpointId, Slot<Option<Arc<EndpointSnapshot>>>>;

/// Entries beyond this are pruned of expired ones.
const PRUNE_ABOVE: usize = 10_000;

/// A project's endpoints, for fan-out and broadcast.
type ProjectLists = HashMap<ProjectId, Slot<Arc<Vec<Endpoint>>>>;

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
        let read = || async move {
            Ok(self.store.endpoint_snapshot(id).await?.map(|stored| {
                Arc::new(EndpointSnapshot {
                    template: super::request::Template::new(&stored.endpoint),
                    endpoint: stored.endpoint,
                    secrets: stored.secrets,
                    retry: stored.retry,
                })
            }))
        };
        self.cached(&self.entries, id, read).await
    }

    /// Every endpoint of `project`, oldest first.
    pub(super) async fn project_endpoints(
        &self,
        project: &ProjectId,
    ) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        let read = || async move {
            Ok(Arc::new(
                self.store
                    .list_endpoints(project, &EndpointFilter::default(), None, u32::MAX)
                    .await?,
            ))
        };
        self.cached(&self.projects, project, read).await
    }

    /// The value of `key` in `map`, or else what `read` gets from the store
    /// (see [`lookup`]), cached. The read is boxed: a store read's future
    /// is kilobytes, and inline it would be part of every delivery's send
    /// task, copied with it, hit or miss.
    async fn cached<K, T, F>(
        &self,
        map: &RwLock<HashMap<K, Slot<T>>>,
        key: &K,
        read: impl FnOnce() -> F,
    ) -> Result<T, StoreError>
    where
        K: std::hash::Hash + Eq + Clone,
        T: Clone,
        F: Future<Output = Result<T, StoreError>>,
    {
        if let Lookup::Cached(value) = lookup(map, key, self.ttl) {
            return Ok(value);
        }
        let mut reading = Reading {
            map,
            key,
            filled: false,
        };
        let generation = self.generation();
        let value = Box::pin(read()).await?;
        self.fill(map, key, generation, value.clone());
        reading.filled = true;
        Ok(value)
    }

    /// Caches what was read from the store for `key`, unless an
    /// invalidation came since `generation` (when the read began).
    fn fill<K, T>(&self, map: &RwLock<HashMap<K, Slot<T>>>, key: &K, generation: u64, value: T)
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let mut map = map.write().unwrap_or_else(|p| p.into_inner());
        // Checked under a lock that invalidations take too.
        if self.generation() != generation {
            return;
        }
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, slot| slot.loaded.elapsed() < self.ttl);
        }
        map.insert(key.clone(), Slot::new(value));
    }

    /// Reads the project's endpoints from the store now, whatever is cached.
    pub(super) async fn refresh_project(
        &self,
        project: &ProjectId,
    ) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        self.write_lists().remove(project);
        self.project_endpoints(project).await
    }

    /// Reads the project's endpoints from the store again if it has one of
    /// `owner`'s, which the cached list lacks (made through another
    /// process); `None` if it has none. Looking the owner up first costs
    /// one indexed read, where reading the list again would cost the
    /// project's whole list for each publish to an owner that does not
    /// exist.
    pub(super) async fn refresh_project_for_owner(
        &self,
        project: &ProjectId,
        owner: &OwnerId,
    ) -> Result<Option<Arc<Vec<Endpoint>>>, StoreError> {
        let filter = EndpointFilter {
            owner_id: Some(owner.clone()),
            status: None,
        };
        if self
            .store
            .list_endpoints(project, &filter, None, 1)
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        self.refresh_project(project).await.map(Some)
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

    async fn cache_with_ttl(ttl: Duration) -> (EndpointCache, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseTarget::Sqlite {
            path: dir.path().join("cache.db"),
            durability: Durability::Relaxed,
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        (EndpointCache::new(store, ttl), dir)
    }

    async fn cache() -> (EndpointCache, tempfile::TempDir) {
        cache_with_ttl(Duration::from_secs(60)).await
    }

    fn cached(cache: &EndpointCache, id: &EndpointId) -> bool {
        cache.entries.read().unwrap().contains_key(id)
    }

    #[tokio::test]
    async fn one_caller_reads_an_expired_entry_again_the_others_keep_the_old() {
        // Every entry is expired as soon as it is read.
        let (cache, _dir) = cache_with_ttl(Duration::ZERO).await;
        let id = EndpointId::from_uuid(uuid::Uuid::from_u128(3));
        let reads =
            |cache: &EndpointCache| matches!(lookup(&cache.entries, &id, cache.ttl), Lookup::Read);
        assert!(reads(&cache), "nothing cached: read it");
        cache.get(&id).await.unwrap();
        assert!(reads(&cache), "expired: read it again");
        for _ in 0..3 {
            assert!(
                !reads(&cache),
                "another caller is reading it: the old value meanwhile"
            );
        }
        unmark(&cache.entries, &id);
        assert!(reads(&cache), "that read failed: the next caller reads");
        unmark(&cache.entries, &id);
        // A read whose caller stops waiting: dropped before it is in.
        let abandoned = cache.cached(&cache.entries, &id, std::future::pending);
        let _ = tokio::time::timeout(Duration::ZERO, abandoned).await;
        assert!(
            reads(&cache),
            "that read was dropped: the next caller reads"
        );
        cache.fill(&cache.entries, &id, cache.generation(), None);
        assert!(reads(&cache), "read again, and expired again");
    }

    #[tokio::test]
    async fn a_read_that_an_invalidation_overtook_is_not_cached() {
        let (cache, _dir) = cache().await;
        let id = EndpointId::from_uuid(uuid::Uuid::from_u128(1));

        // A read that began before the endpoint changed...
        let before_change = cache.generation();
        cache.invalidate(&id);
        // ...and finished after: what it read may be the old state.
        cache.fill(&cache.entries, &id, before_change, None);
        assert!(!cached(&cache, &id), "the old state must not be cached");

        cache.fill(&cache.entries, &id, cache.generation(), None);
        assert!(cached(&cache, &id), "a read with nothing in between is");

        let before_all = cache.generation();
        cache.invalidate_all();
        assert!(!cached(&cache, &id));
        cache.fill(&cache.entries, &id, before_all, None);
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
