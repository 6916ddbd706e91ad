//! Credentials: endpoint signing secrets and project API keys. Neither type
//! prints its value through `Debug` or `Display`, so a stray `{:?}` in a log
//! line cannot leak one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::Invalid;

/// A signing secret. Generated ones use the Standard Webhooks form
/// `whsec_<base64 of 32 random bytes>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 512;
    const PREFIX: &'static str = "whsec_";

    pub fn generate(random: [u8; 32]) -> Self {
        Self(format!("{}{}", Self::PREFIX, STANDARD.encode(random)))
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&raw.len()) {
            return Err(Invalid::new(format!(
                "must be {} to {} characters",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::new("must be printable ASCII without spaces"));
        }
        if let Some(encoded) = raw.strip_prefix(Self::PREFIX) {
            match STANDARD.decode(encoded) {
                Ok(key) if key.len() >= 16 => {}
                _ => {
                    return Err(Invalid::new(
                        "a `whsec_` secret must be followed by base64 of at least 16 bytes",
                    ));
                }
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// The secret's text, for signing and for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A stored signing secret with the instant it stops signing, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub secret: Secret,
    pub expires_at: Option<super::time::Timestamp>,
}

impl SecretVersion {
    pub fn valid_at(&self, now: super::time::Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// How long the secrets that were current keep signing after a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    default_grace: std::time::Duration,
    max_grace: std::time::Duration,
}

impl RotationPolicy {
    /// Secrets valid at once, at most: the new one and a couple still
    /// draining. More would only mean receivers checking stale keys.
    pub const MAX_VALID: usize = 3;

    pub fn new(
        default_grace: std::time::Duration,
        max_grace: std::time::Duration,
    ) -> Result<Self, Invalid> {
        if default_grace > max_grace {
            return Err(Invalid::new("the default grace period exceeds the maximum"));
        }
        Ok(Self {
            default_grace,
            max_grace,
        })
    }

    /// When the current secrets stop signing, given the requested grace in
    /// seconds (`None`: the default).
    pub fn current_until(
        &self,
        requested_seconds: Option<u32>,
        now: super::time::Timestamp,
    ) -> Result<super::time::Timestamp, Invalid> {
        let grace = requested_seconds.map_or(self.default_grace, |s| {
            std::time::Duration::from_secs(u64::from(s))
        });
        if grace > self.max_grace {
            return Err(Invalid::new(format!(
                "must be at most {} seconds",
                self.max_grace.as_secs()
            )));
        }
        let micros = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
        Ok(super::time::Timestamp::from_unix_micros(
            now.unix_micros().saturating_add(micros),
        ))
    }
}

impl Default for RotationPolicy {
    /// An hour for receivers to pick up the new secret; a week at most.
    fn default() -> Self {
        Self {
            default_grace: std::time::Duration::from_secs(3600),
            max_grace: std::time::Duration::from_secs(7 * 86_400),
        }
    }
}

/// A project API key as the client holds it: `hk_` + base64url of 32 random
/// bytes (256 bits). Only its SHA-256 is stored: keys are random, not
/// passwords, so a fast hash is enough and lets every call look one up by
/// index.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    const PREFIX: &'static str = "hk_";

    pub fn generate(random: [u8; 32]) -> Self {
        Self(format!(
            "{}{}",
            Self::PREFIX,
            URL_SAFE_NO_PAD.encode(random)
        ))
    }

    /// Anything the client sent; a malformed key simply never matches a hash.
    pub fn from_presented(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn hash(&self) -> ApiKeyHash {
        let digest = Sha256::digest(self.0.as_bytes());
        ApiKeyHash(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The first characters, enough for a person to tell keys apart.
    pub fn display_prefix(&self) -> String {
        self.0.chars().take(10).collect()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Hex SHA-256 of an API key: what the store keeps and looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_standard_webhooks_form() {
        let secret = Secret::generate([7; 32]);
        assert!(secret.expose().starts_with("whsec_"));
        assert!(Secret::parse(secret.expose()).is_ok());
    }

    #[test]
    fn secrets_and_keys_never_print_their_value() {
        let secret = Secret::generate([1; 32]);
        let key = ApiKey::generate([2; 32]);
        assert!(!format!("{secret:?}").contains(secret.expose()));
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn secret_rules() {
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("has a space in it").is_err());
        assert!(Secret::parse("whsec_%%%notbase64").is_err());
        assert!(Secret::parse("plain-secret-123").is_ok());
        assert!(Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
    }

    #[test]
    fn rotation_grace_defaults_and_is_bounded() {
        let policy = RotationPolicy::default();
        let now = super::super::time::Timestamp::from_unix_micros(0);
        assert_eq!(
            policy.current_until(None, now).unwrap().unix_micros(),
            3_600_000_000
        );
        assert_eq!(policy.current_until(Some(0), now).unwrap(), now);
        assert!(policy.current_until(Some(7 * 86_400 + 1), now).is_err());
        assert!(
            RotationPolicy::new(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5)
            )
            .is_err()
        );
    }

    #[test]
    fn api_key_hash_is_sha256_hex() {
        let key = ApiKey::from_presented("abc");
        assert_eq!(
            key.hash().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(ApiKey::generate([0; 32]).expose().starts_with("hk_"));
    }
}
