//! The HTTP request of one attempt: body encoding, headers, signatures, and
//! the redacted copy of the headers that gets recorded.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Job;
use super::http::Destination;
use crate::domain::delivery::RecordedHeaders;
use crate::domain::endpoint::Endpoint;
use crate::domain::fields::ContentType;
use crate::domain::secret::Secret;
use crate::domain::time::Timestamp;

pub(super) const DELIVERY_ID: &str = "x-hookd-delivery-id";
pub(super) const EVENT_ID: &str = "x-hookd-event-id";
pub(super) const EVENT_TYPE: &str = "x-hookd-event-type";
pub(super) const ATTEMPT: &str = "x-hookd-attempt";
pub(super) const IDEMPOTENCY_KEY: &str = "x-hookd-idempotency-key";

const REDACTED: &str = "[redacted]";

/// A request ready to send.
pub(super) struct Outbound {
    pub(super) destination: std::sync::Arc<Destination>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The headers as recorded with the attempt: signatures and anything
    /// that looks like a credential replaced by `[redacted]`.
    pub(super) recorded_headers: RecordedHeaders,
}

/// Lets a payload shared by many deliveries be the body without a copy.
struct SharedText(std::sync::Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// What every request to an endpoint carries, worked out once per read of
/// the endpoint instead of for every attempt: the parsed URI and the
/// endpoint's own headers. `Err` says why no request can be made to it.
#[derive(Debug)]
pub(super) struct Template(Result<Prepared, String>);

#[derive(Debug)]
struct Prepared {
    destination: std::sync::Arc<Destination>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Template {
    pub(super) fn new(endpoint: &Endpoint) -> Self {
        let prepare = || {
            let destination = Destination::parse(endpoint.url.as_str())
                .map_err(|e| format!("the endpoint URL cannot be requested: {e}"))?;
            let destination = std::sync::Arc::new(destination);
            let headers = endpoint
                .headers
                .iter()
                .map(|(name, value)| header(name, value))
                .collect::<Result<_, _>>()?;
            Ok(Prepared {
                destination,
                headers,
            })
        };
        Self(prepare())
    }
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
    let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
    Ok((name, value))
}

/// Builds attempt number `attempt` of `job` to `endpoint` (prepared as
/// `template`), signed at `now` with `secrets` (newest first).
pub(super) fn build(
    job: &Job,
    endpoint: &Endpoint,
    template: &Template,
    secrets: &[Secret],
    attempt: u32,
    now: Timestamp,
    user_agent: &HeaderValue,
) -> Result<Outbound, String> {
    let prepared = template.0.as_ref().map_err(Clone::clone)?;
    let body = match endpoint.content_type {
        ContentType::Json => Bytes::from_owner(SharedText(job.event.payload.shared())),
        ContentType::FormUrlEncoded => Bytes::from(form_body(job.event.payload.as_str())),
    };

    // One value per name: an event's header replaces the endpoint's, and
    // hookd's own replace both.
    let mut headers = HeaderMap::with_capacity(16);
    for (name, value) in &prepared.headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in job.event.custom_headers.iter() {
        let (name, value) = header(name, value)?;
        headers.insert(name, value);
    }
    let mut put = |name: &'static str, value: &str| -> Result<(), String> {
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        headers.insert(HeaderName::from_static(name), value);
        Ok(())
    };
    put(DELIVERY_ID, job.delivery_id.as_str())?;
    put(EVENT_ID, job.event.id.as_str())?;
    put(EVENT_TYPE, job.event.event_type.as_str())?;
    if let Some(key) = &job.event.idempotency_key {
        put(IDEMPOTENCY_KEY, key.as_str())?;
    }
    let (seconds, _) = now.to_seconds_nanos();
    for (name, value) in endpoint
        .signature
        .sign(secrets, seconds, job.delivery_id.as_str(), &body)
    {
        put(name, &value)?;
    }
    headers.insert(HeaderName::from_static(ATTEMPT), HeaderValue::from(attempt));
    // hookd's own headers last, replacing anything of the same name (the API
    // refuses such custom headers; this keeps stored rows from smuggling one).
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(endpoint.content_type.as_str()),
    );
    headers.insert(http::header::USER_AGENT, user_agent.clone());

    let recorded_headers = RecordedHeaders::from_pairs(headers.iter().map(|(name, value)| {
        let shown = if is_sensitive(name.as_str()) {
            std::borrow::Cow::Borrowed(REDACTED)
        } else {
            String::from_utf8_lossy(value.as_bytes())
        };
        (name.as_str(), shown)
    }));
    Ok(Outbound {
        destination: prepared.destination.clone(),
        headers,
        body,
        recorded_headers,
    })
}

/// Top-level keys become form fields: strings as they are, anything else as
/// JSON text. A payload that is not an object is sent as one `payload` field.
fn form_body(payload: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(fields)) => {
            for (key, value) in fields {
                match value {
                    serde_json::Value::String(text) => form.append_pair(&key, &text),
                    other => form.append_pair(&key, &other.to_string()),
                };
            }
        }
        _ => {
            form.append_pair("payload", payload);
        }
    }
    form.finish()
}

