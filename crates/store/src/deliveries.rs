//! Deliveries (one event bound for one endpoint) and their attempts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{DeliveryId, EndpointId, EventId, OrgId};
use uuid::Uuid;

use hookline_domain::status::{DeliveryStatus, OutboxReason};

use crate::outbox::NewOutbox;
use crate::schema::{deliveries, delivery_attempts, delivery_retries, endpoint_health, outbox};
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_type: String,
    #[diesel(serialize_as = String, deserialize_as = String)]
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub scheduled_attempt: i32,
    /// Its ordering lane: the value of the endpoint's ordering key in the event (see `hookline_domain::ordering`).
    pub lane: Option<String>,
    /// Its place in the lane, set when it is written.
    pub lane_seq: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = delivery_attempts)]
pub struct AttemptRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt_number: i32,
    pub succeeded: bool,
    pub status_code: Option<i32>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub latency_ms: i32,
    pub request_headers: serde_json::Value,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl DeliveryRow {
    /// A new delivery of an event to an endpoint, waiting for its first attempt.
    pub fn pending(org_id: Uuid, event_id: Uuid, endpoint_id: Uuid, event_type: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            org_id,
            event_id,
            endpoint_id,
            event_type: event_type.to_owned(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: Some(at),
            delivered_at: None,
            created_at: at,
            updated_at: at,
            scheduled_attempt: 1,
            lane: None,
            lane_seq: None,
        }
    }
}

pub async fn insert_many(conn: &mut AsyncPgConnection, rows: Vec<DeliveryRow>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(deliveries::table).values(rows).execute(conn).await.map(|_| ())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    deliveries::table.find(id).select(DeliveryRow::as_select()).first(conn).await.optional()
}

/// An event's deliveries, one per endpoint it went to.
pub async fn for_event(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    event_id: EventId,
) -> QueryResult<Vec<DeliveryRow>> {
    let (org_id, event_id) = (org_id.as_uuid(), event_id.as_uuid());
    deliveries::table
        .filter(deliveries::org_id.eq(org_id))
        .filter(deliveries::event_id.eq(event_id))
        .order(deliveries::id.asc())
        .select(DeliveryRow::as_select())
        .load(conn)
        .await
}

