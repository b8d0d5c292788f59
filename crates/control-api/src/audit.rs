//! Writing the audit log: every change made through the control plane.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use hookline_domain::id::{AuditId, OrgId};
use hookline_service_kit::auth::Principal;
use hookline_store::audit::AuditEntry;

/// Who acted: a key (with its address) or the operator.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Key(&'a Principal),
    Operator(Option<std::net::IpAddr>),
}

pub async fn record(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    actor: Actor<'_>,
    action: &str,
    target_type: &str,
    target_id: &str,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
    let (actor_key_id, source_ip) = match actor {
        Actor::Key(p) => (Some(p.key_id.as_uuid()), p.client_ip),
        Actor::Operator(ip) => (None, ip),
    };
    hookline_store::audit::insert(
        conn,
        &AuditEntry {
            id: AuditId::new().as_uuid(),
            org_id: org_id.as_uuid(),
            actor_key_id,
            source_ip: source_ip.map(|ip| ip.to_string()),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id: target_id.to_owned(),
            details,
            created_at: Utc::now(),
        },
    )
    .await
}