/// Signatures and anything whose name suggests a credential.
fn is_sensitive(name: &str) -> bool {
    // Most of every request, and none of them a secret: a quick answer
    // before the substring searches.
    !ALWAYS_SHOWN.contains(&name) && looks_sensitive(name)
}

/// Headers hookd sets that never hold a secret.
const ALWAYS_SHOWN: [&str; 6] = [
    DELIVERY_ID,
    EVENT_ID,
    EVENT_TYPE,
    ATTEMPT,
    "content-type",
    "user-agent",
];

fn looks_sensitive(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-convoy-signature",
        "webhook-signature",
    ];
    const PARTS: &[&str] = &[
        "key",
        "token",
        "secret",
        "auth",
        "password",
        "signature",
        "session",
    ];
    EXACT.contains(&name) || PARTS.iter().any(|part| name.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::tests::{endpoint_with, job_for};
    use crate::domain::fields::CustomHeaders;
    use crate::domain::signature::{
        HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme,
    };

    fn ua() -> HeaderValue {
        HeaderValue::from_static("hookd/test")
    }

    #[test]
    fn json_body_is_the_payload_byte_for_byte_and_signed_over_it() {
        let job = job_for(1);
        let endpoint = endpoint_with(ContentType::Json, SignatureConfig::default());
        let secret = Secret::parse("convoy-secret-1").unwrap();
        let out = build(
            &job,
            &endpoint,
            &Template::new(&endpoint),
            &[secret],
            1,
            Timestamp::from_unix_micros(1_649_367_553_000_000),
            &ua(),
        )
        .unwrap();
        assert_eq!(out.body.as_ref(), job.event.payload.as_str().as_bytes());
        assert_eq!(out.headers["content-type"], "application/json");
        assert_eq!(out.headers["user-agent"], "hookd/test");
        assert_eq!(out.headers[DELIVERY_ID], job.delivery_id.as_str());
        assert_eq!(out.headers[EVENT_ID], job.event.id.as_str());
        assert_eq!(out.headers[ATTEMPT], "1");
        let signature = out.headers["x-convoy-signature"].to_str().unwrap();
        assert!(signature.starts_with("t=1649367553,v1="), "{signature}");
        assert!(
            out.recorded_headers
                .pairs()
                .contains(&("x-convoy-signature".into(), "[redacted]".into())),
            "{:?}",
            out.recorded_headers
        );
    }

    #[test]
    fn the_quick_answer_agrees_with_the_full_check() {
        for name in ALWAYS_SHOWN {
            assert!(!looks_sensitive(name), "{name}");
        }
        assert!(is_sensitive(IDEMPOTENCY_KEY) && is_sensitive("x-api-token"));
    }

    #[test]
    fn form_bodies_flatten_top_level_keys() {
        assert_eq!(
            form_body(r#"{"a":"x y","n":1,"o":{"k":[1,2]},"b":true}"#),
            "a=x+y&b=true&n=1&o=%7B%22k%22%3A%5B1%2C2%5D%7D"
        );
        assert_eq!(form_body("[1,2]"), "payload=%5B1%2C2%5D");
    }

    #[test]
    fn standard_webhooks_headers_use_the_delivery_id() {
        let job = job_for(1);
        let config = SignatureConfig::new(
            SignatureScheme::StandardWebhooks,
            HashAlgorithm::Sha256,
            SignatureEncoding::Hex,
        )
        .unwrap();
        let endpoint = endpoint_with(ContentType::FormUrlEncoded, config);
        let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let out = build(
            &job,
            &endpoint,
            &Template::new(&endpoint),
            &[secret],
            2,
            Timestamp::from_unix_micros(5_000_000),
            &ua(),
        )
        .unwrap();
        assert_eq!(out.headers["webhook-id"], job.delivery_id.as_str());
        assert_eq!(out.headers["webhook-timestamp"], "5");
        assert_eq!(
            out.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn an_event_header_overrides_the_endpoint_header_of_the_same_name() {
        let mut job = job_for(1);
        let mut endpoint = endpoint_with(ContentType::Json, SignatureConfig::default());
        let pairs = |v: &str| vec![("X-Tenant".to_string(), v.to_string())];
        endpoint.headers =
            CustomHeaders::parse(pairs("from-endpoint").iter().map(|(k, v)| (k, v))).unwrap();
        let mut event = (*job.event).clone();
        event.custom_headers =
            CustomHeaders::parse(pairs("from-event").iter().map(|(k, v)| (k, v))).unwrap();
        job.event = std::sync::Arc::new(event);
        let out = build(
            &job,
            &endpoint,
            &Template::new(&endpoint),
            &[],
            1,
            Timestamp::from_unix_micros(0),
            &ua(),
        )
        .unwrap();
        let values: Vec<_> = out.headers.get_all("x-tenant").iter().collect();
        assert_eq!(values, vec!["from-event"]);
    }

    #[test]
    fn credentials_are_redacted_in_the_record() {
        for name in [
            "authorization",
            "x-api-key",
            "x-auth-token",
            "webhook-signature",
            "x-client-secret",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        assert!(!is_sensitive("x-tenant"));
    }
}
