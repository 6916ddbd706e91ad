//! Endpoints between protobuf and the domain.

use prost_types::FieldMask;

use super::timestamp;
use crate::domain::endpoint::{Endpoint, EndpointPatch, EndpointSpec, EndpointStatus};
use crate::domain::fields::{
    ContentType, CustomHeaders, Description, EndpointName, EndpointUrl, EventTypeFilter, OwnerId,
    RateLimit, TimeoutSeconds,
};
use crate::domain::secret::Secret;
use crate::domain::signature::{
    HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme,
};
use crate::grpc::ApiError;
use crate::grpc::pb;
pub(in crate::grpc) fn status_to_pb(status: EndpointStatus) -> pb::EndpointStatus {
    match status {
        EndpointStatus::Active => pb::EndpointStatus::Active,
        EndpointStatus::Inactive => pb::EndpointStatus::Inactive,
        EndpointStatus::Paused => pb::EndpointStatus::Paused,
        EndpointStatus::Pending => pb::EndpointStatus::Pending,
    }
}

/// `None` for UNSPECIFIED; an error for numbers outside the enum.
pub(in crate::grpc) fn status_from_pb(
    raw: i32,
    field: &str,
) -> Result<Option<EndpointStatus>, ApiError> {
    let status = pb::EndpointStatus::try_from(raw)
        .map_err(|_| ApiError::invalid(field, format!("{raw} is not an endpoint status")))?;
    Ok(match status {
        pb::EndpointStatus::Unspecified => None,
        pb::EndpointStatus::Active => Some(EndpointStatus::Active),
        pb::EndpointStatus::Inactive => Some(EndpointStatus::Inactive),
        pb::EndpointStatus::Paused => Some(EndpointStatus::Paused),
        pb::EndpointStatus::Pending => Some(EndpointStatus::Pending),
    })
}

/// The endpoint as clients see it: never with a secret.
pub(in crate::grpc) fn endpoint_to_pb(ep: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        id: ep.id.to_string(),
        name: ep.name.as_str().to_owned(),
        url: ep.url.as_str().to_owned(),
        secret: String::new(),
        headers: ep.headers.as_map().clone().into_iter().collect(),
        timeout_seconds: ep.timeout.get(),
        status: status_to_pb(ep.status) as i32,
        paused_at: ep.paused_at.map(timestamp),
        created_at: Some(timestamp(ep.created_at)),
        updated_at: Some(timestamp(ep.updated_at)),
        owner_id: ep
            .owner_id
            .as_ref()
            .map(|o| o.as_str().to_owned())
            .unwrap_or_default(),
        description: ep.description.as_str().to_owned(),
        content_type: ep.content_type.as_str().to_owned(),
        rate_limit: ep.rate_limit.map(|r| pb::RateLimit {
            count: r.count(),
            period_seconds: r.period_seconds(),
        }),
        event_types: ep
            .event_types
            .as_slice()
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        status_changed_at: Some(timestamp(ep.status_changed_at)),
        signature_scheme: signature_to_pb(ep.signature)[0],
        signature_hash: signature_to_pb(ep.signature)[1],
        signature_encoding: signature_to_pb(ep.signature)[2],
        alert_url: ep
            .alert_url
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// Each writable field of `pb::Endpoint`, parsed on its own so both create
/// and update share one set of rules and field names.
struct Fields<'a>(&'a pb::Endpoint);

impl Fields<'_> {
    fn name(&self) -> Result<EndpointName, ApiError> {
        EndpointName::parse(&self.0.name).map_err(ApiError::field("endpoint.name"))
    }
    fn url(&self) -> Result<EndpointUrl, ApiError> {
        EndpointUrl::parse(&self.0.url).map_err(ApiError::field("endpoint.url"))
    }
    /// `None` when empty (generate one).
    fn secret(&self) -> Result<Option<Secret>, ApiError> {
        if self.0.secret.is_empty() {
            return Ok(None);
        }
        Secret::parse(&self.0.secret)
            .map(Some)
            .map_err(ApiError::field("endpoint.secret"))
    }
    fn headers(&self) -> Result<CustomHeaders, ApiError> {
        CustomHeaders::parse(&self.0.headers).map_err(ApiError::field("endpoint.headers"))
    }
    /// 0 means the default.
    fn timeout(&self) -> Result<TimeoutSeconds, ApiError> {
        match self.0.timeout_seconds {
            0 => Ok(TimeoutSeconds::DEFAULT),
            n => TimeoutSeconds::new(n).map_err(ApiError::field("endpoint.timeout_seconds")),
        }
    }
    /// `None` when empty.
    fn alert_url(&self) -> Result<Option<EndpointUrl>, ApiError> {
        if self.0.alert_url.is_empty() {
            return Ok(None);
        }
        EndpointUrl::parse(&self.0.alert_url)
            .map(Some)
            .map_err(ApiError::field("endpoint.alert_url"))
    }
    fn owner_id(&self) -> Result<Option<OwnerId>, ApiError> {
        OwnerId::parse(&self.0.owner_id).map_err(ApiError::field("endpoint.owner_id"))
    }
    fn description(&self) -> Result<Description, ApiError> {
        Description::parse(&self.0.description).map_err(ApiError::field("endpoint.description"))
    }
    fn content_type(&self) -> Result<ContentType, ApiError> {
        ContentType::parse(&self.0.content_type).map_err(ApiError::field("endpoint.content_type"))
    }
    fn rate_limit(&self) -> Result<Option<RateLimit>, ApiError> {
        match &self.0.rate_limit {
            None => Ok(None),
            Some(r) => RateLimit::new(r.count, r.period_seconds)
                .map_err(ApiError::field("endpoint.rate_limit")),
        }
    }
    fn event_types(&self) -> Result<EventTypeFilter, ApiError> {
        EventTypeFilter::parse(&self.0.event_types).map_err(ApiError::field("endpoint.event_types"))
    }
    /// UNSPECIFIED means the default.
    fn signature(&self) -> Result<SignatureConfig, ApiError> {
        signature_from_pb(
            [
                self.0.signature_scheme,
                self.0.signature_hash,
                self.0.signature_encoding,
            ],
            [
                "endpoint.signature_scheme",
                "endpoint.signature_hash",
                "endpoint.signature_encoding",
            ],
        )
    }
    /// Only ACTIVE and PAUSED can be asked for; the domain decides whether
    /// the move is allowed from the current state.
    fn status(&self) -> Result<EndpointStatus, ApiError> {
        status_from_pb(self.0.status, "endpoint.status")?
            .ok_or_else(|| ApiError::invalid("endpoint.status", "must be ACTIVE or PAUSED"))
    }
}

