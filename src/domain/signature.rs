//! Webhook signatures, always computed over the exact bytes sent.
//!
//! - Convoy advanced (default): `X-Convoy-Signature: t=<unix>,v1=<sig>[,v1=<sig>…]`,
//!   `sig = HMAC(secret, "<unix>,<body>")`, one `v1` per valid secret, so a
//!   receiver still verifies during a rotation.
//! - Convoy simple: `X-Convoy-Signature: <sig>`, `HMAC(secret, body)` with the
//!   newest secret only (the format has no room for more).
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64>[ v1,<base64>…]` over
//!   `"<id>.<timestamp>.<body>"`, keyed by the base64 part of `whsec_` secrets.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

use super::Invalid;
use super::secret::Secret;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureScheme {
    #[default]
    ConvoyAdvanced,
    ConvoySimple,
    StandardWebhooks,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashAlgorithm {
    #[default]
    Sha256,
    Sha512,
}

/// How a Convoy signature is written out; Standard Webhooks is always base64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConvoyAdvanced => "convoy_advanced",
            Self::ConvoySimple => "convoy_simple",
            Self::StandardWebhooks => "standard_webhooks",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        [
            Self::ConvoyAdvanced,
            Self::ConvoySimple,
            Self::StandardWebhooks,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

impl HashAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

impl SignatureEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        [Self::Hex, Self::Base64]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureConfig {
    scheme: SignatureScheme,
    hash: HashAlgorithm,
    encoding: SignatureEncoding,
}

impl SignatureConfig {
    /// Standard Webhooks `v1` is HMAC-SHA256 in base64 by definition, so it
    /// refuses other choices rather than emit signatures no library checks.
    pub fn new(
        scheme: SignatureScheme,
        hash: HashAlgorithm,
        encoding: SignatureEncoding,
    ) -> Result<Self, Invalid> {
        if scheme == SignatureScheme::StandardWebhooks
            && (hash != HashAlgorithm::Sha256 || encoding != SignatureEncoding::Hex)
        {
            return Err(Invalid::new(
                "Standard Webhooks signatures are always HMAC-SHA256 in base64; leave hash and encoding unset",
            ));
        }
        Ok(Self {
            scheme,
            hash,
            encoding,
        })
    }

    pub fn scheme(self) -> SignatureScheme {
        self.scheme
    }

    pub fn hash(self) -> HashAlgorithm {
        self.hash
    }

    pub fn encoding(self) -> SignatureEncoding {
        self.encoding
    }

    /// The headers that sign `body`. `secrets` are the currently valid ones,
    /// newest first; `message_id` is the delivery id receivers de-duplicate on.
    pub fn sign(
        self,
        secrets: &[Secret],
        unix_seconds: i64,
        message_id: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let Some(newest) = secrets.first() else {
            return Vec::new();
        };
        match self.scheme {
            SignatureScheme::ConvoyAdvanced => {
                let prefix = format!("{unix_seconds},");
                let mut value = format!("t={unix_seconds}");
                for secret in secrets {
                    let mac = self.mac(secret.expose().as_bytes(), &[prefix.as_bytes(), body]);
                    value.push_str(",v1=");
                    value.push_str(&self.encode(&mac));
                }
                vec![("x-convoy-signature", value)]
            }
            SignatureScheme::ConvoySimple => {
                let mac = self.mac(newest.expose().as_bytes(), &[body]);
                vec![("x-convoy-signature", self.encode(&mac))]
            }
            SignatureScheme::StandardWebhooks => {
                let prefix = format!("{message_id}.{unix_seconds}.");
                let signatures: Vec<String> = secrets
                    .iter()
                    .map(|secret| {
                        let mac =
                            self.mac(&standard_webhooks_key(secret), &[prefix.as_bytes(), body]);
                        format!("v1,{}", STANDARD.encode(mac))
                    })
                    .collect();
                vec![
                    ("webhook-id", message_id.to_owned()),
                    ("webhook-timestamp", unix_seconds.to_string()),
                    ("webhook-signature", signatures.join(" ")),
                ]
            }
        }
    }

    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac =
                <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self.hash {
            HashAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
            HashAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    fn encode(self, mac: &[u8]) -> String {
        match self.encoding {
            SignatureEncoding::Hex => {
                let mut text = vec![0; mac.len() * 2];
                hex::encode_to_slice(mac, &mut text).expect("sized for the MAC");
                String::from_utf8(text).expect("hex digits are ASCII")
            }
            SignatureEncoding::Base64 => STANDARD.encode(mac),
        }
    }
}

/// `whsec_<base64>` secrets sign with the decoded bytes (as every Standard
/// Webhooks library does); any other secret with its own bytes.
fn standard_webhooks_key(secret: &Secret) -> Vec<u8> {
    secret
        .expose()
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.expose().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python's hmac module.
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const TS: i64 = 1_649_367_553;

    fn secret(s: &str) -> Secret {
        Secret::parse(s).unwrap()
    }

    fn config(
        scheme: SignatureScheme,
        hash: HashAlgorithm,
        encoding: SignatureEncoding,
    ) -> SignatureConfig {
        SignatureConfig::new(scheme, hash, encoding).unwrap()
    }

    #[test]
    fn standard_webhooks_spec_vector() {
        let headers = SignatureConfig::new(
            SignatureScheme::StandardWebhooks,
            HashAlgorithm::Sha256,
            SignatureEncoding::Hex,
        )
        .unwrap()
        .sign(
            &[secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")],
            TS,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            BODY,
        );
        assert_eq!(
            headers,
            vec![
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".to_string()),
                ("webhook-timestamp", "1649367553".to_string()),
                (
                    "webhook-signature",
                    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()
                ),
            ]
        );
    }

    #[test]
    fn convoy_advanced_signs_with_every_valid_secret() {
        let headers = SignatureConfig::default().sign(
            &[secret("convoy-secret-1"), secret("convoy-secret-2")],
            TS,
            "dlv",
            BODY,
        );
        assert_eq!(
            headers,
            vec![(
                "x-convoy-signature",
                "t=1649367553,\
                 v1=97255c24f4c4664d78cd7b94fc54d5ace06b6c63079dcc5cfb4541c402c88f52,\
                 v1=5defefab4867184d7789143966f906df3cc84b62433a938c80726bb3078a920e"
                    .to_string()
            )]
        );
    }

    #[test]
    fn convoy_advanced_sha512_base64() {
        let headers = config(
            SignatureScheme::ConvoyAdvanced,
            HashAlgorithm::Sha512,
            SignatureEncoding::Base64,
        )
        .sign(&[secret("convoy-secret-1")], TS, "dlv", BODY);
        assert_eq!(
            headers[0].1,
            "t=1649367553,v1=d8KFBdtAf/Ljf+baGvo8Q3msExYEAP4drr1njwztA/SFu/FK7q9q6Wr7Q5POaDGcHE1wBgyY3fyQi5xZQuKjtQ=="
        );
    }

    #[test]
    fn convoy_simple_uses_the_newest_secret_only() {
        let headers = config(
            SignatureScheme::ConvoySimple,
            HashAlgorithm::Sha256,
            SignatureEncoding::Hex,
        )
        .sign(
            &[secret("convoy-secret-1"), secret("convoy-secret-2")],
            TS,
            "dlv",
            BODY,
        );
        assert_eq!(
            headers,
            vec![(
                "x-convoy-signature",
                "10ce80f2373f7a1e58b7dea2f4ff426bcf42f8e2924f29fd6e6410871784e6d9".to_string()
            )]
        );
    }

    #[test]
    fn standard_webhooks_lists_several_signatures_space_separated() {
        let headers = config(
            SignatureScheme::StandardWebhooks,
            HashAlgorithm::Sha256,
            SignatureEncoding::Hex,
        )
        .sign(
            &[
                secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
                secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            ],
            TS,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            BODY,
        );
        let sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        assert_eq!(headers[2].1, format!("{sig} {sig}"));
    }

    #[test]
    fn standard_webhooks_refuses_other_hashes_and_encodings() {
        assert!(
            SignatureConfig::new(
                SignatureScheme::StandardWebhooks,
                HashAlgorithm::Sha512,
                SignatureEncoding::Hex
            )
            .is_err()
        );
        assert!(
            SignatureConfig::new(
                SignatureScheme::StandardWebhooks,
                HashAlgorithm::Sha256,
                SignatureEncoding::Base64
            )
            .is_err()
        );
    }

    #[test]
    fn no_secret_no_signature() {
        assert!(
            SignatureConfig::default()
                .sign(&[], TS, "dlv", BODY)
                .is_empty()
        );
    }
}
