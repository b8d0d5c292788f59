//! The transactional outbox: rows written with the deliveries, relayed to
//! RabbitMQ by the ingest API.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{deliveries, outbox};

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutbox {
    pub org_id: Uuid,
    pub delivery_id: Uuid,
    pub reason: String,
    pub attempt: i32,
    pub traceparent: Option<String>,
    /// When the relay may take the row; None for at once (the column's default).
    pub publish_after: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, rows: &[NewOutbox]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(outbox::table).values(rows).execute(conn).await.map(|_| ())
}

/// An outbox row with what the broker message needs.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub id: i64,
    pub org_id: Uuid,
    pub delivery_id: Uuid,
    pub reason: String,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub traceparent: Option<String>,
}

/// Writes rows and returns (outbox id, delivery id) of each.
pub async fn insert_returning(conn: &mut AsyncPgConnection, rows: &[NewOutbox]) -> QueryResult<Vec<(i64, Uuid)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(outbox::table).values(rows).returning((outbox::id, outbox::delivery_id)).get_results(conn).await
}

/// Locks the oldest unpublished rows that are due. Rows another relay holds are skipped,
/// so relays side by side never publish the same row twice. Only outbox rows
/// are locked; the deliveries they point at stay free for the workers.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Pending>> {
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
        return Ok(Vec::new());
    }
    outbox::table
        .inner_join(deliveries::table)
        .filter(outbox::id.eq_any(&ids))
        .order(outbox::id.asc())
        .select((
            outbox::id,
            outbox::org_id,
            outbox::delivery_id,
            outbox::reason,
            outbox::attempt,
            outbox::created_at,
            deliveries::endpoint_id,
            deliveries::event_id,
            deliveries::event_type,
            outbox::traceparent,
        ))
        .load(conn)
        .await
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
