//! A real HTTP receiver for delivery tests: listens on 127.0.0.1 (port 0),
//! speaks HTTP/1.1 and HTTP/2 (prior knowledge), records every request and
//! answers with scriptable [`Behavior`]s. [`TestReceiver::start_tls`] serves
//! the same over HTTPS, offering `h2` and `http/1.1` by ALPN.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// One request as the receiver saw it.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub(crate) struct ReceivedRequest {
    pub(crate) method: String,
    /// Path plus query string, e.g. `/hook?x=1`.
    pub(crate) path: String,
    /// Lower-case names, in the order hyper's `HeaderMap` yields them.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    /// The protocol version as hyper names it: `HTTP/1.1`, `HTTP/2.0`.
    pub(crate) version: String,
    /// When the request head arrived.
    pub(crate) received_at: Instant,
}

#[allow(dead_code)]
impl ReceivedRequest {
    /// First value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("received request body is not UTF-8")
    }
}

/// How the receiver answers a request.
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Behavior {
    Status(u16),
    StatusWithHeaders(u16, Vec<(String, String)>),
    StatusWithBody(u16, String),
    /// Record the request, then never answer.
    Hang,
    /// Sleep, then answer with the status.
    Delay(Duration, u16),
}

impl Behavior {
    /// The response and the delay before sending it (`None` for `Hang`).
    /// Panics on an invalid status or header, so `respond_*` validate eagerly.
    fn response(&self) -> Option<(Duration, Response<Full<Bytes>>)> {
        let (delay, status, headers, body) = match self {
            Self::Status(s) => (Duration::ZERO, *s, &[][..], ""),
            Self::StatusWithHeaders(s, h) => (Duration::ZERO, *s, h.as_slice(), ""),
            Self::StatusWithBody(s, b) => (Duration::ZERO, *s, &[][..], b.as_str()),
            Self::Hang => return None,
            Self::Delay(d, s) => (*d, *s, &[][..], ""),
        };
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = Full::new(Bytes::copy_from_slice(body.as_bytes()));
        let response = builder
            .body(body)
            .unwrap_or_else(|e| panic!("invalid scripted response {self:?}: {e}"));
        Some((delay, response))
    }
}

struct State {
    all: Vec<ReceivedRequest>,
    /// How many of `all` `next_request` has handed out.
    consumed: usize,
    script: VecDeque<Behavior>,
    fallback: Behavior,
}

struct Shared {
    state: Mutex<State>,
    /// Number of recorded requests, for waiters.
    count: watch::Sender<usize>,
    /// Connections accepted so far.
    connections: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("test receiver state poisoned")
    }

    /// Records `request` and picks the behavior that answers it.
    fn record(&self, request: ReceivedRequest) -> Behavior {
        let mut state = self.lock();
        state.all.push(request);
        self.count.send_replace(state.all.len());
        state
            .script
            .pop_front()
            .unwrap_or_else(|| state.fallback.clone())
    }
}

/// A running receiver; stops (closing its connections) when dropped.
pub(crate) struct TestReceiver {
    addr: SocketAddr,
    /// Whether it serves HTTPS (then `url` names `localhost`).
    tls: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

#[allow(dead_code)]
impl TestReceiver {
    pub(crate) async fn start() -> Self {
        Self::listen(None).await
    }

