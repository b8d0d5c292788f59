use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::audit_log;
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: Uuid,
    pub org_id: Uuid,
    pub actor_key_id: Option<Uuid>,
    pub source_ip: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, entry: &AuditEntry) -> QueryResult<()> {
    diesel::insert_into(audit_log::table).values(entry).execute(conn).await.map(|_| ())
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub actor_key_id: Option<Uuid>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    filter: &AuditFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<AuditEntry>> {
    let mut q = audit_log::table.filter(audit_log::org_id.eq(org_id)).select(AuditEntry::as_select()).into_boxed();
    if let Some(a) = &filter.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(t) = &filter.target_id {
        q = q.filter(audit_log::target_id.eq(t.clone()));
    }
    if let Some(k) = filter.actor_key_id {
        q = q.filter(audit_log::actor_key_id.eq(k));
    }
    if let Some(b) = before {
        q = q.filter(audit_log::id.lt(b));
    }
    let rows = q.order(audit_log::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}
