//! `--watch`: one WatchDeliveries subscriber follows a scenario's
//! deliveries, as a dashboard would, so its cost shows in the figures. It
//! counts the SUCCESS updates it sees, and resumes from its last cursor if
//! the server ever ends its stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::client::Api;
use crate::grpc::pb;

pub(super) struct Watcher {
    successes: Arc<AtomicU64>,
    resumes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Opens the stream; returns once it is open, so nothing after this is
    /// missed.
    pub(super) async fn start(api: &Api) -> Result<Self, String> {
        let successes = Arc::new(AtomicU64::new(0));
        let resumes = Arc::new(AtomicU64::new(0));
        let mut client = api.events();
        let mut stream = client
            .watch_deliveries(pb::WatchDeliveriesRequest::default())
            .await
            .map_err(|e| format!("WatchDeliveries: {e}"))?
            .into_inner();
        let (seen, resumed) = (successes.clone(), resumes.clone());
        let task = tokio::spawn(async move {
            let mut cursor = String::new();
            loop {
                match stream.message().await {
                    Ok(Some(update)) => {
                        if update.status == pb::DeliveryStatus::Success as i32 {
                            seen.fetch_add(1, Relaxed);
                        }
                        cursor = update.cursor;
                    }
                    Ok(None) | Err(_) => {
                        resumed.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        match client
                            .watch_deliveries(pb::WatchDeliveriesRequest {
                                cursor: cursor.clone(),
                                ..Default::default()
                            })
                            .await
                        {
                            Ok(response) => stream = response.into_inner(),
                            Err(_) => return,
                        }
                    }
                }
            }
        });
        Ok(Self {
            successes,
            resumes,
            task,
        })
    }

    /// Waits (up to `limit`) until the stream has shown `expected` SUCCESS
    /// updates; returns how many it saw and how often it had to resume.
    pub(super) async fn finish(self, expected: u64, limit: Duration) -> (u64, u64) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.successes.load(Relaxed) < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task.abort();
        (self.successes.load(Relaxed), self.resumes.load(Relaxed))
    }
}
