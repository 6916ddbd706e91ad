//! Server streams that tail a change log: one task per subscriber reads the
//! store after the subscriber's cursor and feeds a small channel.
//!
//! What a lagging subscriber gets: reading from the store costs it no
//! memory here, so a slow reader only ever holds `buffer` messages. One that
//! leaves the channel full for longer than `slow_after` is ended with
//! RESOURCE_EXHAUSTED and resumes from the last cursor it received; nothing
//! it does can hold up deliveries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::ApiError;
use crate::domain::ids::ProjectId;
use crate::domain::watch::{Cursor, LogPage};
use crate::store::Store;

/// How streams behave; the defaults suit a server behind proxies.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Messages waiting for one subscriber, at most.
    pub buffer: usize,
    /// Rows read from the store at a time.
    pub page: u32,
    /// How long a subscriber may leave its buffer full before it is ended.
    pub slow_after: Duration,
    /// How often the store is read when nothing in this process wrote: the
    /// delay for changes made by other processes on a shared database.
    pub poll_interval: Duration,
    /// Open streams per project, at most; more is RESOURCE_EXHAUSTED.
    pub max_per_project: usize,
    /// Reads of the store follow each other at least this far apart while
    /// the log is quiet, however often this process writes: what a stream
    /// adds to latency, to save many small reads under load.
    pub coalesce: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            buffer: 64,
            page: 256,
            slow_after: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            max_per_project: 32,
            coalesce: Duration::from_millis(20),
        }
    }
}

/// The open streams of this server; cheap to clone.
#[derive(Clone)]
pub struct Watches {
    inner: Arc<Inner>,
}

struct Inner {
    config: WatchConfig,
    per_project: std::sync::Mutex<std::collections::HashMap<ProjectId, usize>>,
    active: AtomicUsize,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Reads up to `limit` messages after a cursor, with their cursors.
type ReadPage<T> = Box<
    dyn FnMut(
            Cursor,
            u32,
        )
            -> Pin<Box<dyn Future<Output = Result<LogPage<(Cursor, T)>, ApiError>> + Send>>
        + Send,
>;

/// Where a stream starts and what it reads.
struct Tail<T> {
    project: ProjectId,
    after: Cursor,
    read: ReadPage<T>,
    /// Fires when this process writes to the store.
    pub(crate) writes: watch::Receiver<u64>,
    /// From the call's `grpc-timeout`.
    pub(crate) deadline: Option<Duration>,
}

impl Watches {
    pub fn new(config: WatchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                per_project: Default::default(),
                active: AtomicUsize::new(0),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Streams open right now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Ends every stream (UNAVAILABLE: resume elsewhere) and waits for their
    /// tasks; part of shutdown, so open streams do not hold it up.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Streams what `read(store, project, after, limit)` finds in `store`,
    /// from `after` on.
    pub(crate) fn tail<T, Fut>(
        &self,
        store: &Store,
        project: ProjectId,
        after: Cursor,
        deadline: Option<Duration>,
        read: impl Fn(Store, ProjectId, Cursor, u32) -> Fut + Send + 'static,
    ) -> Result<WatchStream<T>, ApiError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<LogPage<(Cursor, T)>, ApiError>> + Send + 'static,
    {
        let (reader, of) = (store.clone(), project.clone());
        self.open(Tail {
            project,
            after,
            read: Box::new(move |cursor, limit| {
                Box::pin(read(reader.clone(), of.clone(), cursor, limit))
            }),
            writes: store.writes(),
            deadline,
        })
    }

    /// Starts a stream's task; the stream ends when the client leaves.
    fn open<T: Send + 'static>(&self, tail: Tail<T>) -> Result<WatchStream<T>, ApiError> {
        if self.inner.stop.is_cancelled() {
            return Err(ApiError::ShuttingDown);
        }
        let slot = Slot::take(&self.inner, &tail.project)?;
        let (tx, rx) = mpsc::channel(self.inner.config.buffer);
        let (end_tx, end_rx) = oneshot::channel();
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            let _slot = slot;
            if let Some(status) = run(&inner, tail, &tx).await {
                let _ = end_tx.send(status);
            }
        });
        Ok(WatchStream {
            end: Some(end_rx),
            rx,
        })
    }
}

/// A stream's place in the per-project count, given back when dropped.
struct Slot {
    inner: Arc<Inner>,
    project: ProjectId,
}

