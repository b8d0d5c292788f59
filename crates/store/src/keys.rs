use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{KeyId, OrgId};
use uuid::Uuid;

use crate::schema::{api_key_usage, api_keys};
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub role: String,
    pub scopes: Vec<String>,
    pub key_hash: Vec<u8>,
    pub display_prefix: String,
    pub previous_key_hash: Option<Vec<u8>>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_hour: i32,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_by_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &KeyRow) -> QueryResult<KeyRow> {
    diesel::insert_into(api_keys::table).values(row).returning(KeyRow::as_returning()).get_result(conn).await
}

/// The key whose current secret, or whose previous secret still within its
/// grace period, hashes to `hash`. Revoked and expired keys are returned too:
/// the caller tells those apart to answer precisely.
pub async fn find_by_hash(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<Option<(KeyRow, bool)>> {
    let current =
        api_keys::table.filter(api_keys::key_hash.eq(hash)).select(KeyRow::as_select()).first(conn).await.optional()?;
    if let Some(row) = current {
        return Ok(Some((row, false)));
    }
    let previous = api_keys::table
        .filter(api_keys::previous_key_hash.eq(hash))
        .filter(api_keys::previous_expires_at.gt(diesel::dsl::now))
        .select(KeyRow::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(previous.map(|r| (r, true)))
}

pub async fn get(conn: &mut AsyncPgConnection, org_id: OrgId, id: KeyId) -> QueryResult<Option<KeyRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    api_keys::table
        .filter(api_keys::org_id.eq(org_id))
        .filter(api_keys::id.eq(id))
        .select(KeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

#[derive(Debug, Default)]
pub struct KeyFilter {
    pub role: Option<String>,
    pub revoked: Option<bool>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    filter: &KeyFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<KeyRow>> {
    let mut q = api_keys::table.filter(api_keys::org_id.eq(org_id)).select(KeyRow::as_select()).into_boxed();
    if let Some(role) = &filter.role {
        q = q.filter(api_keys::role.eq(role.clone()));
    }
    match filter.revoked {
        Some(true) => q = q.filter(api_keys::revoked_at.is_not_null()),
        Some(false) => q = q.filter(api_keys::revoked_at.is_null()),
        None => {}
    }
    if let Some(b) = before {
        q = q.filter(api_keys::id.lt(b));
    }
    let rows = q.order(api_keys::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

pub async fn count_active(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::org_id.eq(org_id))
        .filter(api_keys::revoked_at.is_null())
        .count()
        .get_result(conn)
        .await
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = api_keys)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub rate_limit_per_hour: Option<i32>,
    pub allowed_ips: Option<Vec<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: KeyId,
    mut changes: KeyChanges,
) -> QueryResult<Option<KeyRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    changes.updated_at = Some(Utc::now());
    diesel::update(api_keys::table.filter(api_keys::org_id.eq(org_id)).filter(api_keys::id.eq(id)))
        .set(&changes)
        .returning(KeyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Revokes a key; revoking twice keeps the first time.
pub async fn revoke(conn: &mut AsyncPgConnection, org_id: OrgId, id: KeyId) -> QueryResult<Option<KeyRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    diesel::update(api_keys::table.filter(api_keys::org_id.eq(org_id)).filter(api_keys::id.eq(id)))
        .set((
            api_keys::revoked_at.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(
                "coalesce(revoked_at, now())",
            )),
            api_keys::updated_at.eq(diesel::dsl::now),
        ))
        .returning(KeyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Replaces the key's secret; the old one stays valid until `previous_expires_at`
/// (or stops at once when that is `None`).
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: KeyId,
    new_hash: &[u8],
    display_prefix: &str,
    previous_expires_at: Option<DateTime<Utc>>,
) -> QueryResult<Option<KeyRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    let target = api_keys::table
        .filter(api_keys::org_id.eq(org_id))
        .filter(api_keys::id.eq(id))
        .filter(api_keys::revoked_at.is_null());
    let result = match previous_expires_at {
        Some(until) => {
            diesel::update(target)
                .set((
                    api_keys::previous_key_hash.eq(api_keys::key_hash.nullable()),
                    api_keys::previous_expires_at.eq(Some(until)),
                    api_keys::key_hash.eq(new_hash),
                    api_keys::display_prefix.eq(display_prefix),
                    api_keys::updated_at.eq(diesel::dsl::now),
                ))
                .returning(KeyRow::as_returning())
                .get_result(conn)
                .await
        }
        None => {
            diesel::update(target)
                .set((
                    api_keys::previous_key_hash.eq(None::<Vec<u8>>),
                    api_keys::previous_expires_at.eq(None::<DateTime<Utc>>),
                    api_keys::key_hash.eq(new_hash),
                    api_keys::display_prefix.eq(display_prefix),
                    api_keys::updated_at.eq(diesel::dsl::now),
                ))
                .returning(KeyRow::as_returning())
                .get_result(conn)
                .await
        }
    };
    result.optional()
}

/// Per-key counters accumulated in memory and flushed together.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_key_usage)]
pub struct UsageIncrement {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub hour: DateTime<Utc>,
    pub requests: i64,
    pub rate_limited: i64,
}

pub async fn add_usage(conn: &mut AsyncPgConnection, rows: &[UsageIncrement]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(api_key_usage::table)
        .values(rows)
        .on_conflict((api_key_usage::key_id, api_key_usage::hour))
        .do_update()
        .set((
            api_key_usage::requests.eq(api_key_usage::requests + excluded(api_key_usage::requests)),
            api_key_usage::rate_limited.eq(api_key_usage::rate_limited + excluded(api_key_usage::rate_limited)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Sets `last_used_at` for keys seen since the last flush (never moves it back).
pub async fn touch_last_used(conn: &mut AsyncPgConnection, seen: &[(Uuid, DateTime<Utc>)]) -> QueryResult<()> {
    for (id, at) in seen {
        diesel::update(api_keys::table.filter(api_keys::id.eq(id)))
            .set(api_keys::last_used_at.eq(Some(*at)))
            .filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.lt(*at)))
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_key_usage)]
pub struct UsageRow {
    pub hour: DateTime<Utc>,
    pub requests: i64,
    pub rate_limited: i64,
}

pub async fn usage(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    key_id: KeyId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<Vec<UsageRow>> {
    let (org_id, key_id) = (org_id.as_uuid(), key_id.as_uuid());
    api_key_usage::table
        .filter(api_key_usage::org_id.eq(org_id))
        .filter(api_key_usage::key_id.eq(key_id))
        .filter(api_key_usage::hour.ge(since))
        .filter(api_key_usage::hour.lt(until))
        .order(api_key_usage::hour.asc())
        .select(UsageRow::as_select())
        .load(conn)
        .await
}
