//! The outbound HTTP client: hyper's HTTP/1.1 and HTTP/2 connections (by
//! ALPN) over rustls (ring), kept alive in a pool of our own, no redirects
//! followed. One timeout covers connecting, the TLS handshake, the response
//! head and the body read.
//!
//! The pool replaced hyper-util's legacy `Client`, which spent about a
//! tenth of hookd's CPU per delivery under load (docs/BENCHMARKS.md): a
//! racing connect future built for every checkout, a task spawned to hand
//! each connection back, and a watch channel per request to learn the
//! connected address. Here a request takes an idle connection (or makes
//! one), and puts it back itself once the response body has ended. A
//! request that a reused connection never sent (it closed meanwhile) goes
//! again on a new one, as the legacy client did.
//!
//! Extension points, for the endpoint-lifecycle work: the `HttpConnector`
//! takes a custom resolver (`HttpConnector::new_with_resolver`), where every
//! resolved address can be checked before a connection is made (the SSRF
//! guard; IP-literal URLs bypass resolvers and need the same check on the
//! URI); and a per-endpoint `rustls::ClientConfig` with
//! `with_client_auth_cert` gives an endpoint its own client (mTLS).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::{Connection, HttpConnector, HttpInfo};
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::request::Outbound;
use crate::domain::delivery::{AttemptError, ErrorClass, RecordedHeaders};
use crate::domain::network::NetworkPolicy;

/// How much of a response body is kept.
pub(super) const BODY_LIMIT: usize = 64 * 1024;

/// How long a connection may sit idle in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What came back from one request.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: Option<u16>,
    pub(super) headers: RecordedHeaders,
    pub(super) body: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) error: Option<AttemptError>,
    pub(super) ip_address: Option<IpAddr>,
    pub(super) elapsed: Duration,
}

/// Where requests to one URL go, worked out once per endpoint: the URL,
/// the pool's key (scheme and authority), and for HTTP/1 the `Host` header
/// and the path the request line carries.
#[derive(Debug)]
pub(super) struct Destination {
    uri: Uri,
    key: Arc<str>,
    host: HeaderValue,
    origin: Uri,
}

impl Destination {
    /// `Err` says what is wrong with `url`.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err("no scheme or host".into());
        };
        let key = format!("{scheme}://{authority}")
            .to_ascii_lowercase()
            .into();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host = match uri.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| format!("{e}"))?;
        let origin = match uri.path_and_query() {
            Some(path) if path.as_str() != "/" => Uri::from(path.clone()),
            _ => Uri::from_static("/"),
        };
        Ok(Self {
            uri,
            key,
            host,
            origin,
        })
    }
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;
type Body = Full<Bytes>;

#[derive(Clone)]
pub(super) struct HttpSender {
    connector: Connector,
    pool: Arc<Pool>,
}

/// Idle HTTP/1 connections by destination, and the one shared HTTP/2
/// connection of each destination that negotiated it.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<Arc<str>, Vec<Idle>>,
    shared: HashMap<Arc<str>, Shared>,
    /// Told when a connection of the destination becomes free, for
    /// requests waiting on a connect.
    returns: HashMap<Arc<str>, Arc<Notify>>,
    swept: Option<Instant>,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    ip: Option<IpAddr>,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

struct Shared {
    sender: http2::SendRequest<Body>,
    ip: Option<IpAddr>,
    /// When a request last took it.
    used: Instant,
}

impl Shared {
    /// Unused for the idle timeout, an HTTP/2 connection may have been
    /// dropped silently on the way (a NAT, a load balancer).
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.used) < IDLE_TIMEOUT
    }
}

