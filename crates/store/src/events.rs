//! Accepted events.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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
    reason: OutboxReason,
    traceparent: Option<&str>,
) -> QueryResult<Vec<Uuid>> {
    insert(conn, event).await?;
    let deliveries = new_deliveries(event, endpoints);
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

/// Writes several events with their deliveries and outbox rows in one
/// statement (atomic on its own: no transaction around it, one round trip
/// for the whole batch). An event whose idempotency key is taken is skipped,
/// not an error. The outbox rows are left to the relay from `publish_after`
/// on; they are returned, with what their broker messages need, for the
/// caller to publish before that.
pub async fn fan_out_many(
    conn: &mut AsyncPgConnection,
    batch: &[NewEvent],
    publish_after: DateTime<Utc>,
) -> QueryResult<(Vec<Written>, Vec<crate::outbox::Pending>)> {
    let deliveries: Vec<_> = batch.iter().flat_map(|n| new_deliveries(&n.event, &n.endpoints)).collect();
    // One outbox row per event that has a delivery.
    let with_deliveries: Vec<&NewEvent> = batch.iter().filter(|n| !n.endpoints.is_empty()).collect();
    let statement = FanOut {
        ids: batch.iter().map(|n| n.event.id).collect(),
        orgs: batch.iter().map(|n| n.event.org_id).collect(),
        types: batch.iter().map(|n| n.event.event_type.as_str()).collect(),
        data: batch.iter().map(|n| &n.event.data).collect(),
        occurred: batch.iter().map(|n| n.event.occurred_at).collect(),
        keys: batch.iter().map(|n| n.event.idempotency_key.as_deref()).collect(),
        hashes: batch.iter().map(|n| n.event.request_hash.as_deref()).collect(),
        counts: batch.iter().map(|n| n.event.delivery_count).collect(),
        created: batch.iter().map(|n| n.event.created_at).collect(),
        d_ids: deliveries.iter().map(|d| d.id).collect(),
        d_orgs: deliveries.iter().map(|d| d.org_id).collect(),
        d_events: deliveries.iter().map(|d| d.event_id).collect(),
        d_endpoints: deliveries.iter().map(|d| d.endpoint_id).collect(),
        d_types: deliveries.iter().map(|d| d.event_type.as_str()).collect(),
        d_at: deliveries.iter().map(|d| d.created_at).collect(),
        o_events: with_deliveries.iter().map(|n| n.event.id).collect(),
        o_orgs: with_deliveries.iter().map(|n| n.event.org_id).collect(),
        o_traceparents: with_deliveries.iter().map(|n| n.traceparent.as_deref()).collect(),
        publish_after,
    };
    let mut stored = std::collections::HashSet::new();
    let mut outbox_ids = std::collections::HashMap::new();
    for row in statement.load::<FanOutRow>(conn).await? {
        stored.insert(row.event_id);
        if let Some(outbox) = row.outbox_id {
            outbox_ids.insert(row.event_id, outbox);
        }
    }
    let written = batch
        .iter()
        .map(|n| if stored.contains(&n.event.id) { Written::Stored(n.endpoints.len()) } else { Written::KeyTaken })
        .collect();
    let traceparents: std::collections::HashMap<Uuid, Option<&str>> =
        with_deliveries.iter().map(|n| (n.event.id, n.traceparent.as_deref())).collect();
    let to_publish = deliveries
        .into_iter()
        .filter_map(|d| {
            Some(crate::outbox::Pending {
                id: *outbox_ids.get(&d.event_id)?,
                org_id: d.org_id,
                delivery_id: d.id,
                reason: OutboxReason::Fresh,
                attempt: 1,
                created_at: d.created_at,
                endpoint_id: d.endpoint_id,
                traceparent: traceparents.get(&d.event_id).copied().flatten().map(str::to_owned),
                event_id: d.event_id,
                event_type: d.event_type,
            })
        })
        .collect();
    Ok((written, to_publish))
}

/// The statement behind [`fan_out_many`]: the events whose idempotency key
/// is free, then the deliveries and the outbox row of each event actually
/// inserted, as data-modifying CTEs over arrays (the foreign keys between
/// them are checked at its end). Its text does not change with the batch
/// size, so a connection prepares it once and runs it in one round trip.
struct FanOut<'a> {
    ids: Vec<Uuid>,
    orgs: Vec<Uuid>,
    types: Vec<&'a str>,
    data: Vec<&'a serde_json::Value>,
    occurred: Vec<DateTime<Utc>>,
    keys: Vec<Option<&'a str>>,
    hashes: Vec<Option<&'a [u8]>>,
    counts: Vec<i32>,
    created: Vec<DateTime<Utc>>,
    d_ids: Vec<Uuid>,
    d_orgs: Vec<Uuid>,
    d_events: Vec<Uuid>,
    d_endpoints: Vec<Uuid>,
    d_types: Vec<&'a str>,
    d_at: Vec<DateTime<Utc>>,
    o_events: Vec<Uuid>,
    o_orgs: Vec<Uuid>,
    o_traceparents: Vec<Option<&'a str>>,
    publish_after: DateTime<Utc>,
}

