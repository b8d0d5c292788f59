//! Portal sessions: short-lived links that open an organisation's portal.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{OrgId, PortalSessionId};
use uuid::Uuid;

use crate::schema::portal_sessions;
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = portal_sessions)]
pub struct PortalSessionRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub token_hash: Vec<u8>,
    /// `manage` or `view`.
    pub mode: String,
    /// The endpoints the link is for; `None` is all of them.
    pub webhook_ids: Option<Vec<Uuid>>,
    pub created_by_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &PortalSessionRow) -> QueryResult<PortalSessionRow> {
    diesel::insert_into(portal_sessions::table)
        .values(row)
        .returning(PortalSessionRow::as_returning())
        .get_result(conn)
        .await
}

/// The session a token opens, whatever its state (the caller checks expiry and revocation).
pub async fn by_token(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<Option<PortalSessionRow>> {
    portal_sessions::table
        .filter(portal_sessions::token_hash.eq(token_hash))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: PortalSessionId,
) -> QueryResult<Option<PortalSessionRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    portal_sessions::table
        .filter(portal_sessions::org_id.eq(org_id))
        .filter(portal_sessions::id.eq(id))
        .select(PortalSessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<PortalSessionRow>> {
    let mut q = portal_sessions::table
        .filter(portal_sessions::org_id.eq(org_id))
        .select(PortalSessionRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(portal_sessions::id.lt(b));
    }
    let rows = q.order(portal_sessions::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

/// Revokes a session (once: a second call keeps the first time). `None` when the org has no such session.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: PortalSessionId,
) -> QueryResult<Option<PortalSessionRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    diesel::update(portal_sessions::table.filter(portal_sessions::org_id.eq(org_id)).filter(portal_sessions::id.eq(id)))
        .set(portal_sessions::revoked_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(revoked_at, now())")))
        .returning(PortalSessionRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Removes sessions that ended more than a day ago.
pub async fn delete_ended(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::days(1);
    diesel::delete(portal_sessions::table.filter(portal_sessions::expires_at.lt(cutoff))).execute(conn).await
}
