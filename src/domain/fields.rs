//! The validated values an endpoint is made of. Each is built only through
//! `parse`/`new`, so holding one means the rules below were checked.

use std::collections::BTreeMap;

use super::Invalid;

/// A display name: 1 to 256 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointName(String);

impl EndpointName {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("is required"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where deliveries go: an absolute http(s) URL with a host and no embedded
/// credentials (those belong in the endpoint's authentication settings, where
/// they are kept out of responses and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(url::Url);

impl EndpointUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::new("is required"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(Invalid::new(format!(
                "must be at most {} bytes",
                Self::MAX_LEN
            )));
        }
        let url = url::Url::parse(raw).map_err(|e| Invalid::new(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new(format!(
                "scheme must be http or https, not `{}`",
                url.scheme()
            )));
        }
        // The parser is lenient (`http:///x` becomes `http://x/`); what the
        // caller typed must already have the `scheme://host` shape.
        let authority = &raw[url.scheme().len()..];
        if url.host_str().is_none_or(str::is_empty)
            || !authority.starts_with("://")
            || authority[3..].starts_with('/')
        {
            return Err(Invalid::new("must name a host, as in https://host/path"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                "must not carry credentials; configure authentication instead",
            ));
        }
        if url.fragment().is_some() {
            return Err(Invalid::new("must not have a #fragment"));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }
}

/// Headers sent with every delivery. Names are stored lower-case (HTTP header
/// names are case-insensitive), values as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomHeaders(BTreeMap<String, String>);

impl CustomHeaders {
    pub const MAX_COUNT: usize = 50;
    pub const MAX_VALUE_LEN: usize = 4096;

    /// Names hookd sets itself or that describe the connection rather than
    /// the message; letting an endpoint override them would break framing,
    /// signatures or receivers' de-duplication.
    const RESERVED: &'static [&'static str] = &[
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "user-agent",
        "x-convoy-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    const RESERVED_PREFIXES: &'static [&'static str] = &["x-hookd-", ":"];

    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, Invalid> {
        let mut headers = BTreeMap::new();
        for (name, value) in pairs {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(Invalid::new(format!("`{name}` is not a valid header name")));
            }
            if Self::RESERVED.contains(&lower.as_str())
                || Self::RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                return Err(Invalid::new(format!(
                    "`{name}` is reserved and cannot be set"
                )));
            }
            if value.len() > Self::MAX_VALUE_LEN {
                return Err(Invalid::new(format!(
                    "value of `{name}` must be at most {} bytes",
                    Self::MAX_VALUE_LEN
                )));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(Invalid::new(format!(
                    "value of `{name}` must be visible ASCII without line breaks"
                )));
            }
            if headers.insert(lower, value.clone()).is_some() {
                return Err(Invalid::new(format!("`{name}` is given twice")));
            }
        }
        if headers.len() > Self::MAX_COUNT {
            return Err(Invalid::new(format!(
                "at most {} headers are allowed",
                Self::MAX_COUNT
            )));
        }
        Ok(Self(headers))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// How long a delivery waits for the receiver's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutSeconds(u32);

impl TimeoutSeconds {
    pub const DEFAULT: Self = Self(10);
    /// Long enough for slow receivers, short enough that a hung connection
    /// cannot pin a delivery slot for long.
    pub const MAX: u32 = 300;

