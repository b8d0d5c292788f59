//! Custom event types, per organisation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::event_types;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = event_types)]
pub struct EventTypeRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub schema: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

pub const UNIQUE_NAME: &str = "event_types_org_id_name_key";

pub async fn insert(conn: &mut AsyncPgConnection, row: &EventTypeRow) -> QueryResult<EventTypeRow> {
    diesel::insert_into(event_types::table).values(row).returning(EventTypeRow::as_returning()).get_result(conn).await
}

pub async fn list(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<Vec<EventTypeRow>> {
    event_types::table
        .filter(event_types::org_id.eq(org_id))
        .order(event_types::name.asc())
        .select(EventTypeRow::as_select())
        .load(conn)
        .await
}

pub async fn get_by_name(conn: &mut AsyncPgConnection, org_id: Uuid, name: &str) -> QueryResult<Option<EventTypeRow>> {
    event_types::table
        .filter(event_types::org_id.eq(org_id))
        .filter(event_types::name.eq(name))
        .select(EventTypeRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The names among `names` that exist for the organisation.
pub async fn existing_names(conn: &mut AsyncPgConnection, org_id: Uuid, names: &[String]) -> QueryResult<Vec<String>> {
    event_types::table
        .filter(event_types::org_id.eq(org_id))
        .filter(event_types::name.eq_any(names))
        .select(event_types::name)
        .load(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, org_id: Uuid, name: &str) -> QueryResult<bool> {
    let n =
        diesel::delete(event_types::table.filter(event_types::org_id.eq(org_id)).filter(event_types::name.eq(name)))
            .execute(conn)
            .await?;
    Ok(n > 0)
}