/// A validated create request: the spec, and the secret if one was given.
pub(in crate::grpc) fn endpoint_spec(
    raw: &pb::Endpoint,
) -> Result<(EndpointSpec, Option<Secret>), ApiError> {
    let f = Fields(raw);
    let spec = EndpointSpec {
        name: f.name()?,
        url: f.url()?,
        headers: f.headers()?,
        timeout: f.timeout()?,
        owner_id: f.owner_id()?,
        description: f.description()?,
        content_type: f.content_type()?,
        rate_limit: f.rate_limit()?,
        event_types: f.event_types()?,
        signature: f.signature()?,
        alert_url: f.alert_url()?,
    };
    Ok((spec, f.secret()?))
}

/// Paths of `pb::Endpoint` an update may name.
const UPDATABLE: &[&str] = &[
    "name",
    "url",
    "secret",
    "headers",
    "timeout_seconds",
    "status",
    "owner_id",
    "description",
    "content_type",
    "rate_limit",
    "event_types",
    "signature_scheme",
    "signature_hash",
    "signature_encoding",
    "alert_url",
];
const OUTPUT_ONLY: &[&str] = &[
    "id",
    "paused_at",
    "created_at",
    "updated_at",
    "status_changed_at",
];

/// What an update asks for. `regenerate_secret` is set when `secret` is
/// masked but left empty.
pub(in crate::grpc) struct EndpointUpdate {
    pub(in crate::grpc) patch: EndpointPatch,
    pub(in crate::grpc) regenerate_secret: bool,
}

/// With a mask, exactly the masked fields change (an empty value clears or
/// resets). Without one, every field set to a non-default value changes.
pub(in crate::grpc) fn endpoint_update(
    raw: &pb::Endpoint,
    mask: Option<&FieldMask>,
) -> Result<EndpointUpdate, ApiError> {
    let paths: Vec<&str> = match mask {
        Some(mask) if !mask.paths.is_empty() => {
            for path in &mask.paths {
                if OUTPUT_ONLY.contains(&path.as_str()) {
                    return Err(ApiError::invalid(
                        "update_mask",
                        format!("`{path}` is output only"),
                    ));
                }
                if !UPDATABLE.contains(&path.as_str()) {
                    return Err(ApiError::invalid(
                        "update_mask",
                        format!("`{path}` is not an endpoint field that can be updated"),
                    ));
                }
            }
            mask.paths.iter().map(String::as_str).collect()
        }
        _ => set_fields(raw),
    };
    let f = Fields(raw);
    let mut patch = EndpointPatch::default();
    let mut regenerate_secret = false;
    for path in paths {
        match path {
            "name" => patch.name = Some(f.name()?),
            "url" => patch.url = Some(f.url()?),
            "secret" => match f.secret()? {
                Some(secret) => patch.secret = Some(secret),
                None => regenerate_secret = true,
            },
            "headers" => patch.headers = Some(f.headers()?),
            "timeout_seconds" => patch.timeout = Some(f.timeout()?),
            "status" => patch.status = Some(f.status()?),
            "owner_id" => patch.owner_id = Some(f.owner_id()?),
            "description" => patch.description = Some(f.description()?),
            "content_type" => patch.content_type = Some(f.content_type()?),
            "rate_limit" => patch.rate_limit = Some(f.rate_limit()?),
            "event_types" => patch.event_types = Some(f.event_types()?),
            "signature_scheme" => {
                patch.signature_scheme = Some(scheme_from_pb(
                    raw.signature_scheme,
                    "endpoint.signature_scheme",
                )?)
            }
            "signature_hash" => {
                patch.signature_hash =
                    Some(hash_from_pb(raw.signature_hash, "endpoint.signature_hash")?)
            }
            "signature_encoding" => {
                patch.signature_encoding = Some(encoding_from_pb(
                    raw.signature_encoding,
                    "endpoint.signature_encoding",
                )?)
            }
            "alert_url" => patch.alert_url = Some(f.alert_url()?),
            _ => unreachable!("paths are checked against UPDATABLE or come from set_fields"),
        }
    }
    Ok(EndpointUpdate {
        patch,
        regenerate_secret,
    })
}

