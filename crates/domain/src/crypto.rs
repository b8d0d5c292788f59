//! Encryption at rest for webhook secrets: AES-256-GCM under the master key.
//!
//! Stored form: `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The
//! endpoint id is bound in as associated data, so a ciphertext copied onto
//! another endpoint's row does not decrypt.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("HOOKLINE_MASTER_KEY must be base64 of exactly 32 bytes")]
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stored secret could not be decrypted (wrong master key or corrupted row)")]
pub struct DecryptError;

pub struct MasterKey {
    key: LessSafeKey,
    raw: [u8; 32],
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let bytes = B64.decode(text.trim()).map_err(|_| MasterKeyError::Invalid)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| MasterKeyError::Invalid)?;
        Ok(Self::from_bytes(raw))
    }

    pub fn from_bytes(raw: [u8; 32]) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32-byte key"));
        Self { key, raw }
    }

    pub fn generate_base64() -> String {
        let mut raw = [0u8; 32];
        SystemRandom::new().fill(&mut raw).expect("system random source failed");
        B64.encode(raw)
    }

    /// A sub-key for another purpose (the API key pepper), derived so that one
    /// configured secret serves both without reuse.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.raw);
        let tag = ring::hmac::sign(&key, purpose.as_bytes());
        tag.as_ref().try_into().expect("32 bytes")
    }

    pub fn encrypt(&self, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system random source failed");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(associated), &mut buf)
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    pub fn decrypt(&self, stored: &[u8], associated: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if stored.len() < NONCE_LEN + 16 {
            return Err(DecryptError);
        }
        let (nonce, rest) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buf = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(associated), &mut buf).map_err(|_| DecryptError)?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Compares two byte strings in time that depends only on their lengths:
/// every byte is visited, and `black_box` keeps the optimiser from turning
/// the accumulation back into an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    #[cfg(test)]
    tests::CONSTANT_TIME_CALLS.with(|c| c.set(c.get() + 1));
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y))) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Calls of [`constant_time_eq`] on this thread, so tests can prove a
        /// comparison of secrets goes through it.
        pub(crate) static CONSTANT_TIME_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// How many constant-time comparisons `f` made.
    pub(crate) fn constant_time_calls(f: impl FnOnce()) -> usize {
        let before = CONSTANT_TIME_CALLS.with(|c| c.get());
        f();
        CONSTANT_TIME_CALLS.with(|c| c.get()) - before
    }

    #[test]
    fn secrets_are_compared_in_constant_time() {
        use crate::api_key::{ApiKey, KeyPepper};
        use crate::signing::{verify_hex, verify_standard, WebhookSecret};
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let secret = WebhookSecret::generate();
        let body = b"{}";
        let hex = secret.sign_hex(body);
        assert_eq!(constant_time_calls(|| assert!(verify_hex(&secret, body, &hex))), 1);
        assert_eq!(constant_time_calls(|| assert!(!verify_hex(&secret, body, "00"))), 1);
        let std = secret.sign_standard("msg_1", 1, body);
        let header = format!("v1,bogus {std}");
        assert_eq!(constant_time_calls(|| assert!(verify_standard(&secret, "msg_1", 1, body, &header))), 2);
        let pepper = KeyPepper::new(b"pepper");
        let key = ApiKey::generate();
        let hash = key.hash(&pepper);
        assert_eq!(constant_time_calls(|| assert!(hash.matches(key.hash(&pepper).as_bytes()))), 1);
    }

    #[test]
    fn round_trips_and_binds_the_associated_data() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = key.encrypt(b"whsec_secret", b"ep_1");
        assert!(!sealed.windows(5).any(|w| w == b"whsec"));
        assert_eq!(key.decrypt(&sealed, b"ep_1").unwrap(), b"whsec_secret");
        assert!(key.decrypt(&sealed, b"ep_2").is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(other.decrypt(&sealed, b"ep_1").is_err());
    }

    #[test]
    fn refuses_keys_of_the_wrong_size() {
        assert!(MasterKey::from_base64("AAAA").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }
}
