//! Endpoint settings and secrets for the senders, and each project's list of
//! endpoints for publishing, read from the store at most once per `ttl`. Changes made through this process are
//! seen at once (the API invalidates the entry); changes made by another
//! process on the same database within `ttl`.

use std::collections::HashMap;
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
}

impl EndpointCache {
    pub(super) fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: RwLock::new(HashMap::new()),
            projects: RwLock::new(HashMap::new()),
        }
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
        let snapshot = self.store.endpoint_snapshot(id).await?.map(|stored| {
            Arc::new(EndpointSnapshot {
                endpoint: stored.endpoint,
                secrets: stored.secrets,
                retry: stored.retry,
            })
        });
        let mut entries = self.write();
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        entries.insert(id.clone(), (Instant::now(), snapshot.clone()));
        Ok(snapshot)
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
        let list = Arc::new(
            self.store
                .list_endpoints(project, &EndpointFilter::default(), None, u32::MAX)
                .await?,
        );
        let mut projects = self.projects.write().unwrap_or_else(|p| p.into_inner());
        if projects.len() > PRUNE_ABOVE {
            projects.retain(|_, (loaded, _)| loaded.elapsed() < self.ttl);
        }
        projects.insert(project.clone(), (Instant::now(), list.clone()));
        Ok(list)
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
        self.write().clear();
        self.projects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// An endpoint was created, changed or deleted through this process.
    pub(super) fn invalidate(&self, id: &EndpointId) {
        self.write().remove(id);
        // Endpoint changes are rare; dropping every list is simplest.
        self.projects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}
