//! API keys: `sk_live_<40 base62 characters>`.
//!
//! The body is 34 random base62 characters (about 202 bits) followed by a
//! 6-character base62 checksum of those random characters. The checksum lets
//! every service reject a mistyped or truncated key without touching the
//! database, and the fixed `sk_live_` prefix plus checksum make leaked keys
//! recognisable to secret scanners.
//!
//! Keys are never stored: the database holds `HMAC-SHA256(pepper, key)`
//! ([`KeyHash`]), and the only other trace is the display prefix
//! (`sk_live_ab12…wxyz`).

use std::fmt;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

pub const KEY_PREFIX: &str = "sk_live_";
const RANDOM_LEN: usize = 34;
const CHECKSUM_LEN: usize = 6;
const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key does not start with `sk_live_`")]
    Prefix,
    #[error("the API key has the wrong length")]
    Length,
    #[error("the API key contains characters outside [0-9A-Za-z]")]
    Alphabet,
    #[error("the API key's checksum does not match (mistyped or truncated?)")]
    Checksum,
}

/// A syntactically valid API key. Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Generates a fresh key from the system's secure random source.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let mut random = String::with_capacity(RANDOM_LEN);
        let mut buf = [0u8; 64];
        while random.len() < RANDOM_LEN {
            rng.fill(&mut buf).expect("system random source failed");
            // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
            for b in buf.iter().filter(|b| **b < 248) {
                if random.len() == RANDOM_LEN {
                    break;
                }
                random.push(BASE62[(*b % 62) as usize] as char);
            }
        }
        let checksum = checksum(&random);
        Self(format!("{KEY_PREFIX}{random}{checksum}"))
    }

    pub fn parse(value: &str) -> Result<Self, ApiKeyError> {
        let body = value.strip_prefix(KEY_PREFIX).ok_or(ApiKeyError::Prefix)?;
        if body.len() != BODY_LEN {
            return Err(ApiKeyError::Length);
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiKeyError::Alphabet);
        }
        let (random, sum) = body.split_at(RANDOM_LEN);
        if checksum(random) != sum {
            return Err(ApiKeyError::Checksum);
        }
        Ok(Self(value.to_owned()))
    }

    /// The full secret. Only for showing it once, at creation or rotation.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown after creation: `sk_live_ab12…wxyz`.
    pub fn display_prefix(&self) -> String {
        let body = &self.0[KEY_PREFIX.len()..];
        format!("{KEY_PREFIX}{}…{}", &body[..4], &body[body.len() - 4..])
    }

    /// The keyed hash stored and looked up in place of the key.
    pub fn hash(&self, pepper: &KeyPepper) -> KeyHash {
        let tag = hmac::sign(&pepper.0, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        KeyHash(out)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.display_prefix())
    }
}

fn checksum(random: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, random.as_bytes());
    let mut n = u64::from_be_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"));
    let mut out = [0u8; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

/// The server-side secret mixed into every key hash, so a copy of the
/// database alone cannot be used to test guessed keys.
#[derive(Clone)]
pub struct KeyPepper(hmac::Key);

impl KeyPepper {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl fmt::Debug for KeyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPepper(<redacted>)")
    }
}

/// `HMAC-SHA256(pepper, key)`: what the database stores and indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &[u8]) -> bool {
        crate::crypto::constant_time_eq(&self.0, other)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", hex::encode(&self.0[..4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_PREFIX.len() + BODY_LEN);
        assert_eq!(ApiKey::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn a_single_typo_fails_the_checksum() {
        let key = ApiKey::generate();
        let s = key.expose();
        let i = KEY_PREFIX.len() + 5;
        let c = s.as_bytes()[i];
        let replacement = if c == b'a' { 'b' } else { 'a' };
        let typo = format!("{}{}{}", &s[..i], replacement, &s[i + 1..]);
        assert_eq!(ApiKey::parse(&typo), Err(ApiKeyError::Checksum));
    }

    #[test]
    fn refuses_malformed_keys() {
        assert_eq!(ApiKey::parse("pk_live_abc"), Err(ApiKeyError::Prefix));
        assert_eq!(ApiKey::parse("sk_live_abc"), Err(ApiKeyError::Length));
        let bad = format!("sk_live_{}", "-".repeat(BODY_LEN));
        assert_eq!(ApiKey::parse(&bad), Err(ApiKeyError::Alphabet));
    }

    #[test]
    fn debug_and_display_prefix_hide_the_secret() {
        let key = ApiKey::generate();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&key.expose()[8..]));
        let prefix = key.display_prefix();
        assert!(prefix.starts_with("sk_live_"));
        assert!(prefix.contains('…'));
        assert_eq!(prefix.chars().count(), 8 + 4 + 1 + 4);
    }

    #[test]
    fn hash_depends_on_the_pepper() {
        let key = ApiKey::generate();
        let a = key.hash(&KeyPepper::new(b"one"));
        let b = key.hash(&KeyPepper::new(b"two"));
        assert_ne!(a, b);
        assert!(a.matches(key.hash(&KeyPepper::new(b"one")).as_bytes()));
    }
}
