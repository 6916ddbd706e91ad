//! The outbound HTTP client: hyper over rustls (ring), keep-alive pool,
//! HTTP/1.1 and HTTP/2 by ALPN, no redirects followed. One timeout covers
//! connecting, the TLS handshake, the response head and the body read.
//!
//! Extension points, for the endpoint-lifecycle work: the `HttpConnector`
//! takes a custom resolver (`HttpConnector::new_with_resolver`), where every
//! resolved address can be checked before a connection is made (the SSRF
//! guard; IP-literal URLs bypass resolvers and need the same check on the
//! URI); and a per-endpoint `rustls::ClientConfig` with
//! `with_client_auth_cert` gives an endpoint its own client (mTLS).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::{HttpConnector, HttpInfo};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::request::Outbound;
use crate::domain::delivery::{AttemptError, ErrorClass, RecordedHeaders};
use crate::domain::network::NetworkPolicy;

/// How much of a response body is kept.
pub(super) const BODY_LIMIT: usize = 64 * 1024;

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

#[derive(Clone)]
pub(super) struct HttpSender {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
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
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Self { client }
    }

    /// Sends `request`; every failure is described in the result.
    pub(super) async fn send(&self, request: Outbound, timeout: Duration) -> Response {
        let started = Instant::now();
        let mut http_request = http::Request::post(request.uri)
            .body(Full::new(request.body))
            .expect("a POST with a parsed URI is a valid request");
        *http_request.headers_mut() = request.headers;
        let connection = hyper_util::client::legacy::connect::capture_connection(&mut http_request);

        let exchange = async {
            let response = self.client.request(http_request).await?;
            let ip = response
                .extensions()
                .get::<HttpInfo>()
                .map(|i| i.remote_addr().ip());
            let (head, mut body) = response.into_parts();
            let mut kept = Vec::new();
            while kept.len() < BODY_LIMIT {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let room = BODY_LIMIT - kept.len();
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    // A body that breaks off after the head still answered.
                    Some(Err(_)) | None => break,
                }
            }
            Ok::<_, hyper_util::client::legacy::Error>((head, kept, ip))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        let elapsed = started.elapsed();
        // Known whenever a connection was made, even if no response came.
        let connected_ip = || {
            connection
                .connection_metadata()
                .as_ref()
                .and_then(|connected| {
                    let mut extras = http::Extensions::new();
                    connected.get_extras(&mut extras);
                    extras.get::<HttpInfo>().map(|i| i.remote_addr().ip())
                })
        };
        match outcome {
            Ok(Ok((head, body, ip))) => Response {
                status: Some(head.status.as_u16()),
                retry_after: retry_after(&head.headers),
                headers: RecordedHeaders::from_pairs(
                    head.headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes()))),
                ),
                body: String::from_utf8_lossy(&body).into_owned(),
                error: None,
                ip_address: ip.or_else(connected_ip),
                elapsed,
            },
            Ok(Err(err)) => failed(classify(&err), connected_ip(), elapsed),
            Err(_) => failed(
                AttemptError {
                    class: ErrorClass::Timeout,
                    message: format!("no response within {} s", timeout.as_secs_f32()),
                },
                connected_ip(),
                elapsed,
            ),
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
fn classify(err: &hyper_util::client::legacy::Error) -> AttemptError {
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
