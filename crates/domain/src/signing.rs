//! Webhook secrets and the two signature schemes every delivery carries.
//!
//! * `X-Webhook-Signature`: lowercase hex `HMAC-SHA256(secret, body)` where the
//!   key is the whole secret string (`whsec_…`) as UTF-8. This is what the
//!   integration guide's Flask and Express receivers compute.
//! * Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`):
//!   `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` where the key is
//!   the base64-decoded part after `whsec_`. The signed timestamp lets
//!   receivers refuse replays.
//!
//! During a secret rotation both secrets sign; the Standard Webhooks header then
//! holds two space-separated `v1,` entries.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

pub const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with `whsec_`")]
    Prefix,
    #[error("a webhook secret's body is base64 of at least 24 bytes")]
    Body,
}

/// A webhook signing secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key_bytes: Vec<u8>,
}

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new().fill(&mut bytes).expect("system random source failed");
        Self { text: format!("{SECRET_PREFIX}{}", B64.encode(bytes)), key_bytes: bytes.to_vec() }
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let body = text.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let key_bytes = B64.decode(body).map_err(|_| SecretError::Body)?;
        if key_bytes.len() < 24 {
            return Err(SecretError::Body);
        }
        Ok(Self { text: text.to_owned(), key_bytes })
    }

    /// The secret as the receiver configures it. Shown only at creation and rotation.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of the raw body, keyed
    /// with the secret string's UTF-8 bytes.
    pub fn sign_hex(&self, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.text.as_bytes());
        hex::encode(hmac::sign(&key, body).as_ref())
    }

    /// One Standard Webhooks `v1,<base64>` entry.
    pub fn sign_standard(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key_bytes);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(msg_id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", B64.encode(ctx.sign().as_ref()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The signature headers of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `X-Webhook-Signature`: hex signature with the secret receivers hold
    /// (the previous one during a rotation's grace period).
    pub legacy: String,
    /// `webhook-signature`: space-separated `v1,` entries.
    pub standard: String,
}

/// Signs a body with the current secret and, during a rotation, the previous one.
///
/// `webhook-signature` lists both (`v1,<new> v1,<old>`), so a Standard
/// Webhooks receiver verifies with either secret. `X-Webhook-Signature` can
/// carry only one value (the guide's receivers compare it to one expected
/// string), so during the grace period it is signed with the previous
/// secret: receivers written to the guide keep working unmodified through
/// the whole grace period and switch to the new secret when it ends.
pub fn sign_delivery(
    current: &WebhookSecret,
    previous: Option<&WebhookSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Signatures {
    let mut standard = current.sign_standard(msg_id, timestamp, body);
    if let Some(prev) = previous {
        standard.push(' ');
        standard.push_str(&prev.sign_standard(msg_id, timestamp, body));
    }
    Signatures { legacy: previous.unwrap_or(current).sign_hex(body), standard }
}

/// How an endpoint's deliveries are signed.
///
/// * `hex`: `X-Webhook-Signature` is bare hex; `webhook-signature` holds `v1,` HMAC entries.
/// * `sha256_prefixed`: `X-Webhook-Signature: sha256=<hex>`, as receivers of
///   other webhook systems check it; `webhook-signature` as with `hex`.
/// * `ed25519`: `X-Webhook-Signature` is bare hex; `webhook-signature` holds a
///   `v1a,` Ed25519 signature that receivers verify with the endpoint's public
///   key alone (Standard Webhooks' asymmetric scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureFormat {
    #[default]
    Hex,
    Sha256Prefixed,
    Ed25519,
}

impl SignatureFormat {
    pub const ALL: [Self; 3] = [Self::Hex, Self::Sha256Prefixed, Self::Ed25519];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Sha256Prefixed => "sha256_prefixed",
            Self::Ed25519 => "ed25519",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The `X-Webhook-Signature` value for a hex HMAC.
    pub fn header(self, hex: &str) -> String {
        match self {
            Self::Hex | Self::Ed25519 => hex.to_owned(),
            Self::Sha256Prefixed => format!("sha256={hex}"),
        }
    }
}

pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// An endpoint's Ed25519 signing key (PKCS#8, as stored sealed). It never
/// leaves Hookline; receivers get [`SigningKey::public_key`]. `Debug` never shows it.
pub struct SigningKey {
    pair: ring::signature::Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    pub fn generate() -> Self {
        let doc =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("system random source failed");
        Self::from_pkcs8(doc.as_ref()).expect("ring reads its own key")
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SecretError> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SecretError::Body)?;
        Ok(Self { pair, pkcs8: pkcs8.to_vec() })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// `whpk_<base64 of the 32-byte public key>`, what receivers configure.
    pub fn public_key(&self) -> String {
        use ring::signature::KeyPair;
        format!("{PUBLIC_KEY_PREFIX}{}", B64.encode(self.pair.public_key().as_ref()))
    }

    /// One Standard Webhooks `v1a,<base64>` entry over `{id}.{timestamp}.{body}`.
    pub fn sign_standard(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let msg = [msg_id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body].concat();
        format!("v1a,{}", B64.encode(self.pair.sign(&msg).as_ref()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Verifies a `webhook-signature` header's `v1a,` entries against a
/// `whpk_…` public key (used by tests and the docs' examples).
pub fn verify_ed25519(public_key: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = public_key.strip_prefix(PUBLIC_KEY_PREFIX).and_then(|k| B64.decode(k).ok()) else {
        return false;
    };
    let msg = [msg_id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body].concat();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1a,"))
        .filter_map(|sig| B64.decode(sig).ok())
        .any(|sig| key.verify(&msg, &sig).is_ok())
}

/// Verifies a Standard Webhooks header against a secret (used by tests, the
/// CLI and the docs' examples).
pub fn verify_standard(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = secret.sign_standard(msg_id, timestamp, body);
    header.split(' ').any(|candidate| crate::crypto::constant_time_eq(candidate.as_bytes(), expected.as_bytes()))
}

/// Verifies an `X-Webhook-Signature` header.
pub fn verify_hex(secret: &WebhookSecret, body: &[u8], header: &str) -> bool {
    let expected = secret.sign_hex(body);
    crate::crypto::constant_time_eq(header.as_bytes(), expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_signature_matches_the_guides_scheme() {
        // HMAC-SHA256 keyed with the secret string, hex encoded: what Python's
        // hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest() gives.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign_hex(b"{\"event\":\"new_lead\"}");
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(verify_hex(&secret, b"{\"event\":\"new_lead\"}", &sig));
        assert!(!verify_hex(&secret, b"{\"event\":\"lead_update\"}", &sig));
    }

    #[test]
    fn standard_signature_matches_the_published_test_vector() {
        // The Standard Webhooks specification's example.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ed25519_signatures_verify_with_the_public_key_only() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(key.public_key().starts_with("whpk_"));
        let sig = key.sign_standard("dlv_1", 1700000000, b"{}");
        assert!(sig.starts_with("v1a,"));
        assert!(verify_ed25519(&key.public_key(), "dlv_1", 1700000000, b"{}", &sig));
        assert!(!verify_ed25519(&key.public_key(), "dlv_1", 1700000001, b"{}", &sig), "the timestamp is signed");
        assert!(!verify_ed25519(&SigningKey::generate().public_key(), "dlv_1", 1700000000, b"{}", &sig));
        assert!(!format!("{key:?}").contains(&B64.encode(key.pkcs8())));
    }

    #[test]
    fn rotation_signs_with_both_secrets() {
        let new = WebhookSecret::generate();
        let old = WebhookSecret::generate();
        let sigs = sign_delivery(&new, Some(&old), "dlv_1", 1700000000, b"{}");
        assert_eq!(sigs.standard.split(' ').count(), 2);
        assert!(verify_standard(&old, "dlv_1", 1700000000, b"{}", &sigs.standard));
        assert!(verify_standard(&new, "dlv_1", 1700000000, b"{}", &sigs.standard));
        assert!(
            verify_hex(&old, b"{}", &sigs.legacy),
            "the guide's header keeps the old secret during the grace period"
        );
        let after = sign_delivery(&new, None, "dlv_1", 1700000000, b"{}");
        assert!(verify_hex(&new, b"{}", &after.legacy));
    }

    #[test]
    fn parse_refuses_short_or_foreign_secrets() {
        assert_eq!(WebhookSecret::parse("sk_abc"), Err(SecretError::Prefix));
        assert_eq!(WebhookSecret::parse("whsec_AAAA"), Err(SecretError::Body));
        let s = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(s.expose()).unwrap(), s);
        assert!(!format!("{s:?}").contains(s.expose()));
    }
}
