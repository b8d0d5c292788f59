//! Webhook secrets and custom header values at rest: AES-256-GCM under the
//! master key, bound to the endpoint's id.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hookline_domain::crypto::{DecryptError, MasterKey};
use hookline_domain::signing::{SigningKey, WebhookSecret};
use uuid::Uuid;

const HEADER_PREFIX: &str = "enc:v1:";

fn aad(endpoint_id: Uuid, purpose: &str) -> Vec<u8> {
    format!("{purpose}:{}", endpoint_id.simple()).into_bytes()
}

pub fn seal_secret(master: &MasterKey, endpoint_id: Uuid, secret: &WebhookSecret) -> Vec<u8> {
    master.encrypt(secret.expose().as_bytes(), &aad(endpoint_id, "secret"))
}

pub fn open_secret(master: &MasterKey, endpoint_id: Uuid, sealed: &[u8]) -> Result<WebhookSecret, DecryptError> {
    let plain = master.decrypt(sealed, &aad(endpoint_id, "secret"))?;
    let text = String::from_utf8(plain).map_err(|_| DecryptError)?;
    WebhookSecret::parse(&text).map_err(|_| DecryptError)
}

pub fn seal_signing_key(master: &MasterKey, endpoint_id: Uuid, key: &SigningKey) -> Vec<u8> {
    master.encrypt(key.pkcs8(), &aad(endpoint_id, "ed25519"))
}

pub fn open_signing_key(master: &MasterKey, endpoint_id: Uuid, sealed: &[u8]) -> Result<SigningKey, DecryptError> {
    let plain = master.decrypt(sealed, &aad(endpoint_id, "ed25519"))?;
    SigningKey::from_pkcs8(&plain).map_err(|_| DecryptError)
}

/// Custom headers as stored: every value sealed.
pub fn seal_headers(master: &MasterKey, endpoint_id: Uuid, headers: &[(String, String)]) -> serde_json::Value {
    let map = headers
        .iter()
        .map(|(k, v)| {
            let sealed = master.encrypt(v.as_bytes(), &aad(endpoint_id, &format!("header:{k}")));
            (k.clone(), serde_json::Value::String(format!("{HEADER_PREFIX}{}", B64.encode(sealed))))
        })
        .collect();
    serde_json::Value::Object(map)
}

pub fn open_headers(
    master: &MasterKey,
    endpoint_id: Uuid,
    stored: &serde_json::Value,
) -> Result<Vec<(String, String)>, DecryptError> {
    let Some(map) = stored.as_object() else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let text = v.as_str().ok_or(DecryptError)?;
        let sealed = B64.decode(text.strip_prefix(HEADER_PREFIX).ok_or(DecryptError)?).map_err(|_| DecryptError)?;
        let plain = master.decrypt(&sealed, &aad(endpoint_id, &format!("header:{k}")))?;
        out.push((k.clone(), String::from_utf8(plain).map_err(|_| DecryptError)?));
    }
    Ok(out)
}

/// An alert Slack URL (a credential) sealed for its organisation.
pub fn seal_slack_url(master: &MasterKey, org_id: Uuid, url: &str) -> Vec<u8> {
    master.encrypt(url.as_bytes(), &aad(org_id, "slack"))
}

pub fn open_slack_url(master: &MasterKey, org_id: Uuid, sealed: &[u8]) -> Result<String, DecryptError> {
    String::from_utf8(master.decrypt(sealed, &aad(org_id, "slack"))?).map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_headers_round_trip_and_stay_sealed() {
        let master = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let id = Uuid::now_v7();
        let s = WebhookSecret::generate();
        let sealed = seal_secret(&master, id, &s);
        assert!(!String::from_utf8_lossy(&sealed).contains("whsec_"));
        assert_eq!(open_secret(&master, id, &sealed).unwrap(), s);
        assert!(open_secret(&master, Uuid::now_v7(), &sealed).is_err());
        let h = vec![("Authorization".to_owned(), "Bearer hunter2".to_owned())];
        let stored = seal_headers(&master, id, &h);
        assert!(!stored.to_string().contains("hunter2"));
        assert_eq!(open_headers(&master, id, &stored).unwrap(), h);
    }
}