impl Slot {
    fn take(inner: &Arc<Inner>, project: &ProjectId) -> Result<Self, ApiError> {
        let mut counts = inner.per_project.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(project.clone()).or_default();
        if *count >= inner.config.max_per_project {
            return Err(ApiError::ResourceExhausted(format!(
                "at most {} open streams per project",
                inner.config.max_per_project
            )));
        }
        *count += 1;
        inner.active.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            inner: inner.clone(),
            project: project.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .inner
            .per_project
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.project) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.project);
            }
        }
        self.inner.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tails the log until the client leaves (`None`) or the stream must end
/// with a status.
async fn run<T: Send + 'static>(
    inner: &Inner,
    mut tail: Tail<T>,
    tx: &mpsc::Sender<Result<T, Status>>,
) -> Option<Status> {
    let config = &inner.config;
    let deadline = async {
        match tail.deadline {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = std::pin::pin!(deadline);
    let mut cursor = tail.after;
    loop {
        let last_read = tokio::time::Instant::now();
        let page = tokio::select! {
            page = (tail.read)(cursor, config.page) => page,
            () = tx.closed() => return None,
            () = &mut deadline => return Some(Status::deadline_exceeded("the call's deadline passed")),
            () = inner.stop.cancelled() => return Some(shutting_down()),
        };
        let page = match page {
            Ok(page) => page,
            Err(err) => {
                let status: Status = err.into();
                return Some(match status.code() {
                    tonic::Code::OutOfRange => status,
                    code => Status::new(
                        code,
                        format!("{}; resume from the last cursor received", status.message()),
                    ),
                });
            }
        };
        for (at, message) in page.items {
            tokio::select! {
                sent = tx.send_timeout(Ok(message), config.slow_after) => match sent {
                    Ok(()) => cursor = at,
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return None,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        return Some(Status::resource_exhausted(format!(
                            "this subscriber read nothing for {:?} while updates waited; \
                             resume from the last cursor received",
                            config.slow_after
                        )));
                    }
                },
                () = &mut deadline => return Some(Status::deadline_exceeded("the call's deadline passed")),
                () = inner.stop.cancelled() => return Some(shutting_down()),
            }
        }
        // Past the rows the read looked at and matched nothing, too.
        cursor = cursor.max(page.through);
        if page.more {
            continue;
        }
        tokio::select! {
            changed = tail.writes.changed() => {
                if changed.is_err() {
                    // The store is gone: only polling is left.
                    tokio::time::sleep(config.poll_interval).await;
                }
                // Under load writes commit hundreds of times a second; one
                // read per `coalesce` picks up many of them at once.
                tokio::time::sleep_until(last_read + config.coalesce).await;
            }
            () = tokio::time::sleep(config.poll_interval) => {}
            () = tx.closed() => return None,
            () = &mut deadline => return Some(Status::deadline_exceeded("the call's deadline passed")),
            () = inner.stop.cancelled() => return Some(shutting_down()),
        }
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; resume from the last cursor received")
}

/// The response stream: the task's messages, unless it ended the stream
/// with a status, which then comes at once (the client resumes from the
/// last cursor it actually received).
pub struct WatchStream<T> {
    end: Option<oneshot::Receiver<Status>>,
    rx: mpsc::Receiver<Result<T, Status>>,
}

impl<T> Stream for WatchStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The task sends its status before it drops the channel, so once the
        // channel runs dry the status (if any) is already there.
        if let Some(end) = self.end.as_mut()
            && let Poll::Ready(ended) = Pin::new(end).poll(cx)
        {
            self.end = None;
            if let Ok(status) = ended {
                self.rx.close();
                return Poll::Ready(Some(Err(status)));
            }
        }
        if self.end.is_none() && self.rx.is_closed() && self.rx.is_empty() {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            // The task ended between the two polls: its status, if any.
            Poll::Ready(None) => match self.end.take() {
                Some(mut end) => match Pin::new(&mut end).poll(cx) {
                    Poll::Ready(Ok(status)) => Poll::Ready(Some(Err(status))),
                    _ => Poll::Ready(None),
                },
                None => Poll::Ready(None),
            },
            other => other,
        }
    }
}

/// The call's `grpc-timeout`, if it sent one.
pub(crate) fn deadline(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let parse = |raw: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", raw.parse().unwrap());
            deadline(&metadata)
        };
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse("5x"), None);
        assert_eq!(parse("S"), None);
        assert_eq!(deadline(&MetadataMap::new()), None);
    }
}
