//! Keyset pagination. A page token names the last id of the previous page and
//! a fingerprint of the filters it was made for, so ids created meanwhile can
//! neither shift a page (no gaps, no repeats) nor be asked for under other
//! filters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 1000;

    /// 0 means the default.
    pub fn new(requested: i32) -> Result<Self, Invalid> {
        match requested {
            0 => Ok(Self(Self::DEFAULT)),
            n if n > 0 && n as u32 <= Self::MAX => Ok(Self(n as u32)),
            _ => Err(Invalid::new(format!(
                "must be between 1 and {} (0 for the default of {})",
                Self::MAX,
                Self::DEFAULT
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// The id after which the next page starts.
    pub after: String,
    fingerprint: String,
}

impl PageToken {
    const VERSION: &'static str = "v1";

    /// `filters` is any stable text rendering of the request's filters.
    pub fn new(after: String, filters: &str) -> Self {
        Self {
            after,
            fingerprint: fingerprint(filters),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}|{}",
            Self::VERSION,
            self.fingerprint,
            self.after
        ))
    }

    /// An empty token means "the first page".
    pub fn decode(raw: &str, filters: &str) -> Result<Option<Self>, Invalid> {
        if raw.is_empty() {
            return Ok(None);
        }
        let malformed = || Invalid::new("is not a token returned by this list call");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let mut parts = text.splitn(3, '|');
        let (Some(Self::VERSION), Some(print), Some(after)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if after.is_empty() {
            return Err(malformed());
        }
        if print != fingerprint(filters) {
            return Err(Invalid::new(
                "was issued for different filters; repeat the same filters or start over",
            ));
        }
        Ok(Some(Self::new(after.to_owned(), filters)))
    }
}

fn fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        assert_eq!(PageSize::new(0).unwrap().get(), 50);
        assert_eq!(PageSize::new(1000).unwrap().get(), 1000);
        assert!(PageSize::new(1001).is_err());
        assert!(PageSize::new(-1).is_err());
    }

    #[test]
    fn token_round_trips_under_the_same_filters_only() {
        let token = PageToken::new("ep_x".into(), "owner=a").encode();
        assert_eq!(
            PageToken::decode(&token, "owner=a").unwrap().unwrap().after,
            "ep_x"
        );
        assert!(PageToken::decode(&token, "owner=b").is_err());
        assert!(PageToken::decode("garbage!", "").is_err());
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode("v9|x|y"), "").is_err());
        assert_eq!(PageToken::decode("", "").unwrap(), None);
    }
}