    pub fn new(seconds: u32) -> Result<Self, Invalid> {
        if (1..=Self::MAX).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(Invalid::new(format!(
                "must be between 1 and {} seconds",
                Self::MAX
            )))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Groups endpoints so one event can fan out to all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerId(String);

impl OwnerId {
    pub const MAX_CHARS: usize = 128;

    /// An empty value means "no owner".
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        let owner = raw.trim();
        if owner.is_empty() {
            return Ok(None);
        }
        if owner.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if owner.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Some(Self(owner.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text about the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(Invalid::new(
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the payload is encoded on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentType {
    #[default]
    Json,
    /// Top-level keys become form fields; nested values are sent as JSON text.
    FormUrlEncoded,
}

impl ContentType {
    pub const JSON: &'static str = "application/json";
    pub const FORM: &'static str = "application/x-www-form-urlencoded";

    /// An empty value means the default, JSON.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | Self::JSON => Ok(Self::Json),
            Self::FORM => Ok(Self::FormUrlEncoded),
            other => Err(Invalid::new(format!(
                "`{other}` is not supported; use `{}` or `{}`",
                Self::JSON,
                Self::FORM
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => Self::JSON,
            Self::FormUrlEncoded => Self::FORM,
        }
    }
}

/// At most `count` deliveries per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u32,
    period_seconds: u32,
}

impl RateLimit {
    pub const MAX_PERIOD_SECONDS: u32 = 86_400;
    pub const MAX_COUNT: u32 = 1_000_000;

    /// A count of 0 means "no limit" and yields `None`.
    pub fn new(count: u32, period_seconds: u32) -> Result<Option<Self>, Invalid> {
        if count == 0 {
            return Ok(None);
        }
        if count > Self::MAX_COUNT {
            return Err(Invalid::new(format!(
                "count must be at most {}",
                Self::MAX_COUNT
            )));
        }
        if !(1..=Self::MAX_PERIOD_SECONDS).contains(&period_seconds) {
            return Err(Invalid::new(format!(
                "period_seconds must be between 1 and {} when count is set",
                Self::MAX_PERIOD_SECONDS
            )));
        }
        Ok(Some(Self {
            count,
            period_seconds,
        }))
    }

    pub fn count(self) -> u32 {
        self.count
    }

    pub fn period_seconds(self) -> u32 {
        self.period_seconds
    }
}

/// An event type such as `invoice.paid`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(String);

impl EventType {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(Invalid::new(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Invalid::new(format!(
                "`{raw}` contains `{bad}`; only letters, digits, `.`, `_` and `-` are allowed"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types an endpoint receives; empty means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypeFilter(Vec<EventType>);

impl EventTypeFilter {
    pub const MAX_COUNT: usize = 256;

    pub fn parse<'a>(raw: impl IntoIterator<Item = &'a String>) -> Result<Self, Invalid> {
        let mut types = raw
            .into_iter()
            .map(|t| EventType::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        types.sort();
        types.dedup();
        if types.len() > Self::MAX_COUNT {
            return Err(Invalid::new(format!(
                "at most {} event types are allowed",
                Self::MAX_COUNT
            )));
        }
        Ok(Self(types))
    }

    pub fn admits(&self, event_type: &EventType) -> bool {
        self.0.is_empty() || self.0.binary_search(event_type).is_ok()
    }

    pub fn as_slice(&self) -> &[EventType] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Result<CustomHeaders, Invalid> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CustomHeaders::parse(owned.iter().map(|(k, v)| (k, v)))
    }

    #[test]
    fn name_is_trimmed_and_required() {
        assert_eq!(EndpointName::parse("  shop ").unwrap().as_str(), "shop");
        assert!(EndpointName::parse("   ").is_err());
        assert!(EndpointName::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn url_must_be_http_or_https_with_a_host_and_no_credentials() {
        assert!(EndpointUrl::parse("https://example.com/hook?a=1").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com/",
            "https://",
            "http:///path",
            "http:example.com",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "javascript:alert(1)",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn reserved_and_hop_by_hop_headers_are_refused_in_any_case() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "X-Convoy-Signature",
            "X-Hookd-Delivery-Id",
            "webhook-signature",
        ] {
            let err = headers(&[(name, "v")]).unwrap_err();
            assert!(err.0.contains("reserved"), "{name}: {err}");
        }
        assert!(headers(&[("X-Tenant", "acme")]).is_ok());
    }

    #[test]
    fn header_names_and_values_must_be_valid_http() {
        assert!(headers(&[("bad name", "v")]).is_err());
        assert!(headers(&[("x-ok", "line\r\nbreak")]).is_err());
        assert!(headers(&[("X-Dup", "1"), ("x-dup", "2")]).is_err());
    }

    #[test]
    fn timeout_is_bounded() {
        assert!(TimeoutSeconds::new(0).is_err());
        assert!(TimeoutSeconds::new(301).is_err());
        assert_eq!(TimeoutSeconds::new(300).unwrap().get(), 300);
    }

    #[test]
    fn content_type_accepts_the_two_encodings_only() {
        assert_eq!(ContentType::parse("").unwrap(), ContentType::Json);
        assert_eq!(
            ContentType::parse("Application/X-WWW-Form-Urlencoded").unwrap(),
            ContentType::FormUrlEncoded
        );
        assert!(ContentType::parse("text/xml").is_err());
    }

    #[test]
    fn rate_limit_of_zero_is_unlimited() {
        assert_eq!(RateLimit::new(0, 0).unwrap(), None);
        assert!(RateLimit::new(10, 0).is_err());
        assert_eq!(RateLimit::new(10, 1).unwrap().unwrap().count(), 10);
    }

    #[test]
    fn event_type_filter_dedups_and_empty_admits_everything() {
        let raw = vec!["b.x".to_string(), "a".to_string(), "b.x".to_string()];
        let filter = EventTypeFilter::parse(&raw).unwrap();
        assert_eq!(filter.as_slice().len(), 2);
        assert!(filter.admits(&EventType::parse("a").unwrap()));
        assert!(!filter.admits(&EventType::parse("c").unwrap()));
        assert!(EventTypeFilter::default().admits(&EventType::parse("c").unwrap()));
        assert!(EventTypeFilter::parse(&["a b".to_string()]).is_err());
    }
}