/// A connection a request holds while it runs.
enum Held {
    One(http1::SendRequest<Body>),
    Multiplexed(http2::SendRequest<Body>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Pool {
    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // Nothing in here can be left half-changed by a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An open connection to `key`, the most recently used first.
    fn checkout(&self, key: &Arc<str>) -> Option<(Held, Option<IpAddr>)> {
        Self::take(&mut self.state(), key)
    }

    /// An open connection to `key`, or else what tells when one is given
    /// back; both under one lock, so that none given back in between goes
    /// unnoticed.
    fn checkout_or_wait(&self, key: &Arc<str>) -> Result<(Held, Option<IpAddr>), Arc<Notify>> {
        let mut state = self.state();
        match Self::take(&mut state, key) {
            Some(found) => Ok(found),
            None => Err(state.returns.entry(key.clone()).or_default().clone()),
        }
    }

    fn take(state: &mut PoolState, key: &Arc<str>) -> Option<(Held, Option<IpAddr>)> {
        let now = Instant::now();
        if let Some(shared) = state.shared.get_mut(key) {
            if shared.usable(now) {
                shared.used = now;
                return Some((Held::Multiplexed(shared.sender.clone()), shared.ip));
            }
            state.shared.remove(key);
        }
        let idle = state.idle.get_mut(key)?;
        while let Some(conn) = idle.pop() {
            if conn.usable(now) {
                return Some((Held::One(conn.sender), conn.ip));
            }
        }
        None
    }

    /// Stops handing out the HTTP/2 connection of `key` (a request on it got
    /// no answer in time); requests already on it keep it until they end.
    fn forget_shared(&self, key: &Arc<str>) {
        self.state().shared.remove(key);
    }

    /// Keeps an HTTP/1 connection whose last response has ended; now and
    /// then drops the connections idle too long everywhere.
    fn put(&self, key: &Arc<str>, sender: http1::SendRequest<Body>, ip: Option<IpAddr>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        state.idle.entry(key.clone()).or_default().push(Idle {
            sender,
            ip,
            since: now,
        });
        if let Some(returned) = state.returns.get(key) {
            returned.notify_one();
        }
        if state
            .swept
            .is_none_or(|at| now.duration_since(at) >= IDLE_TIMEOUT / 3)
        {
            state.swept = Some(now);
            state.idle.retain(|_, conns| {
                conns.retain(|c| c.usable(now));
                !conns.is_empty()
            });
            state.shared.retain(|_, shared| shared.usable(now));
            state
                .returns
                .retain(|_, returned| Arc::strong_count(returned) > 1);
        }
    }

    /// Offers a new HTTP/2 connection to every request to `key`, unless
    /// one is offered already (then the new one serves only its maker's
    /// request and closes).
    fn share(&self, key: &Arc<str>, sender: &http2::SendRequest<Body>, ip: Option<IpAddr>) {
        let mut state = self.state();
        let now = Instant::now();
        if state
            .shared
            .get(key)
            .is_some_and(|shared| shared.usable(now))
        {
            return;
        }
        let shared = Shared {
            sender: sender.clone(),
            ip,
            used: now,
        };
        state.shared.insert(key.clone(), shared);
        if let Some(returned) = state.returns.get(key) {
            // Those waiting now, and one about to.
            returned.notify_waiters();
            returned.notify_one();
        }
    }
}

/// A connection refused by the network policy (the SSRF guard).
#[derive(Debug)]
pub(super) struct Blocked(pub(super) String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Blocked {}

/// Resolves names and drops every address the policy refuses, at connect
/// time, so a name that resolves differently later (DNS rebinding) is
/// checked again. No address left means the connection is refused.
#[derive(Clone)]
pub(super) struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why =
                    refused.unwrap_or_else(|| format!("{} resolved to no address", name.as_str()));
                return Err(std::io::Error::other(Blocked(why)));
            }
            Ok(allowed.into_iter())
        })
    }
}

