//! Accepted events.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{EventId, OrgId};
use hookline_domain::status::OutboxReason;
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

/// Which of an organisation's events to list.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// An organisation's events, newest first, `limit` after the event `before`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    f: &EventFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<crate::Page<EventRow>> {
    let mut q = events::table.filter(events::org_id.eq(org_id)).select(EventRow::as_select()).into_boxed();
    if let Some(t) = &f.event_type {
        q = q.filter(events::event_type.eq(t.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(events::created_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(events::created_at.lt(u));
    }
    if let Some(b) = before {
        q = q.filter(events::id.lt(b));
    }
    let rows = q.order(events::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(crate::Page::from_rows(rows, limit))
}

/// The organisation's latest events (of one type, when given), newest first:
/// id, type, time and data only, for evaluating filters over them.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    event_type: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, String, DateTime<Utc>, serde_json::Value)>> {
    let mut q = events::table
        .filter(events::org_id.eq(org_id))
        .select((events::id, events::event_type, events::occurred_at, events::data))
        .into_boxed();
    if let Some(t) = event_type {
        q = q.filter(events::event_type.eq(t.to_owned()));
    }
    q.order(events::id.desc()).limit(limit).load(conn).await
}

/// The organisation's events after `after` in id order (oldest first),
/// created in `[from, to)`, of the types an endpoint subscribing to
/// `subscribed` receives: those named, or with `*` every type but the
/// operational ones it does not name.
pub async fn subscribed_after(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    after: Option<Uuid>,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    subscribed: &[String],
    limit: i64,
) -> QueryResult<Vec<(Uuid, String, DateTime<Utc>, serde_json::Value)>> {
    let mut q = events::table
        .filter(events::org_id.eq(org_id))
        .filter(events::id.gt(after.unwrap_or(Uuid::nil())))
        .filter(events::created_at.ge(from))
        .filter(events::created_at.lt(to))
        .select((events::id, events::event_type, events::occurred_at, events::data))
        .into_boxed();
    if subscribed.iter().any(|e| e == "*") {
        let excluded: Vec<String> = hookline_domain::event::OPERATIONAL
            .iter()
            .filter(|t| !subscribed.iter().any(|e| e == *t))
            .map(|t| t.to_string())
            .collect();
        q = q.filter(events::event_type.ne_all(excluded));
    } else {
        q = q.filter(events::event_type.eq_any(subscribed.to_vec()));
    }
    q.order(events::id.asc()).limit(limit).load(conn).await
}

pub async fn get_for_org(conn: &mut AsyncPgConnection, org_id: OrgId, id: EventId) -> QueryResult<Option<EventRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    events::table
        .filter(events::org_id.eq(org_id))
        .filter(events::id.eq(id))
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()
}

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

/// Writes an event, one pending delivery per endpoint, and the event's
/// outbox row (in the caller's transaction). Returns the delivery ids.
pub async fn fan_out(
    conn: &mut AsyncPgConnection,
    event: &EventRow,
    endpoints: &[Uuid],
    lanes: &[(Uuid, String)],
    reason: OutboxReason,
    traceparent: Option<&str>,
) -> QueryResult<Vec<Uuid>> {
    insert(conn, event).await?;
    let deliveries = new_deliveries(event, endpoints, lanes);
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let ids = deliveries.iter().map(|d| d.id).collect();
    crate::deliveries::insert_many(conn, deliveries).await?;
    let row = crate::outbox::NewOutbox {
        org_id: event.org_id,
        delivery_id: None,
        event_id: Some(event.id),
        reason,
        attempt: 1,
        traceparent: traceparent.map(str::to_owned),
        publish_after: None,
    };
    crate::outbox::insert(conn, vec![row]).await?;
    Ok(ids)
}

/// An event to write with its fan-out, in a batch of several.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: EventRow,
    pub endpoints: std::sync::Arc<Vec<Uuid>>,
    /// The lane of the event at each ordered endpoint among them.
    pub lanes: Vec<(Uuid, String)>,
    pub traceparent: Option<String>,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored with this many deliveries.
    Stored(usize),
    /// Not written: its idempotency key is taken (perhaps by an earlier event
    /// of the same batch). The caller resolves it on its own.
    KeyTaken,
}

/// One pending delivery of the event per endpoint, in its lane at the
/// ordered ones (where the database may block it behind earlier ones).
pub(crate) fn new_deliveries(
    event: &EventRow,
    endpoints: &[Uuid],
    lanes: &[(Uuid, String)],
) -> Vec<crate::deliveries::DeliveryRow> {
    endpoints
        .iter()
        .map(|ep| crate::deliveries::DeliveryRow {
            lane: lanes.iter().find(|(id, _)| id == ep).map(|(_, lane)| lane.clone()),
            ..crate::deliveries::DeliveryRow::pending(event.org_id, event.id, *ep, &event.event_type, event.created_at)
        })
        .collect()
}
