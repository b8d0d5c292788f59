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
    let (deliveries, outbox) = pending(event, endpoints, reason, traceparent);
    crate::deliveries::insert_many(conn, &deliveries).await?;
    crate::outbox::insert(conn, &outbox).await?;
    Ok(deliveries.iter().map(|d| d.id).collect())
}

/// An event to write with its fan-out, in a batch of several.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: EventRow,
    pub endpoints: std::sync::Arc<Vec<Uuid>>,
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

/// Writes several events with their deliveries and outbox rows, three
/// statements for the whole batch (in the caller's transaction). An event
/// whose idempotency key is taken is skipped, not an error. The outbox rows
/// are left to the relay from `publish_after` on; they are returned, with
/// what their broker messages need, for the caller to publish before that.
pub async fn fan_out_many(
    conn: &mut AsyncPgConnection,
    batch: &[NewEvent],
    publish_after: DateTime<Utc>,
) -> QueryResult<(Vec<Written>, Vec<crate::outbox::Pending>)> {
    let rows: Vec<&EventRow> = batch.iter().map(|n| &n.event).collect();
    let stored: std::collections::HashSet<Uuid> = diesel::insert_into(events::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(events::id)
        .get_results(conn)
        .await?
        .into_iter()
        .collect();
    let mut deliveries = Vec::new();
    let mut outbox = Vec::new();
    let mut written = Vec::with_capacity(batch.len());
    for n in batch {
        if !stored.contains(&n.event.id) {
            written.push(Written::KeyTaken);
            continue;
        }
        let (d, mut o) = pending(&n.event, &n.endpoints, "fresh", n.traceparent.as_deref());
        for row in &mut o {
            row.publish_after = Some(publish_after);
        }
        written.push(Written::Stored(d.len()));
        deliveries.extend(d);
        outbox.extend(o);
    }
    // Postgres takes at most 65,535 parameters per statement.
    for chunk in deliveries.chunks(2_000) {
        crate::deliveries::insert_many(conn, chunk).await?;
    }
    let mut ids = std::collections::HashMap::with_capacity(outbox.len());
    for chunk in outbox.chunks(8_000) {
        ids.extend(crate::outbox::insert_returning(conn, chunk).await?.into_iter().map(|(id, d)| (d, id)));
    }
    let to_publish = deliveries
        .iter()
        .zip(&outbox)
        .filter_map(|(d, o)| {
            Some(crate::outbox::Pending {
                id: *ids.get(&d.id)?,
                org_id: d.org_id,
                delivery_id: d.id,
                reason: o.reason.clone(),
                attempt: o.attempt,
                created_at: d.created_at,
                endpoint_id: d.endpoint_id,
                event_id: d.event_id,
                event_type: d.event_type.clone(),
                traceparent: o.traceparent.clone(),
            })
        })
        .collect();
    Ok((written, to_publish))
}

/// One pending delivery per endpoint and its outbox row.
fn pending(
    event: &EventRow,
    endpoints: &[Uuid],
    reason: &str,
    traceparent: Option<&str>,
) -> (Vec<crate::deliveries::DeliveryRow>, Vec<crate::outbox::NewOutbox>) {
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
    let outbox = deliveries
        .iter()
        .map(|d| crate::outbox::NewOutbox {
            org_id: d.org_id,
            delivery_id: d.id,
            reason: reason.to_owned(),
            attempt: 1,
            traceparent: traceparent.map(str::to_owned),
            publish_after: None,
        })
        .collect();
    (deliveries, outbox)
}
