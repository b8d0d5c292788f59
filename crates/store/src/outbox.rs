//! The transactional outbox: rows written with the deliveries, relayed to
//! RabbitMQ by the ingest API. A row names either one delivery (a retry, a
//! re-queued delivery) or an event, standing for the event's deliveries that
//! are still waiting for their first attempt.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::status::OutboxReason;
use uuid::Uuid;

use crate::schema::{deliveries, outbox};

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutbox {
    pub org_id: Uuid,
    /// The one delivery the row publishes; None for an event's row.
    pub delivery_id: Option<Uuid>,
    /// The event whose pending deliveries the row publishes; None for a delivery's row.
    pub event_id: Option<Uuid>,
    #[diesel(serialize_as = String)]
    pub reason: OutboxReason,
    pub attempt: i32,
    pub traceparent: Option<String>,
    /// When the relay may take the row; None for at once (the column's default).
    pub publish_after: Option<DateTime<Utc>>,
}

/// The channel on which writes to the outbox are announced.
pub const CHANNEL: &str = "hookline_outbox";

/// Writes outbox rows and announces them on [`CHANNEL`], so that a relay in
/// any process starts a pass once they commit (a notification in a
/// transaction is sent at its commit, and not at all on rollback).
pub async fn insert(conn: &mut AsyncPgConnection, rows: Vec<NewOutbox>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(outbox::table).values(rows).execute(conn).await?;
    announce(conn).await
}

/// Announces rows written to the outbox by other means (a statement, a trigger).
pub async fn announce(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, '')").bind::<diesel::sql_types::Text, _>(CHANNEL).execute(conn).await?;
    Ok(())
}

/// An outbox row with what the broker message needs.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub id: i64,
    pub org_id: Uuid,
    pub delivery_id: Uuid,
    #[diesel(deserialize_as = String)]
    pub reason: OutboxReason,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub traceparent: Option<String>,
}

/// Outbox rows taken by a relay pass.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Every row taken, to mark once published (an event's row may have no
    /// delivery left to publish).
    pub ids: Vec<i64>,
    /// One entry per delivery to publish, in outbox order.
    pub deliveries: Vec<Pending>,
}

/// Locks the oldest unpublished rows that are due. Rows another relay holds are skipped,
/// so relays side by side never publish the same row twice. Only outbox rows
/// are locked; the deliveries they point at stay free for the workers. An
/// event's row stands for its deliveries still waiting for a first attempt.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Claimed> {
    let ids: Vec<i64> = outbox::table
        .filter(outbox::published_at.is_null())
        .filter(outbox::publish_after.le(diesel::dsl::now))
        .order(outbox::id.asc())
        .limit(limit)
        .select(outbox::id)
        .for_update()
        .skip_locked()
        .load(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Claimed::default());
    }
    let columns = (
        outbox::id,
        outbox::org_id,
        deliveries::id,
        outbox::reason,
        outbox::attempt,
        outbox::created_at,
        deliveries::endpoint_id,
        deliveries::event_id,
        deliveries::event_type,
        outbox::traceparent,
    );
    let mut rows: Vec<Pending> = outbox::table
        .inner_join(deliveries::table.on(outbox::delivery_id.eq(deliveries::id.nullable())))
        .filter(outbox::id.eq_any(&ids))
        .select(columns)
        .load(conn)
        .await?;
    let of_events: Vec<Pending> = outbox::table
        .inner_join(
            deliveries::table.on(outbox::event_id
                .eq(deliveries::event_id.nullable())
                .and(deliveries::status.eq(hookline_domain::status::DeliveryStatus::Pending.as_str()))
                .and(deliveries::attempt_count.eq(0))),
        )
        .filter(outbox::id.eq_any(&ids))
        .select(columns)
        .load(conn)
        .await?;
    rows.extend(of_events);
    rows.sort_by_key(|r| (r.id, r.delivery_id));
    Ok(Claimed { ids, deliveries: rows })
}

pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<()> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// (unpublished rows, creation time of the oldest).
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(conn)
        .await
}
