//! An endpoint and the rules for changing it.

use super::fields::{
    ContentType, CustomHeaders, Description, EndpointName, EndpointUrl, EventTypeFilter, OwnerId,
    RateLimit, TimeoutSeconds,
};
use super::ids::{EndpointId, ProjectId};
use super::secret::Secret;
use super::signature::{HashAlgorithm, SignatureConfig, SignatureEncoding, SignatureScheme};
use super::time::Timestamp;

/// Where an endpoint is in its life (see the seeds' "Endpoint State").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointStatus {
    Active,
    Inactive,
    Paused,
    Pending,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Paused => "paused",
            Self::Pending => "pending",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        Some(match raw {
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "paused" => Self::Paused,
            "pending" => Self::Pending,
            _ => return None,
        })
    }
}

/// Why a requested change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Not allowed in the endpoint's current state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The change is valid alone but not together with the rest.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Why a status change is not allowed in the endpoint's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("status can only be set to ACTIVE or PAUSED by hand, not {0:?}")]
    NotManual(EndpointStatus),
    #[error(
        "an {0:?} endpoint is reactivated by retrying a failed delivery, not by setting it ACTIVE"
    )]
    NeedsReactivation(EndpointStatus),
    #[error("only an INACTIVE or PENDING endpoint can be activated; this one is {0:?}")]
    NotInactive(EndpointStatus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub project_id: ProjectId,
    pub name: EndpointName,
    pub url: EndpointUrl,
    pub headers: CustomHeaders,
    pub timeout: TimeoutSeconds,
    pub status: EndpointStatus,
    pub paused_at: Option<Timestamp>,
    pub status_changed_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub owner_id: Option<OwnerId>,
    pub description: Description,
    pub content_type: ContentType,
    pub rate_limit: Option<RateLimit>,
    pub event_types: EventTypeFilter,
    pub signature: SignatureConfig,
    /// Receives a notice on each automatic status change.
    pub alert_url: Option<EndpointUrl>,
    /// Bumped by every write; updates are conditional on it so two concurrent
    /// read-modify-write cycles cannot silently overwrite each other.
    pub revision: i64,
}

/// The caller-settable part of an endpoint, all of it validated.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub name: EndpointName,
    pub url: EndpointUrl,
    pub headers: CustomHeaders,
    pub timeout: TimeoutSeconds,
    pub owner_id: Option<OwnerId>,
    pub description: Description,
    pub content_type: ContentType,
    pub rate_limit: Option<RateLimit>,
    pub event_types: EventTypeFilter,
    pub signature: SignatureConfig,
    pub alert_url: Option<EndpointUrl>,
}

impl EndpointSpec {
    /// A name and a URL, and every other field at its default: no custom
    /// headers, the default timeout, JSON, no owner, rate limit or alert URL,
    /// every event type, the default signature.
    pub fn new(name: EndpointName, url: EndpointUrl) -> Self {
        Self {
            name,
            url,
            headers: CustomHeaders::default(),
            timeout: TimeoutSeconds::DEFAULT,
            owner_id: None,
            description: Description::default(),
            content_type: ContentType::Json,
            rate_limit: None,
            event_types: EventTypeFilter::default(),
            signature: SignatureConfig::default(),
            alert_url: None,
        }
    }
}

impl Endpoint {
    /// A brand-new endpoint: ACTIVE from the start.
    pub fn new(id: EndpointId, project_id: ProjectId, spec: EndpointSpec, now: Timestamp) -> Self {
        Self {
            id,
            project_id,
            name: spec.name,
            url: spec.url,
            headers: spec.headers,
            timeout: spec.timeout,
            status: EndpointStatus::Active,
            paused_at: None,
            status_changed_at: now,
            created_at: now,
            updated_at: now,
            owner_id: spec.owner_id,
            description: spec.description,
            content_type: spec.content_type,
            rate_limit: spec.rate_limit,
            event_types: spec.event_types,
            signature: spec.signature,
            alert_url: spec.alert_url,
            revision: 0,
        }
    }