/// An event the statement stored, and its outbox row if it has deliveries.
#[derive(QueryableByName)]
struct FanOutRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    outbox_id: Option<i64>,
}

impl diesel::query_builder::QueryId for FanOut<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for FanOut<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FanOut<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bytea, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        out.push_sql(
            "WITH ev AS (INSERT INTO events (id, org_id, event_type, data, occurred_at, idempotency_key, \
             request_hash, delivery_count, created_at) SELECT * FROM unnest(",
        );
        push_binds!(out;
            Array<SqlUuid> => &self.ids,
            Array<SqlUuid> => &self.orgs,
            Array<Text> => &self.types,
            Array<Jsonb> => &self.data,
            Array<Timestamptz> => &self.occurred,
            Array<Nullable<Text>> => &self.keys,
            Array<Nullable<Bytea>> => &self.hashes,
            Array<Int4> => &self.counts,
            Array<Timestamptz> => &self.created,
        );
        out.push_sql(") ON CONFLICT DO NOTHING RETURNING id), x AS (SELECT * FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.d_ids,
            Array<SqlUuid> => &self.d_orgs,
            Array<SqlUuid> => &self.d_events,
            Array<SqlUuid> => &self.d_endpoints,
            Array<Text> => &self.d_types,
            Array<Timestamptz> => &self.d_at,
        );
        out.push_sql(
            ") AS x(id, org_id, event_id, endpoint_id, event_type, at) \
             WHERE x.event_id IN (SELECT id FROM ev)), \
             d AS (INSERT INTO deliveries (id, org_id, event_id, endpoint_id, event_type, status, attempt_count, \
             next_attempt_at, created_at, updated_at, scheduled_attempt) \
             SELECT id, org_id, event_id, endpoint_id, event_type, 'pending', 0, at, at, at, 1 FROM x), \
             o AS (INSERT INTO outbox (org_id, event_id, reason, attempt, traceparent, publish_after) \
             SELECT r.org_id, r.id, 'fresh', 1, r.traceparent, ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.publish_after)?;
        out.push_sql(" FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.o_events,
            Array<SqlUuid> => &self.o_orgs,
            Array<Nullable<Text>> => &self.o_traceparents,
        );
        out.push_sql(
            ") AS r(id, org_id, traceparent) WHERE r.id IN (SELECT id FROM ev) RETURNING id, event_id) \
             SELECT ev.id AS event_id, o.id AS outbox_id FROM ev LEFT JOIN o ON o.event_id = ev.id",
        );
        Ok(())
    }
}

/// One pending delivery of the event per endpoint.
fn new_deliveries(event: &EventRow, endpoints: &[Uuid]) -> Vec<crate::deliveries::DeliveryRow> {
    let now = event.created_at;
    endpoints
        .iter()
        .map(|ep| crate::deliveries::DeliveryRow {
            id: Uuid::now_v7(),
            org_id: event.org_id,
            event_id: event.id,
            endpoint_id: *ep,
            event_type: event.event_type.clone(),
            status: hookline_domain::status::DeliveryStatus::Pending,
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
        .collect()
}
