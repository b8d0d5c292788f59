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

/// Writes an event, one pending delivery per endpoint, and their outbox rows
/// (in the caller's transaction). Returns the delivery ids.
pub async fn fan_out(
    conn: &mut AsyncPgConnection,
    event: &EventRow,
    endpoints: &[Uuid],
    reason: &str,
    traceparent: Option<&str>,
) -> QueryResult<Vec<Uuid>> {
    insert(conn, event).await?;
    let now = event.created_at;
    let deliveries: Vec<crate::deliveries::DeliveryRow> = endpoints
        .iter()
        .map(|ep| crate::deliveries::DeliveryRow {
            id: Uuid::now_v7(),
            org_id: event.org_id,
            event_id: event.id,
            endpoint_id: *ep,
            event_type: event.event_type.clone(),
            status: "pending".into(),
            attempt_count: 0,
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: Some(now),
            delivered_at: None,
            created_at: now,
            updated_at: now,
            scheduled_attempt: 1,
        })
        .collect();
    crate::deliveries::insert_many(conn, &deliveries).await?;
    let outbox: Vec<crate::outbox::NewOutbox> = deliveries
        .iter()
        .map(|d| crate::outbox::NewOutbox {
            org_id: d.org_id,
            delivery_id: d.id,
            reason: reason.to_owned(),
            attempt: 1,
            traceparent: traceparent.map(str::to_owned),
        })
        .collect();
    crate::outbox::insert(conn, &outbox).await?;
    Ok(deliveries.iter().map(|d| d.id).collect())
}
