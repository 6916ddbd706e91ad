//! Prefixed identifiers (`ep_…`, `proj_…`). The UUID inside is version 7, so
//! ids sort by creation time and keyset pagination over them is stable.
//!
//! An id is its text held inline (at most 41 bytes: a 5-byte prefix and a
//! hyphenated UUID), not on the heap: the delivery path makes and copies
//! ids for every delivery, and each would otherwise be an allocation.

use std::fmt;
use std::str::FromStr;

use arrayvec::ArrayString;
use uuid::Uuid;

use super::Invalid;

/// Room for the longest prefix and a hyphenated UUID.
const ID_CAPACITY: usize = 5 + uuid::fmt::Hyphenated::LENGTH;

/// `prefix` followed by `uuid`, hyphenated, in lower case.
fn prefixed(prefix: &str, uuid: Uuid) -> ArrayString<ID_CAPACITY> {
    let mut text = ArrayString::new();
    text.push_str(prefix);
    text.push_str(uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    text
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(ArrayString<ID_CAPACITY>);

        const _: () = assert!($prefix.len() + uuid::fmt::Hyphenated::LENGTH <= ID_CAPACITY);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Builds an id from a fresh UUID supplied by the caller.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(prefixed($prefix, uuid))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Invalid;

            fn from_str(s: &str) -> Result<Self, Invalid> {
                let uuid = s
                    .strip_prefix($prefix)
                    .and_then(|rest| Uuid::try_parse(rest).ok())
                    .ok_or_else(|| {
                        Invalid::new(format!(
                            "must be `{}` followed by a UUID",
                            $prefix
                        ))
                    })?;
                Ok(Self::from_uuid(uuid))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A project: the tenant that owns endpoints and API keys.
    ProjectId,
    "proj_"
);
prefixed_id!(
    /// An endpoint: one URL that receives webhooks.
    EndpointId,
    "ep_"
);
prefixed_id!(
    /// An API key record (not the key itself).
    ApiKeyId,
    "key_"
);

prefixed_id!(
    /// An event: one thing that happened, fanned out to endpoints.
    EventId,
    "evt_"
);
prefixed_id!(
    /// A delivery: one event on its way to one endpoint. Sent to receivers,
    /// unchanged across retries, so they can de-duplicate on it.
    DeliveryId,
    "dlv_"
);
prefixed_id!(
    /// One HTTP attempt of a delivery.
    AttemptId,
    "att_"
);
prefixed_id!(
    /// A meta event: news about a project's endpoints and deliveries.
    MetaEventId,
    "mev_"
);
prefixed_id!(
    /// A running hookd process; deliveries it holds carry its id.
    NodeId,
    "node_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_text_form() {
        let id = EndpointId::from_uuid(Uuid::now_v7());
        assert_eq!(id.as_str().parse::<EndpointId>().unwrap(), id);
    }

    #[test]
    fn refuses_the_wrong_prefix_or_a_broken_uuid() {
        let uuid = Uuid::now_v7();
        assert!(format!("proj_{uuid}").parse::<EndpointId>().is_err());
        assert!("ep_not-a-uuid".parse::<EndpointId>().is_err());
        assert!("".parse::<EndpointId>().is_err());
    }

    #[test]
    fn the_longest_prefix_fits_and_order_is_the_text_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(u128::MAX));
        assert_eq!(
            NodeId::from_uuid(b).as_str(),
            "node_ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        assert!(NodeId::from_uuid(a) < NodeId::from_uuid(b));
        assert_eq!(ProjectId::from_uuid(a).to_string().len(), 41);
    }

    #[test]
    fn normalises_uuid_case() {
        let id: EndpointId = "ep_0190A0B1-C2D3-7E4F-8A9B-0C1D2E3F4A5B".parse().unwrap();
        assert_eq!(id.as_str(), "ep_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b");
    }
}
