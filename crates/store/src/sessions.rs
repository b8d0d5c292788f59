//! Admin UI sessions, keyed by a hash of the browser's session token.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::keys::KeyRow;
use crate::schema::{admin_sessions, api_keys};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admin_sessions)]
pub struct SessionRow {
    pub token_hash: Vec<u8>,
    pub org_id: Uuid,
    pub key_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(admin_sessions::table).values(row).execute(conn).await.map(|_| ())
}

/// The session's key when the session is neither idle longer than `idle`
/// nor past its absolute expiry; marks it as seen now. The key is returned
/// as stored: the caller checks revocation and expiry.
pub async fn touch(conn: &mut AsyncPgConnection, token_hash: &[u8], idle: Duration) -> QueryResult<Option<KeyRow>> {
    let now = Utc::now();
    let key_id: Option<Uuid> = diesel::update(
        admin_sessions::table
            .filter(admin_sessions::token_hash.eq(token_hash))
            .filter(admin_sessions::last_seen_at.gt(now - idle))
            .filter(admin_sessions::expires_at.gt(now)),
    )
    .set(admin_sessions::last_seen_at.eq(now))
    .returning(admin_sessions::key_id)
    .get_result(conn)
    .await
    .optional()?;
    let Some(key_id) = key_id else { return Ok(None) };
    api_keys::table.filter(api_keys::id.eq(key_id)).select(KeyRow::as_select()).first(conn).await.optional()
}

/// Ends every session signed in with the key (it was rotated or revoked).
pub async fn delete_for_key(conn: &mut AsyncPgConnection, key_id: Uuid) -> QueryResult<usize> {
    diesel::delete(admin_sessions::table.filter(admin_sessions::key_id.eq(key_id))).execute(conn).await
}

pub async fn delete(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<usize> {
    diesel::delete(admin_sessions::table.filter(admin_sessions::token_hash.eq(token_hash))).execute(conn).await
}

/// Removes sessions past their absolute expiry or idle longer than `idle`.
pub async fn prune(conn: &mut AsyncPgConnection, idle: Duration) -> QueryResult<usize> {
    let now = Utc::now();
    diesel::delete(
        admin_sessions::table
            .filter(admin_sessions::expires_at.le(now).or(admin_sessions::last_seen_at.le(now - idle))),
    )
    .execute(conn)
    .await
}