impl HttpSender {
    /// `extra_roots` are trusted in addition to the web PKI roots, for
    /// receivers whose certificates come from a private CA. `policy` decides
    /// which addresses may be connected to.
    pub(super) fn new(
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
        policy: Arc<NetworkPolicy>,
    ) -> Self {
        let mut roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let (added, ignored) = roots.add_parsable_certificates(extra_roots.iter().cloned());
        if ignored > 0 {
            tracing::warn!(
                added,
                ignored,
                "some extra CA certificates could not be used"
            );
        }
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy });
        http.enforce_http(false);
        http.set_nodelay(true);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            connector,
            pool: Arc::default(),
        }
    }

    /// Sends `request`; every failure is described in the result.
    pub(super) async fn send(&self, request: Outbound, timeout: Duration) -> Response {
        let started = Instant::now();
        // Known whenever a connection was made, even if no response came.
        let mut ip = None;
        let destination = request.destination.clone();
        let outcome = tokio::time::timeout(timeout, self.exchange(request, &mut ip)).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(Ok((head, body))) => Response {
                status: Some(head.status.as_u16()),
                retry_after: retry_after(&head.headers),
                headers: RecordedHeaders::from_pairs(
                    head.headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes()))),
                ),
                body: String::from_utf8_lossy(&body).into_owned(),
                error: None,
                ip_address: ip,
                elapsed,
            },
            Ok(Err(err)) => failed(classify(&*err), ip, elapsed),
            Err(_) => {
                // A connection that died silently answers nothing; the next
                // request to this destination makes a new one.
                self.pool.forget_shared(&destination.key);
                failed(
                    AttemptError {
                        class: ErrorClass::Timeout,
                        message: format!("no response within {} s", timeout.as_secs_f32()),
                    },
                    ip,
                    elapsed,
                )
            }
        }
    }

    /// One request and up to `BODY_LIMIT` of its response body, on a pooled
    /// connection or a new one; `ip` is set once a connection is in hand.
    async fn exchange(
        &self,
        request: Outbound,
        ip: &mut Option<IpAddr>,
    ) -> Result<(http::response::Parts, Vec<u8>), BoxError> {
        let destination = request.destination;
        let mut message = http::Request::new(Full::new(request.body));
        *message.method_mut() = http::Method::POST;
        *message.headers_mut() = request.headers;
        let (mut held, reused) = self.obtain(&destination, ip).await?;
        let response = match send_on(&mut held, &destination, message).await {
            Ok(response) => response,
            // Never sent: the pooled connection closed meanwhile.
            Err(mut unsent) if reused && unsent.message().is_some() => {
                let message = unsent.take_message().expect("checked just above");
                let (made, address) = Box::pin(self.clone().connect(destination.clone())).await;
                *ip = address;
                held = made?;
                send_on(&mut held, &destination, message)
                    .await
                    .map_err(hyper::client::conn::TrySendError::into_error)?
            }
            Err(failed) => return Err(failed.into_error().into()),
        };
        let (head, mut body) = response.into_parts();
        let mut kept = Vec::new();
        let ended = loop {
            if kept.len() >= BODY_LIMIT {
                break false;
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = BODY_LIMIT - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // A body that breaks off after the head still answered.
                Some(Err(_)) => break false,
                None => break true,
            }
        };
        // A body left unread closes its connection; one read to the end
        // leaves it ready for the next request, though hyper may say so a
        // moment later (then a task of its own waits for that, rather than
        // this request).
        if let (true, Held::One(mut sender)) = (ended, held) {
            if sender.is_ready() {
                self.pool.put(&destination.key, sender, *ip);
            } else {
                let (pool, key, address) = (self.pool.clone(), destination.key.clone(), *ip);
                tokio::spawn(async move {
                    if sender.ready().await.is_ok() {
                        pool.put(&key, sender, address);
                    }
                });
            }
        }
        Ok((head, kept))
    }

    /// A connection to `destination` and whether it was used before: an
    /// idle one, else a new one, or whichever connection another request
    /// gives back first while the new one is being made. A connect that
    /// stalls (a SYN dropped by a full listen queue is sent again only after
    /// a second) then holds up nothing, and once made it joins the pool.
    async fn obtain(
        &self,
        destination: &Arc<Destination>,
        ip: &mut Option<IpAddr>,
    ) -> Result<(Held, bool), BoxError> {
        let key = &destination.key;
        let returned = match self.pool.checkout_or_wait(key) {
            Ok((held, address)) => {
                *ip = address;
                return Ok((held, true));
            }
            Err(returned) => returned,
        };
        let mut connecting = Box::pin(self.clone().connect(destination.clone()));
        loop {
            tokio::select! {
                (made, address) = &mut connecting => {
                    *ip = address;
                    return Ok((made?, false));
                }
                () = returned.notified() => {
                    let Some((held, address)) = self.pool.checkout(key) else {
                        continue;
                    };
                    // An HTTP/2 connection serves everyone: the one being
                    // made is not needed.
                    if let Held::One(_) = held {
                        let (pool, key) = (self.pool.clone(), key.clone());
                        tokio::spawn(async move {
                            if let Ok((Ok(Held::One(sender)), address)) =
                                tokio::time::timeout(IDLE_TIMEOUT, connecting).await
                            {
                                pool.put(&key, sender, address);
                            }
                        });
                    }
                    *ip = address;
                    return Ok((held, true));
                }
            }
        }
    }

    /// A new connection to `destination`, HTTP/2 if the TLS handshake chose
    /// it, and the address connected to (known before the handshake ends);
    /// its driver runs as a task of its own until it closes. Callers box
    /// this future: it is large, and inline it would make every send task
    /// as large (each spawn copies its future).
    async fn connect(
        self,
        destination: Arc<Destination>,
    ) -> (Result<Held, BoxError>, Option<IpAddr>) {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        if let Err(err) = std::future::poll_fn(|cx| connector.poll_ready(cx)).await {
            return (Err(err), None);
        }
        let io = match connector.call(destination.uri.clone()).await {
            Ok(io) => io,
            Err(err) => return (Err(err), None),
        };
        let connected = io.connected();
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        let ip = extras.get::<HttpInfo>().map(|i| i.remote_addr().ip());
        let held = if connected.is_negotiated_h2() {
            http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map(|(sender, connection)| {
                    tokio::spawn(connection);
                    self.pool.share(&destination.key, &sender, ip);
                    Held::Multiplexed(sender)
                })
        } else {
            http1::handshake(io).await.map(|(sender, connection)| {
                tokio::spawn(connection);
                Held::One(sender)
            })
        };
        (held.map_err(Into::into), ip)
    }
}