pub async fn get_for_org(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: DeliveryId,
) -> QueryResult<Option<DeliveryRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    deliveries::table
        .filter(deliveries::org_id.eq(org_id))
        .filter(deliveries::id.eq(id))
        .select(DeliveryRow::as_select())
        .first(conn)
        .await
        .optional()
}

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    f: &DeliveryFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<DeliveryRow>> {
    let mut q = deliveries::table.filter(deliveries::org_id.eq(org_id)).select(DeliveryRow::as_select()).into_boxed();
    if let Some(e) = f.endpoint_id {
        q = q.filter(deliveries::endpoint_id.eq(e));
    }
    if let Some(s) = f.status {
        q = q.filter(deliveries::status.eq(s.as_str()));
    }
    if let Some(t) = &f.event_type {
        q = q.filter(deliveries::event_type.eq(t.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(deliveries::created_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(deliveries::created_at.lt(u));
    }
    if let Some(b) = before {
        q = q.filter(deliveries::id.lt(b));
    }
    let rows = q.order(deliveries::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

pub async fn attempts(conn: &mut AsyncPgConnection, delivery_id: Uuid) -> QueryResult<Vec<AttemptRow>> {
    delivery_attempts::table
        .filter(delivery_attempts::delivery_id.eq(delivery_id))
        .order((delivery_attempts::attempt_number.asc(), delivery_attempts::created_at.asc()))
        .select(AttemptRow::as_select())
        .load(conn)
        .await
}

/// What an attempt did to its delivery.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// Delivered, failed (a retry follows) or dead-lettered.
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Gives a claim back (the publish failed).
pub async fn unclaim_attempt(conn: &mut AsyncPgConnection, id: Uuid, next: i32) -> QueryResult<()> {
    diesel::update(deliveries::table.find(id).filter(deliveries::scheduled_attempt.eq(next)))
        .set(deliveries::scheduled_attempt.eq(next - 1))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn set_status(conn: &mut AsyncPgConnection, id: Uuid, status: DeliveryStatus) -> QueryResult<()> {
    diesel::update(deliveries::table.find(id))
        .set((
            deliveries::status.eq(status.as_str()),
            deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
            deliveries::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Queues a new attempt now for a failed or dead-lettered delivery: sets it
/// pending and writes its outbox row. False when the delivery is in another state.
pub async fn requeue(conn: &mut AsyncPgConnection, row: &DeliveryRow, reason: OutboxReason) -> QueryResult<bool> {
    Ok(requeue_many(conn, &[row.id], reason).await? == 1)
}

#[derive(QueryableByName)]
struct Requeued {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    org_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    scheduled_attempt: i32,
}

/// [`requeue`] for several deliveries in two statements; those in another
/// state are left alone. Returns how many were queued.
pub async fn requeue_many(conn: &mut AsyncPgConnection, ids: &[Uuid], reason: OutboxReason) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let requeued: Vec<Requeued> = diesel::sql_query(
        "UPDATE deliveries SET status = 'pending', \
                scheduled_attempt = GREATEST(attempt_count, scheduled_attempt - 1) + 1, \
                next_attempt_at = now(), updated_at = now() \
         WHERE id = ANY($1) AND status IN ('failed', 'dead_letter') \
         RETURNING id, org_id, scheduled_attempt",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)
    .await?;
    let rows: Vec<NewOutbox> = requeued
        .iter()
        .map(|r| NewOutbox {
            org_id: r.org_id,
            delivery_id: Some(r.id),
            event_id: None,
            reason,
            attempt: r.scheduled_attempt,
            traceparent: None,
            publish_after: None,
        })
        .collect();
    let n = rows.len();
    crate::outbox::insert(conn, rows).await?;
    Ok(n)
}

/// Up to `limit` failed or dead-lettered deliveries of an endpoint created
/// in a window, after the delivery `after` in id order, locked for the caller.
pub async fn recoverable(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    endpoint_id: EndpointId,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    let (org_id, endpoint_id) = (org_id.as_uuid(), endpoint_id.as_uuid());
    // No id is below the nil UUID: the first call starts at the beginning.
    deliveries::table
        .filter(deliveries::id.gt(after.unwrap_or(Uuid::nil())))
        .filter(deliveries::org_id.eq(org_id))
        .filter(deliveries::endpoint_id.eq(endpoint_id))
        .filter(deliveries::status.eq_any([DeliveryStatus::Failed.as_str(), DeliveryStatus::DeadLetter.as_str()]))
        .filter(deliveries::created_at.ge(since))
        .filter(deliveries::created_at.lt(until))
        .order(deliveries::id.asc())
        .limit(limit)
        .select(deliveries::id)
        .for_update()
        .load(conn)
        .await
}

/// Retries that should have come back long ago: their message was lost
/// (a crash between claiming and publishing). Locked for the caller.
pub async fn overdue(
    conn: &mut AsyncPgConnection,
    older_than: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    deliveries::table
        .inner_join(delivery_retries::table)
        .filter(delivery_retries::due_at.lt(older_than))
        .filter(deliveries::status.eq(DeliveryStatus::Failed.as_str()))
        .filter(deliveries::next_attempt_at.lt(older_than))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            outbox::table
                .filter(outbox::delivery_id.eq(deliveries::id.nullable()))
                .filter(outbox::published_at.is_null()),
        )))
        .order(delivery_retries::due_at.asc())
        .limit(limit)
        .select(DeliveryRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}

/// Forgets scheduled retries of deliveries no longer waiting for one (sent
/// again by hand, cancelled): the attempt statement removes the rows of the
/// deliveries it records, this the rest. Returns how many.
pub async fn forget_settled_retries(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM delivery_retries r USING deliveries d \
         WHERE d.id = r.delivery_id AND (d.status <> 'failed' OR d.next_attempt_at IS NULL)",
    )
    .execute(conn)
    .await
}

#[derive(Debug, Clone, QueryableByName)]
pub struct EndpointStats {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub succeeded: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub p50_ms: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub p95_ms: Option<f64>,
}

pub async fn endpoint_stats(
    conn: &mut AsyncPgConnection,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
) -> QueryResult<EndpointStats> {
    diesel::sql_query(
        "SELECT count(*) AS attempts, count(*) FILTER (WHERE succeeded) AS succeeded, \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms, \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms \
         FROM delivery_attempts WHERE endpoint_id = $1 AND created_at >= $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(endpoint_id)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .get_result(conn)
    .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = endpoint_health)]
pub struct HealthRow {
    pub consecutive_failures: i32,
    pub consecutive_dead_letters: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
}

pub async fn endpoint_health(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<Option<HealthRow>> {
    endpoint_health::table.find(endpoint_id).select(HealthRow::as_select()).first(conn).await.optional()
}

/// The health of several endpoints in one query; endpoints never attempted are absent.
pub async fn endpoints_health(
    conn: &mut AsyncPgConnection,
    endpoint_ids: &[Uuid],
) -> QueryResult<std::collections::HashMap<Uuid, HealthRow>> {
    let rows: Vec<(Uuid, HealthRow)> = endpoint_health::table
        .filter(endpoint_health::endpoint_id.eq_any(endpoint_ids))
        .select((endpoint_health::endpoint_id, HealthRow::as_select()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

#[derive(QueryableByName)]
struct Fingerprint {
    #[diesel(sql_type = diesel::sql_types::Text)]
    fingerprint: String,
}

/// A digest of the organisation's 50 newest deliveries (status and attempt
/// count) and of its open alerts: it changes when a delivery is created or
/// attempted or an alert opens, and costs one short index scan.
pub async fn activity_fingerprint(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<String> {
    diesel::sql_query(
        "SELECT md5(coalesce((SELECT string_agg(d.id::text || d.status || d.attempt_count::text, ',' ORDER BY d.id DESC) \
           FROM (SELECT id, status, attempt_count FROM deliveries WHERE org_id = $1 ORDER BY id DESC LIMIT 50) d), '') \
           || (SELECT count(*) FROM alerts WHERE org_id = $1 AND state = 'open')::text) AS fingerprint",
    )
    .bind::<diesel::sql_types::Uuid, _>(org_id)
    .get_result::<Fingerprint>(conn)
    .await
    .map(|f| f.fingerprint)
}
