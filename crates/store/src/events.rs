//! Accepted events.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::events;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub delivery_count: i32,
    pub created_at: DateTime<Utc>,
}

pub const UNIQUE_IDEMPOTENCY: &str = "events_idempotency";

pub async fn insert(conn: &mut AsyncPgConnection, row: &EventRow) -> QueryResult<()> {
    diesel::insert_into(events::table).values(row).execute(conn).await.map(|_| ())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<EventRow>> {
    events::table.find(id).select(EventRow::as_select()).first(conn).await.optional()
}

pub async fn by_idempotency_key(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
) -> QueryResult<Option<EventRow>> {
    events::table
        .filter(events::org_id.eq(org_id))
        .filter(events::idempotency_key.eq(key))
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Frees an idempotency key whose window has passed, so it can be used again.
pub async fn release_idempotency_key(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(events::table.find(id))
        .set(events::idempotency_key.eq(None::<String>))
        .execute(conn)
        .await
        .map(|_| ())
}