/// The updatable fields holding a non-default value.
fn set_fields(raw: &pb::Endpoint) -> Vec<&'static str> {
    let set = [
        ("name", !raw.name.is_empty()),
        ("url", !raw.url.is_empty()),
        ("secret", !raw.secret.is_empty()),
        ("headers", !raw.headers.is_empty()),
        ("timeout_seconds", raw.timeout_seconds != 0),
        ("status", raw.status != 0),
        ("owner_id", !raw.owner_id.is_empty()),
        ("description", !raw.description.is_empty()),
        ("content_type", !raw.content_type.is_empty()),
        ("rate_limit", raw.rate_limit.is_some()),
        ("event_types", !raw.event_types.is_empty()),
        ("signature_scheme", raw.signature_scheme != 0),
        ("signature_hash", raw.signature_hash != 0),
        ("signature_encoding", raw.signature_encoding != 0),
        ("alert_url", !raw.alert_url.is_empty()),
    ];
    set.into_iter()
        .filter(|(_, on)| *on)
        .map(|(path, _)| path)
        .collect()
}

/// `[scheme, hash, encoding]` as protobuf enum values.
pub(in crate::grpc) fn signature_to_pb(signature: SignatureConfig) -> [i32; 3] {
    [
        match signature.scheme() {
            SignatureScheme::ConvoyAdvanced => pb::SignatureScheme::ConvoyAdvanced,
            SignatureScheme::ConvoySimple => pb::SignatureScheme::ConvoySimple,
            SignatureScheme::StandardWebhooks => pb::SignatureScheme::StandardWebhooks,
        } as i32,
        match signature.hash() {
            HashAlgorithm::Sha256 => pb::SignatureHash::Sha256,
            HashAlgorithm::Sha512 => pb::SignatureHash::Sha512,
        } as i32,
        match signature.encoding() {
            SignatureEncoding::Hex => pb::SignatureEncoding::Hex,
            SignatureEncoding::Base64 => pb::SignatureEncoding::Base64,
        } as i32,
    ]
}

/// A signature from `[scheme, hash, encoding]` enum values, unset ones
/// meaning Convoy advanced, SHA256 and hex; `fields` name them in errors.
pub(in crate::grpc) fn signature_from_pb(
    [scheme, hash, encoding]: [i32; 3],
    [scheme_field, hash_field, encoding_field]: [&str; 3],
) -> Result<SignatureConfig, ApiError> {
    let scheme = scheme_from_pb(scheme, scheme_field)?;
    let hash = hash_from_pb(hash, hash_field)?;
    let encoding = encoding_from_pb(encoding, encoding_field)?;
    let field = if hash != HashAlgorithm::Sha256 {
        hash_field
    } else {
        encoding_field
    };
    SignatureConfig::new(scheme, hash, encoding).map_err(ApiError::field(field))
}

fn scheme_from_pb(raw: i32, field: &str) -> Result<SignatureScheme, ApiError> {
    match pb::SignatureScheme::try_from(raw) {
        Ok(pb::SignatureScheme::Unspecified | pb::SignatureScheme::ConvoyAdvanced) => {
            Ok(SignatureScheme::ConvoyAdvanced)
        }
        Ok(pb::SignatureScheme::ConvoySimple) => Ok(SignatureScheme::ConvoySimple),
        Ok(pb::SignatureScheme::StandardWebhooks) => Ok(SignatureScheme::StandardWebhooks),
        Err(_) => Err(ApiError::invalid(field, "is not a signature scheme")),
    }
}

fn hash_from_pb(raw: i32, field: &str) -> Result<HashAlgorithm, ApiError> {
    match pb::SignatureHash::try_from(raw) {
        Ok(pb::SignatureHash::Unspecified | pb::SignatureHash::Sha256) => Ok(HashAlgorithm::Sha256),
        Ok(pb::SignatureHash::Sha512) => Ok(HashAlgorithm::Sha512),
        Err(_) => Err(ApiError::invalid(field, "is not a hash algorithm")),
    }
}

fn encoding_from_pb(raw: i32, field: &str) -> Result<SignatureEncoding, ApiError> {
    match pb::SignatureEncoding::try_from(raw) {
        Ok(pb::SignatureEncoding::Unspecified | pb::SignatureEncoding::Hex) => {
            Ok(SignatureEncoding::Hex)
        }
        Ok(pb::SignatureEncoding::Base64) => Ok(SignatureEncoding::Base64),
        Err(_) => Err(ApiError::invalid(field, "is not an encoding")),
    }
}