    /// Serves HTTPS with `cert_chain` (leaf first) and its `key`; the
    /// certificate should be valid for `localhost`, which `url` names.
    pub(crate) async fn start_tls(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)
        .expect("valid test certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::listen(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn listen(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test receiver on 127.0.0.1:0");
        let addr = listener.local_addr().expect("test receiver local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                all: Vec::new(),
                consumed: 0,
                script: VecDeque::new(),
                fallback: Behavior::Status(200),
            }),
            count: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
        });
        let shutdown = CancellationToken::new();
        let secure = tls.is_some();
        tokio::spawn(accept_loop(
            listener,
            tls,
            Arc::clone(&shared),
            shutdown.clone(),
        ));
        Self {
            addr,
            tls: secure,
            shared,
            shutdown,
        }
    }

    /// An address on 127.0.0.1 where nothing listens (the port was just freed,
    /// so it is very unlikely, though not guaranteed, to be reused meanwhile).
    pub(crate) fn start_refusing() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .local_addr()
            .expect("local address of probe listener")
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`, or `https://localhost:PORT{path}` over TLS.
    pub(crate) fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// Sets the default behavior, used once any `respond_sequence` script is exhausted.
    pub(crate) fn respond_with(&self, behavior: Behavior) {
        drop(behavior.response()); // Panics here, not in the server, if invalid.
        self.shared.lock().fallback = behavior;
    }

    /// Answers the next `behaviors.len()` requests in order (replacing any
    /// unfinished script), then falls back to the `respond_with` default.
    pub(crate) fn respond_sequence(&self, behaviors: Vec<Behavior>) {
        behaviors.iter().for_each(|b| drop(b.response()));
        self.shared.lock().script = behaviors.into();
    }

    /// The next request not yet returned by this method, in arrival order.
    pub(crate) async fn next_request(&self, timeout: Duration) -> ReceivedRequest {
        let deadline = Instant::now() + timeout;
        loop {
            let wanted = {
                let mut state = self.shared.lock();
                if let Some(request) = state.all.get(state.consumed).cloned() {
                    state.consumed += 1;
                    return request;
                }
                state.consumed + 1
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.wait_until(wanted, remaining).await,
                "no new request reached the test receiver within {timeout:?} ({} received in total)",
                self.count()
            );
        }
    }

    pub(crate) fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.lock().all.clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.shared.lock().all.len()
    }

    /// How many connections clients have opened to the receiver.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were received in total.
    pub(crate) async fn wait_for_count(&self, n: usize, timeout: Duration) {
        assert!(
            self.wait_until(n, timeout).await,
            "expected at least {n} requests within {timeout:?}, the test receiver saw {}",
            self.count()
        );
    }

    /// Asserts that no request arrives during `within` (sleeps that long on success).
    pub(crate) async fn expect_no_request(&self, within: Duration) {
        let seen = self.count();
        if self.wait_until(seen + 1, within).await {
            let request = &self.requests()[seen];
            panic!(
                "expected no request within {within:?}, got {} {}",
                request.method, request.path
            );
        }
    }

    /// Whether at least `n` requests were recorded within `timeout`.
    async fn wait_until(&self, n: usize, timeout: Duration) -> bool {
        let mut count = self.shared.count.subscribe();
        tokio::time::timeout(timeout, count.wait_for(|&c| c >= n))
            .await
            .is_ok_and(|changed| changed.is_ok())
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    while let Some(accepted) = shutdown.run_until_cancelled(listener.accept()).await {
        let Ok((stream, _)) = accepted else {
            // Transient accept errors (e.g. fd exhaustion): back off briefly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, shutdown, tls) = (Arc::clone(&shared), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve(stream, shared, shutdown).await;
            };
            // Failed handshakes (a client that rejects the certificate) are
            // expected in tests.
            if let Some(Ok(stream)) = shutdown.run_until_cancelled(acceptor.accept(stream)).await {
                serve(stream, shared, shutdown).await;
            }
        });
    }
}

/// Serves one connection, plain or TLS, until it ends or the receiver stops.
async fn serve<I>(stream: I, shared: Arc<Shared>, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let token = shutdown.clone();
    let service = service_fn(move |request| {
        let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
        async move {
            // HTTP/2 streams run on their own tasks: stop them too.
            match shutdown.run_until_cancelled(handle(&shared, request)).await {
                Some(result) => result,
                None => Err(io::Error::other("test receiver dropped")),
            }
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    // Connection errors (client resets, timeouts) are expected in tests.
    let _ = token.run_until_cancelled(connection).await;
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> io::Result<Response<Full<Bytes>>> {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    let version = format!("{:?}", parts.version);
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let lossy = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let behavior = shared.record(ReceivedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), PathAndQuery::as_str)
            .to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), lossy(v)))
            .collect(),
        body,
        version,
        received_at,
    });
    let Some((delay, response)) = behavior.response() else {
        return std::future::pending().await;
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(response)
}