/// Sends `message` on `held`: in origin form with a `Host` header over
/// HTTP/1, with the full URL over HTTP/2.
async fn send_on(
    held: &mut Held,
    destination: &Destination,
    mut message: http::Request<Body>,
) -> Result<
    http::Response<hyper::body::Incoming>,
    hyper::client::conn::TrySendError<http::Request<Body>>,
> {
    match held {
        Held::One(sender) => {
            *message.uri_mut() = destination.origin.clone();
            message
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert_with(|| destination.host.clone());
            sender.try_send_request(message).await
        }
        Held::Multiplexed(sender) => {
            *message.uri_mut() = destination.uri.clone();
            sender.try_send_request(message).await
        }
    }
}

fn failed(error: AttemptError, ip_address: Option<IpAddr>, elapsed: Duration) -> Response {
    Response {
        status: None,
        headers: RecordedHeaders::default(),
        body: String::new(),
        retry_after: None,
        error: Some(error),
        ip_address,
        elapsed,
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let seconds = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(seconds as u64))
}

/// Whether an I/O error carries a TLS error, directly or inside another I/O
/// error (hyper-rustls wraps tokio-rustls's error once more, and
/// `io::Error::source` does not walk into what it wraps).
fn wraps_rustls_error(io: &std::io::Error) -> bool {
    match io.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => true,
        Some(inner) => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(wraps_rustls_error),
        None => false,
    }
}

