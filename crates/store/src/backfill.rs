//! Backfills: an endpoint's past events turned into deliveries, a batch at a
//! time, resumable from the last event looked at.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{BackfillId, EndpointId, OrgId};
use hookline_domain::status::OutboxReason;
use uuid::Uuid;

use crate::outbox::NewOutbox;
use crate::schema::{backfill_jobs, deliveries};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = backfill_jobs)]
pub struct BackfillRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub endpoint_id: Uuid,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Null: the endpoint's own subscription.
    pub events: Option<Vec<String>>,
    /// `running`, `completed` or `cancelled`.
    pub state: String,
    pub cursor: Option<Uuid>,
    pub scanned: i64,
    pub enqueued: i64,
    pub created_by_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &BackfillRow) -> QueryResult<BackfillRow> {
    diesel::insert_into(backfill_jobs::table).values(row).returning(BackfillRow::as_returning()).get_result(conn).await
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    endpoint_id: EndpointId,
    id: BackfillId,
) -> QueryResult<Option<BackfillRow>> {
    let (org_id, endpoint_id, id) = (org_id.as_uuid(), endpoint_id.as_uuid(), id.as_uuid());
    backfill_jobs::table
        .filter(backfill_jobs::org_id.eq(org_id))
        .filter(backfill_jobs::endpoint_id.eq(endpoint_id))
        .filter(backfill_jobs::id.eq(id))
        .select(BackfillRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The running backfill that waited longest, locked for the caller's
/// transaction (other runners skip it).
pub async fn claim(conn: &mut AsyncPgConnection) -> QueryResult<Option<BackfillRow>> {
    backfill_jobs::table
        .filter(backfill_jobs::state.eq("running"))
        .order(backfill_jobs::updated_at.asc())
        .select(BackfillRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()
}

/// Records a batch's progress; `done` completes the backfill.
pub async fn advance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    cursor: Option<Uuid>,
    scanned: i64,
    enqueued: i64,
    done: bool,
) -> QueryResult<()> {
    let now = Utc::now();
    diesel::update(backfill_jobs::table.find(id))
        .set((
            backfill_jobs::cursor.eq(cursor),
            backfill_jobs::scanned.eq(backfill_jobs::scanned + scanned),
            backfill_jobs::enqueued.eq(backfill_jobs::enqueued + enqueued),
            backfill_jobs::updated_at.eq(now),
            backfill_jobs::state.eq(if done { "completed" } else { "running" }),
            backfill_jobs::finished_at.eq(done.then_some(now)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Ends a backfill whose endpoint is gone or disabled.
pub async fn cancel(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    let now = Utc::now();
    diesel::update(backfill_jobs::table.find(id))
        .set((
            backfill_jobs::state.eq("cancelled"),
            backfill_jobs::updated_at.eq(now),
            backfill_jobs::finished_at.eq(Some(now)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Queues a delivery to the endpoint for each event that has none to it yet;
/// returns how many were queued.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    endpoint_id: Uuid,
    events: &[(Uuid, String)],
) -> QueryResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = events.iter().map(|(id, _)| *id).collect();
    let already: Vec<Uuid> = deliveries::table
        .filter(deliveries::event_id.eq_any(&ids))
        .filter(deliveries::endpoint_id.eq(endpoint_id))
        .select(deliveries::event_id)
        .load(conn)
        .await?;
    let now = Utc::now();
    let rows: Vec<crate::deliveries::DeliveryRow> = events
        .iter()
        .filter(|(id, _)| !already.contains(id))
        .map(|(event_id, event_type)| {
            crate::deliveries::DeliveryRow::pending(org_id, *event_id, endpoint_id, event_type, now)
        })
        .collect();
    let outbox: Vec<NewOutbox> = rows
        .iter()
        .map(|d| NewOutbox {
            org_id,
            delivery_id: Some(d.id),
            event_id: None,
            reason: OutboxReason::Manual,
            attempt: 1,
            traceparent: None,
            publish_after: None,
        })
        .collect();
    let n = rows.len();
    crate::deliveries::insert_many(conn, rows).await?;
    crate::outbox::insert(conn, outbox).await?;
    Ok(n)
}

/// What one step did: the backfill it advanced and the deliveries it queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stepped {
    pub id: Uuid,
    pub enqueued: usize,
}

#[derive(diesel::QueryableByName)]
struct Waiting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Advances the running backfill that waited longest by up to `batch`
/// events, while fewer than `batch` of the deliveries it queued still wait
/// for their first attempt: a backfill keeps pace with its endpoint instead
/// of flooding it (and parking its live deliveries). Run it in a
/// transaction: the claim holds until the commit.
pub async fn step(conn: &mut AsyncPgConnection, batch: i64) -> QueryResult<Option<Stepped>> {
    let Some(job) = claim(conn).await? else { return Ok(None) };
    let ep = crate::endpoints::get(conn, OrgId::from_uuid(job.org_id), EndpointId::from_uuid(job.endpoint_id)).await?;
    let Some(ep) = ep.filter(|e| e.is_active && e.mode == "push") else {
        cancel(conn, job.id).await?;
        return Ok(Some(Stepped { id: job.id, enqueued: 0 }));
    };
    // Deliveries ids are time-ordered: those made since the backfill began.
    let since =
        uuid::Builder::from_unix_timestamp_millis(job.created_at.timestamp_millis() as u64, &[0; 10]).into_uuid();
    let waiting: Waiting = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT 1 FROM deliveries WHERE endpoint_id = $1 AND id >= $2 \
           AND status = 'pending' AND attempt_count = 0 LIMIT $3) w",
    )
    .bind::<diesel::sql_types::Uuid, _>(ep.id)
    .bind::<diesel::sql_types::Uuid, _>(since)
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .get_result(conn)
    .await?;
    let room = batch - waiting.n;
    if room <= 0 {
        advance(conn, job.id, job.cursor, 0, 0, false).await?;
        return Ok(Some(Stepped { id: job.id, enqueued: 0 }));
    }
    let subscribed = job.events.as_ref().unwrap_or(&ep.events);
    let rows =
        crate::events::subscribed_after(conn, job.org_id, job.cursor, (job.since, job.until), subscribed, room).await?;
    let filter = ep.filter.as_ref().map(hookline_domain::filter::Filter::saved);
    let last = rows.last().map(|r| r.0).or(job.cursor);
    let scanned = rows.len() as i64;
    let picked: Vec<(Uuid, String)> = rows
        .into_iter()
        .filter(|(_, event, at, data)| filter.as_ref().is_none_or(|f| f.matches_event(event, *at, data)))
        .map(|(id, event, _, _)| (id, event))
        .collect();
    let enqueued = enqueue(conn, job.org_id, ep.id, &picked).await?;
    advance(conn, job.id, last, scanned, enqueued as i64, scanned < room).await?;
    Ok(Some(Stepped { id: job.id, enqueued }))
}