    /// Applies a hand-made change. Each `Some` field replaces the current
    /// value; the secret, if any, is the caller's to store.
    pub fn apply(&mut self, patch: EndpointPatch, now: Timestamp) -> Result<(), UpdateError> {
        let signature = if patch.signature_scheme.is_some()
            || patch.signature_hash.is_some()
            || patch.signature_encoding.is_some()
        {
            let field = if patch.signature_hash.is_some() {
                "endpoint.signature_hash"
            } else if patch.signature_encoding.is_some() {
                "endpoint.signature_encoding"
            } else {
                "endpoint.signature_scheme"
            };
            let current = self.signature;
            Some(
                SignatureConfig::new(
                    patch.signature_scheme.unwrap_or(current.scheme()),
                    patch.signature_hash.unwrap_or(current.hash()),
                    patch.signature_encoding.unwrap_or(current.encoding()),
                )
                .map_err(|e| UpdateError::Invalid {
                    field,
                    message: e.0,
                })?,
            )
        } else {
            None
        };
        if let Some(status) = patch.status {
            self.set_status_by_hand(status, now)?;
        }
        let EndpointPatch {
            name,
            url,
            headers,
            timeout,
            owner_id,
            description,
            content_type,
            rate_limit,
            event_types,
            status: _,
            secret: _,
            signature_scheme: _,
            signature_hash: _,
            signature_encoding: _,
            alert_url,
        } = patch;
        set(&mut self.alert_url, alert_url);
        set(&mut self.signature, signature);
        set(&mut self.name, name);
        set(&mut self.url, url);
        set(&mut self.headers, headers);
        set(&mut self.timeout, timeout);
        set(&mut self.owner_id, owner_id);
        set(&mut self.description, description);
        set(&mut self.content_type, content_type);
        set(&mut self.rate_limit, rate_limit);
        set(&mut self.event_types, event_types);
        self.updated_at = now;
        Ok(())
    }

    /// An operator's override of the circuit breaker: INACTIVE or PENDING
    /// becomes ACTIVE at once.
    pub fn activate(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        match self.status {
            EndpointStatus::Inactive | EndpointStatus::Pending => {
                self.status = EndpointStatus::Active;
                self.status_changed_at = now;
                self.updated_at = now;
                Ok(())
            }
            other => Err(TransitionError::NotInactive(other)),
        }
    }