/// Names the failure from the error's cause chain.
fn classify(err: &(dyn std::error::Error + 'static)) -> AttemptError {
    let mut chain = Vec::new();
    let mut class = ErrorClass::Other;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            class = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ErrorClass::ConnectionRefused,
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => ErrorClass::ConnectionReset,
                std::io::ErrorKind::TimedOut => ErrorClass::Timeout,
                _ if text.contains("failed to lookup address") => ErrorClass::Dns,
                _ if wraps_rustls_error(io) => ErrorClass::Tls,
                _ => class,
            };
        }
        if cause.is::<rustls::Error>() {
            class = ErrorClass::Tls;
        }
        if text.starts_with("dns error") {
            class = ErrorClass::Dns;
        }
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = cause.source();
    }
    let mut blocked = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(why) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Blocked>())
        {
            blocked = Some(why.0.clone());
        }
        source = cause.source();
    }
    if let Some(why) = blocked {
        return AttemptError {
            class: ErrorClass::Blocked,
            message: why,
        };
    }
    if class == ErrorClass::Other
        && chain
            .iter()
            .any(|t| t.contains("connection closed") || t.contains("IncompleteMessage"))
    {
        class = ErrorClass::ConnectionReset;
    }
    AttemptError {
        class,
        message: chain.join(": "),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::HeaderMap;
    use hyper_util::rt::TokioIo;

    use super::*;

    fn sender() -> HttpSender {
        let policy = NetworkPolicy::new(["127.0.0.0/8"], []).expect("a valid CIDR");
        HttpSender::new(&[], Arc::new(policy))
    }

    fn post(url: &str) -> Outbound {
        Outbound {
            destination: Arc::new(Destination::parse(url).expect("a valid URL")),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            recorded_headers: RecordedHeaders::default(),
        }
    }

    #[test]
    fn a_destination_knows_its_host_path_and_pool_key() {
        let d = Destination::parse("HTTPS://Example.COM:443/hook?a=1").unwrap();
        assert_eq!(d.key.as_ref(), "https://example.com:443");
        assert_eq!(d.host, "Example.COM");
        assert_eq!(d.origin, "/hook?a=1");
        let d = Destination::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(d.host, "127.0.0.1:8080");
        assert_eq!(d.origin, "/");
        assert!(Destination::parse("/relative").is_err());
    }

    /// The receiver accepts one connection and no other, and answers that
    /// connection's first request after a pause. A second request, sent
    /// while the first waits, cannot connect (the listen queue is full), and
    /// is sent once the first gives its connection back.
    #[tokio::test]
    async fn a_request_whose_connect_stalls_takes_a_connection_given_back() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        let (arrived, first_arrived) = tokio::sync::oneshot::channel::<()>();
        let counter = answered.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let arrived = Mutex::new(Some(arrived));
            let service = hyper::service::service_fn(move |_request| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let signal = arrived.lock().unwrap().take();
                async move {
                    if let Some(signal) = signal {
                        let _ = signal.send(());
                    }
                    if n == 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Body::default()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            // Held, never accepting again, until the connection ends.
            drop(listener);
        });

        let sender = sender();
        let url = format!("http://{addr}/hook");
        let first = tokio::spawn({
            let (sender, request) = (sender.clone(), post(&url));
            async move { sender.send(request, Duration::from_secs(5)).await }
        });
        first_arrived.await.unwrap();
        // Fill the listen queue: connects succeed until it is full.
        let mut fillers = Vec::new();
        while let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }

        let second = sender.send(post(&url), Duration::from_secs(5)).await;
        assert_eq!(second.status, Some(200), "{:?}", second.error);
        assert_eq!(first.await.unwrap().status, Some(200));
        assert_eq!(answered.load(Ordering::SeqCst), 2);
        assert_eq!(second.ip_address, Some(addr.ip()));
        drop(fillers);
    }
}
