//! What the control API answers with.

use chrono::{DateTime, Utc};
use hookline_domain::id::{AuditId, KeyId, OrgId};
use hookline_domain::scope::{Role, Scope};
use hookline_store::audit::AuditEntry;
use hookline_store::keys::KeyRow;
use serde::{Deserialize, Deserializer, Serialize};

/// An API key. `key` (the secret) is present only in the answer that created
/// or rotated it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "key_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e",
    "name": "CRM production",
    "description": null,
    "role": "read_write",
    "scopes": ["deliveries:read", "deliveries:retry", "events:write"],
    "prefix": "sk_live_ab12…wxyz",
    "rate_limit_per_hour": 1000,
    "allowed_ips": ["203.0.113.0/24"],
    "expires_at": null,
    "revoked_at": null,
    "last_used_at": "2026-11-23T10:15:00Z",
    "previous_secret_expires_at": null,
    "created_at": "2026-11-01T09:00:00Z",
    "updated_at": "2026-11-01T09:00:00Z"
}))]
pub struct KeyView {
    pub id: KeyId,
    pub org_id: OrgId,
    pub name: String,
    pub description: Option<String>,
    pub role: Role,
    pub scopes: Vec<Scope>,
    /// Enough of the key to recognise it: `sk_live_ab12…wxyz`.
    pub prefix: String,
    pub rate_limit_per_hour: i32,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Until when the secret replaced by the last rotation keeps working.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The full key. Shown once; store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyView {
    pub fn from_row(row: KeyRow, secret: Option<String>) -> Self {
        let now = Utc::now();
        Self {
            id: KeyId::from_uuid(row.id),
            org_id: OrgId::from_uuid(row.org_id),
            name: row.name,
            description: row.description,
            role: row.role.parse().unwrap_or(Role::ReadOnly),
            scopes: row.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            prefix: row.display_prefix,
            rate_limit_per_hour: row.rate_limit_per_hour,
            allowed_ips: row.allowed_ips,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            previous_secret_expires_at: row.previous_expires_at.filter(|t| *t > now),
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: secret,
        }
    }
}

/// An organisation, with its first admin key (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgCreated {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub api_key: KeyView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: AuditId,
    /// The key that acted; null when the operator did.
    pub actor_key_id: Option<KeyId>,
    pub source_ip: Option<String>,
    /// e.g. `key.created`, `key.revoked`, `webhook.updated`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: AuditId::from_uuid(e.id),
            actor_key_id: e.actor_key_id.map(KeyId::from_uuid),
            source_ip: e.source_ip,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            details: e.details,
            created_at: e.created_at,
        }
    }
}

/// For PATCH bodies: tells "absent" (`None`) from "null" (`Some(None)`).
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An event as its delivery body carries it, with its id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventBody {
    pub event_id: hookline_domain::id::EventId,
    pub event: String,
    /// RFC 3339.
    pub timestamp: String,
    pub data: serde_json::Value,
}
