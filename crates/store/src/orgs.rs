use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::organisations;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organisations)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    pub events_per_minute: Option<i32>,
    pub max_endpoints: i32,
    pub max_keys: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub retention_days: i32,
    /// The highest rate limit the organisation may give a key; null is the platform's maximum.
    pub max_key_rate_limit_per_hour: Option<i32>,
    /// False lets event types that were never registered through, unvalidated.
    pub strict_event_types: bool,
    /// Keys created without an expiry expire after this many days; null never.
    pub default_key_lifetime_days: Option<i32>,
    /// Origins allowed to frame the portal (`frame-ancestors`).
    pub portal_origins: Vec<String>,
    /// `#rrggbb`.
    pub portal_accent_color: Option<String>,
    pub portal_logo_url: Option<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, id: Uuid, name: &str) -> QueryResult<Org> {
    diesel::insert_into(organisations::table)
        .values((organisations::id.eq(id), organisations::name.eq(name)))
        .returning(Org::as_returning())
        .get_result(conn)
        .await
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Org>> {
    organisations::table.find(id).select(Org::as_select()).first(conn).await.optional()
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = organisations)]
pub struct OrgChanges {
    pub name: Option<String>,
    pub events_per_minute: Option<Option<i32>>,
    pub max_endpoints: Option<i32>,
    pub max_keys: Option<i32>,
    pub retention_days: Option<i32>,
    pub max_key_rate_limit_per_hour: Option<Option<i32>>,
    pub strict_event_types: Option<bool>,
    pub default_key_lifetime_days: Option<Option<i32>>,
    pub portal_origins: Option<Vec<String>>,
    pub portal_accent_color: Option<Option<String>>,
    pub portal_logo_url: Option<Option<String>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn update(conn: &mut AsyncPgConnection, id: Uuid, mut changes: OrgChanges) -> QueryResult<Option<Org>> {
    changes.updated_at = Some(Utc::now());
    diesel::update(organisations::table.find(id))
        .set(&changes)
        .returning(Org::as_returning())
        .get_result(conn)
        .await
        .optional()
}