    /// ACTIVE and PAUSED are the only states a person sets. PAUSED stamps
    /// `paused_at`, ACTIVE clears it. INACTIVE and PENDING belong to the
    /// failure handling: such an endpoint may be paused, but becomes ACTIVE
    /// only through a successful retried delivery.
    fn set_status_by_hand(
        &mut self,
        target: EndpointStatus,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        use EndpointStatus::*;
        match (self.status, target) {
            (current, wanted) if current == wanted => Ok(()),
            (_, Inactive | Pending) => Err(TransitionError::NotManual(target)),
            (Inactive | Pending, Active) => Err(TransitionError::NeedsReactivation(self.status)),
            (_, Paused) => {
                self.status = Paused;
                self.paused_at = Some(now);
                self.status_changed_at = now;
                Ok(())
            }
            (_, Active) => {
                self.status = Active;
                self.paused_at = None;
                self.status_changed_at = now;
                Ok(())
            }
        }
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A partial change: `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub name: Option<EndpointName>,
    pub url: Option<EndpointUrl>,
    pub headers: Option<CustomHeaders>,
    pub timeout: Option<TimeoutSeconds>,
    pub status: Option<EndpointStatus>,
    pub owner_id: Option<Option<OwnerId>>,
    pub description: Option<Description>,
    pub content_type: Option<ContentType>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub event_types: Option<EventTypeFilter>,
    pub secret: Option<Secret>,
    pub signature_scheme: Option<SignatureScheme>,
    pub signature_hash: Option<HashAlgorithm>,
    pub signature_encoding: Option<SignatureEncoding>,
    pub alert_url: Option<Option<EndpointUrl>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(status: EndpointStatus) -> Endpoint {
        let spec = EndpointSpec::new(
            EndpointName::parse("n").unwrap(),
            EndpointUrl::parse("https://example.com/").unwrap(),
        );
        let mut ep = Endpoint::new(
            EndpointId::from_uuid(uuid::Uuid::nil()),
            ProjectId::from_uuid(uuid::Uuid::nil()),
            spec,
            Timestamp::from_unix_micros(1),
        );
        ep.status = status;
        ep
    }

    fn status_patch(status: EndpointStatus) -> EndpointPatch {
        EndpointPatch {
            status: Some(status),
            ..EndpointPatch::default()
        }
    }

    #[test]
    fn pausing_stamps_paused_at_and_resuming_clears_it() {
        let mut ep = endpoint(EndpointStatus::Active);
        let t = Timestamp::from_unix_micros(50);
        ep.apply(status_patch(EndpointStatus::Paused), t).unwrap();
        assert_eq!(
            (ep.status, ep.paused_at, ep.status_changed_at),
            (EndpointStatus::Paused, Some(t), t)
        );
        let t2 = Timestamp::from_unix_micros(90);
        ep.apply(status_patch(EndpointStatus::Active), t2).unwrap();
        assert_eq!(
            (ep.status, ep.paused_at, ep.status_changed_at),
            (EndpointStatus::Active, None, t2)
        );
    }

    #[test]
    fn setting_the_current_status_changes_nothing() {
        let mut ep = endpoint(EndpointStatus::Active);
        ep.apply(
            status_patch(EndpointStatus::Paused),
            Timestamp::from_unix_micros(5),
        )
        .unwrap();
        ep.apply(
            status_patch(EndpointStatus::Paused),
            Timestamp::from_unix_micros(9),
        )
        .unwrap();
        assert_eq!(ep.paused_at, Some(Timestamp::from_unix_micros(5)));
    }

    #[test]
    fn automatic_states_cannot_be_set_by_hand() {
        for target in [EndpointStatus::Inactive, EndpointStatus::Pending] {
            let mut ep = endpoint(EndpointStatus::Active);
            let before = ep.clone();
            assert_eq!(
                ep.apply(status_patch(target), Timestamp::from_unix_micros(2)),
                Err(UpdateError::Transition(TransitionError::NotManual(target)))
            );
            assert_eq!(ep, before, "a refused change leaves the endpoint untouched");
        }
    }

    #[test]
    fn an_inactive_endpoint_can_be_paused_but_not_simply_activated() {
        let mut ep = endpoint(EndpointStatus::Inactive);
        assert!(matches!(
            ep.apply(
                status_patch(EndpointStatus::Active),
                Timestamp::from_unix_micros(2)
            ),
            Err(UpdateError::Transition(TransitionError::NeedsReactivation(
                _
            )))
        ));
        ep.apply(
            status_patch(EndpointStatus::Paused),
            Timestamp::from_unix_micros(3),
        )
        .unwrap();
        assert_eq!(ep.status, EndpointStatus::Paused);
    }

    #[test]
    fn signature_settings_are_checked_together() {
        let mut ep = endpoint(EndpointStatus::Active);
        let sha512 = EndpointPatch {
            signature_hash: Some(HashAlgorithm::Sha512),
            ..EndpointPatch::default()
        };
        ep.apply(sha512, Timestamp::from_unix_micros(2)).unwrap();
        let before = ep.clone();
        let standard = EndpointPatch {
            signature_scheme: Some(SignatureScheme::StandardWebhooks),
            ..EndpointPatch::default()
        };
        assert!(matches!(
            ep.apply(standard, Timestamp::from_unix_micros(3)),
            Err(UpdateError::Invalid {
                field: "endpoint.signature_scheme",
                ..
            })
        ));
        assert_eq!(ep, before);
    }

    #[test]
    fn patch_changes_only_what_it_names() {
        let mut ep = endpoint(EndpointStatus::Active);
        let before = ep.clone();
        let patch = EndpointPatch {
            name: Some(EndpointName::parse("renamed").unwrap()),
            ..EndpointPatch::default()
        };
        ep.apply(patch, Timestamp::from_unix_micros(7)).unwrap();
        assert_eq!(ep.name.as_str(), "renamed");
        assert_eq!(ep.url, before.url);
        assert_eq!(ep.updated_at, Timestamp::from_unix_micros(7));
        assert_eq!(ep.status_changed_at, before.status_changed_at);
    }
}
