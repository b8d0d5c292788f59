//! Deliveries (one event bound for one endpoint) and their attempts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::outbox::NewOutbox;
use crate::schema::{deliveries, delivery_attempts, endpoint_health, outbox};
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempt_count: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub scheduled_attempt: i32,
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

pub async fn insert_many(conn: &mut AsyncPgConnection, rows: &[DeliveryRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(deliveries::table).values(rows).execute(conn).await.map(|_| ())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    deliveries::table.find(id).select(DeliveryRow::as_select()).first(conn).await.optional()
}

/// Several deliveries with their events, in one query; absent ids are skipped.
pub async fn get_many_with_event(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<(DeliveryRow, crate::events::EventRow)>> {
    crate::db::CustomPlan(
        deliveries::table
            .inner_join(crate::schema::events::table)
            .filter(deliveries::id.eq_any(ids))
            .select((DeliveryRow::as_select(), crate::events::EventRow::as_select())),
    )
    .load(conn)
    .await
}

pub async fn get_for_org(conn: &mut AsyncPgConnection, org_id: Uuid, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
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
    pub status: Option<String>,
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
    if let Some(s) = &f.status {
        q = q.filter(deliveries::status.eq(s.clone()));
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
    /// `delivered`, `failed` (a retry follows) or `dead_letter`.
    pub status: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Records an attempt and its effect on the delivery and the endpoint's
/// health, in the caller's transaction.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    attempt: &AttemptRow,
    outcome: &AttemptOutcome,
) -> QueryResult<()> {
    record_attempts(conn, std::slice::from_ref(attempt), std::slice::from_ref(outcome)).await
}

/// Records several attempts (`outcomes[i]` belongs to `attempts[i]`): one
/// statement writes the attempts, their deliveries and the health of the
/// endpoints that only succeeded; an endpoint with a failure in the batch
/// then gets one health write per run of successes or failure. Call it in a
/// transaction unless every attempt succeeded (then it is one statement,
/// atomic on its own).
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
) -> QueryResult<()> {
    assert_eq!(attempts.len(), outcomes.len(), "one outcome per attempt");
    if attempts.is_empty() {
        return Ok(());
    }
    // Health. Endpoints with only successes in the batch (the common case)
    // are written by the same statement as the attempts and deliveries; the
    // others are folded in attempt by attempt, in order, where a run of
    // successes needs only its first write.
    let mut failing = std::collections::HashSet::new();
    for a in attempts.iter().filter(|a| !a.succeeded) {
        failing.insert(a.endpoint_id);
    }
    let mut healthy: std::collections::HashMap<Uuid, &AttemptRow> = std::collections::HashMap::new();
    for a in attempts.iter().filter(|a| !failing.contains(&a.endpoint_id)) {
        healthy.insert(a.endpoint_id, a);
    }
    // One parameter per column, each an array: any batch size fits.
    RecordAttempts::new(attempts, outcomes, healthy.values().copied()).execute(conn).await?;
    let mut last_was_success: std::collections::HashMap<Uuid, bool> = std::collections::HashMap::new();
    for (attempt, outcome) in attempts.iter().zip(outcomes).filter(|(a, _)| failing.contains(&a.endpoint_id)) {
        let before = last_was_success.insert(attempt.endpoint_id, attempt.succeeded);
        if attempt.succeeded && before == Some(true) {
            continue;
        }
        record_health(conn, attempt, outcome.status == "dead_letter").await?;
    }
    Ok(())
}

/// Marks endpoints healthy after a success (each given by its latest
/// successful attempt), in one statement. Healthy rows are touched at most
/// every few seconds, so deliveries to one endpoint do not queue on its lock
/// (an update that matches nothing locks nothing); missing rows are created.
async fn record_successes<'a>(
    conn: &mut AsyncPgConnection,
    latest: impl Iterator<Item = &'a AttemptRow>,
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
    let (mut endpoints, mut orgs, mut at) = (Vec::new(), Vec::new(), Vec::new());
    for a in latest {
        endpoints.push(a.endpoint_id);
        orgs.push(a.org_id);
        at.push(a.created_at);
    }
    diesel::sql_query(
        "WITH s AS (SELECT * FROM unnest($1, $2, $3) AS s(endpoint_id, org_id, at)), \
         touched AS ( \
             UPDATE endpoint_health h SET consecutive_failures = 0, consecutive_dead_letters = 0, \
                 failing_since = NULL, last_success_at = s.at, updated_at = s.at \
             FROM s WHERE h.endpoint_id = s.endpoint_id \
                 AND (h.consecutive_failures <> 0 OR h.consecutive_dead_letters <> 0 \
                     OR h.failing_since IS NOT NULL OR h.last_success_at IS NULL \
                     OR h.last_success_at < s.at - interval '5 seconds') \
             RETURNING 1) \
         INSERT INTO endpoint_health (endpoint_id, org_id, last_success_at) \
         SELECT s.endpoint_id, s.org_id, s.at FROM s \
         WHERE NOT EXISTS (SELECT 1 FROM endpoint_health h WHERE h.endpoint_id = s.endpoint_id) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(endpoints)
    .bind::<Array<SqlUuid>, _>(orgs)
    .bind::<Array<Timestamptz>, _>(at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// The statement behind [`record_attempts`]: the attempts inserted, their
/// deliveries updated and the health of endpoints with only successes
/// brought up to date, as data-modifying CTEs over arrays.
struct RecordAttempts<'a> {
    ids: Vec<Uuid>,
    orgs: Vec<Uuid>,
    deliveries: Vec<Uuid>,
    endpoints: Vec<Uuid>,
    numbers: Vec<i32>,
    succeeded: Vec<bool>,
    status_codes: Vec<Option<i32>>,
    error_classes: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    latencies: Vec<i32>,
    request_headers: Vec<&'a serde_json::Value>,
    response_headers: Vec<Option<&'a serde_json::Value>>,
    response_bodies: Vec<Option<&'a str>>,
    at: Vec<DateTime<Utc>>,
    statuses: Vec<&'a str>,
    next_at: Vec<Option<DateTime<Utc>>>,
    healthy_endpoints: Vec<Uuid>,
    healthy_orgs: Vec<Uuid>,
    healthy_at: Vec<DateTime<Utc>>,
}

impl<'a> RecordAttempts<'a> {
    fn new(
        attempts: &'a [AttemptRow],
        outcomes: &'a [AttemptOutcome],
        healthy: impl Iterator<Item = &'a AttemptRow>,
    ) -> Self {
        let (mut healthy_endpoints, mut healthy_orgs, mut healthy_at) = (Vec::new(), Vec::new(), Vec::new());
        for a in healthy {
            healthy_endpoints.push(a.endpoint_id);
            healthy_orgs.push(a.org_id);
            healthy_at.push(a.created_at);
        }
        Self {
            ids: attempts.iter().map(|a| a.id).collect(),
            orgs: attempts.iter().map(|a| a.org_id).collect(),
            deliveries: attempts.iter().map(|a| a.delivery_id).collect(),
            endpoints: attempts.iter().map(|a| a.endpoint_id).collect(),
            numbers: attempts.iter().map(|a| a.attempt_number).collect(),
            succeeded: attempts.iter().map(|a| a.succeeded).collect(),
            status_codes: attempts.iter().map(|a| a.status_code).collect(),
            error_classes: attempts.iter().map(|a| a.error_class.as_deref()).collect(),
            errors: attempts.iter().map(|a| a.error_message.as_deref()).collect(),
            latencies: attempts.iter().map(|a| a.latency_ms).collect(),
            request_headers: attempts.iter().map(|a| &a.request_headers).collect(),
            response_headers: attempts.iter().map(|a| a.response_headers.as_ref()).collect(),
            response_bodies: attempts.iter().map(|a| a.response_body.as_deref()).collect(),
            at: attempts.iter().map(|a| a.created_at).collect(),
            statuses: outcomes.iter().map(|o| o.status).collect(),
            next_at: outcomes.iter().map(|o| o.next_attempt_at).collect(),
            healthy_endpoints,
            healthy_orgs,
            healthy_at,
        }
    }
}

impl diesel::query_builder::QueryId for RecordAttempts<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RecordAttempts<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bool, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        // Planned for each batch (see `db::CustomPlan`): a cached generic plan
        // would join `deliveries` the way that suited it when it was small.
        out.unsafe_to_cache_prepared();
        out.push_sql("WITH a AS (SELECT * FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.ids,
            Array<SqlUuid> => &self.orgs,
            Array<SqlUuid> => &self.deliveries,
            Array<SqlUuid> => &self.endpoints,
            Array<Int4> => &self.numbers,
            Array<Bool> => &self.succeeded,
            Array<Nullable<Int4>> => &self.status_codes,
            Array<Nullable<Text>> => &self.error_classes,
            Array<Nullable<Text>> => &self.errors,
            Array<Int4> => &self.latencies,
            Array<Jsonb> => &self.request_headers,
            Array<Nullable<Jsonb>> => &self.response_headers,
            Array<Nullable<Text>> => &self.response_bodies,
            Array<Timestamptz> => &self.at,
            Array<Text> => &self.statuses,
            Array<Nullable<Timestamptz>> => &self.next_at,
        );
        out.push_sql(
            ") AS a(id, org_id, delivery_id, endpoint_id, attempt_number, succeeded, status_code, error_class, \
                    error_message, latency_ms, request_headers, response_headers, response_body, created_at, \
                    status, next_at)), \
             inserted AS (INSERT INTO delivery_attempts (id, org_id, delivery_id, endpoint_id, attempt_number, \
                 succeeded, status_code, error_class, error_message, latency_ms, request_headers, \
                 response_headers, response_body, created_at) \
                 SELECT id, org_id, delivery_id, endpoint_id, attempt_number, succeeded, status_code, error_class, \
                     error_message, latency_ms, request_headers, response_headers, response_body, created_at FROM a), \
             updated AS (UPDATE deliveries AS d SET \
                 status = a.status, \
                 attempt_count = greatest(d.attempt_count, a.attempt_number), \
                 last_status_code = a.status_code, \
                 last_error = a.error_message, \
                 last_attempt_at = a.created_at, \
                 next_attempt_at = a.next_at, \
                 delivered_at = CASE WHEN a.succeeded THEN a.created_at END, \
                 updated_at = a.created_at \
                 FROM a WHERE d.id = a.delivery_id), \
             s AS (SELECT * FROM unnest(",
        );
        push_binds!(out;
            Array<SqlUuid> => &self.healthy_endpoints,
            Array<SqlUuid> => &self.healthy_orgs,
            Array<Timestamptz> => &self.healthy_at,
        );
        out.push_sql(
            ") AS s(endpoint_id, org_id, at)), \
             touched AS ( \
                 UPDATE endpoint_health h SET consecutive_failures = 0, consecutive_dead_letters = 0, \
                     failing_since = NULL, last_success_at = s.at, updated_at = s.at \
                 FROM s WHERE h.endpoint_id = s.endpoint_id \
                     AND (h.consecutive_failures <> 0 OR h.consecutive_dead_letters <> 0 \
                         OR h.failing_since IS NOT NULL OR h.last_success_at IS NULL \
                         OR h.last_success_at < s.at - interval '5 seconds') \
                 RETURNING 1) \
             INSERT INTO endpoint_health (endpoint_id, org_id, last_success_at) \
             SELECT s.endpoint_id, s.org_id, s.at FROM s \
             WHERE NOT EXISTS (SELECT 1 FROM endpoint_health h WHERE h.endpoint_id = s.endpoint_id) \
             ON CONFLICT DO NOTHING",
        );
        Ok(())
    }
}

/// Folds one attempt into its endpoint's health row.
async fn record_health(conn: &mut AsyncPgConnection, attempt: &AttemptRow, dead: bool) -> QueryResult<()> {
    let now = attempt.created_at;
    if attempt.succeeded {
        record_successes(conn, std::iter::once(attempt)).await?;
    } else {
        diesel::insert_into(endpoint_health::table)
            .values((
                endpoint_health::endpoint_id.eq(attempt.endpoint_id),
                endpoint_health::org_id.eq(attempt.org_id),
                endpoint_health::consecutive_failures.eq(1),
                endpoint_health::consecutive_dead_letters.eq(i32::from(dead)),
                endpoint_health::last_failure_at.eq(Some(now)),
                endpoint_health::failing_since.eq(Some(now)),
            ))
            .on_conflict(endpoint_health::endpoint_id)
            .do_update()
            .set((
                endpoint_health::consecutive_failures.eq(endpoint_health::consecutive_failures + 1),
                endpoint_health::consecutive_dead_letters
                    .eq(endpoint_health::consecutive_dead_letters + i32::from(dead)),
                endpoint_health::last_failure_at.eq(Some(now)),
                endpoint_health::failing_since.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                >(
                    "coalesce(endpoint_health.failing_since, excluded.failing_since)"
                )),
                endpoint_health::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Claims the right to publish attempt `next` (only one copy of a
/// duplicated message wins). False when another already did.
pub async fn claim_next_attempt(conn: &mut AsyncPgConnection, id: Uuid, next: i32) -> QueryResult<bool> {
    let n = diesel::update(deliveries::table.find(id).filter(deliveries::scheduled_attempt.lt(next)))
        .set(deliveries::scheduled_attempt.eq(next))
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// Gives a claim back (the publish failed).
pub async fn unclaim_attempt(conn: &mut AsyncPgConnection, id: Uuid, next: i32) -> QueryResult<()> {
    diesel::update(deliveries::table.find(id).filter(deliveries::scheduled_attempt.eq(next)))
        .set(deliveries::scheduled_attempt.eq(next - 1))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn set_status(conn: &mut AsyncPgConnection, id: Uuid, status: &str) -> QueryResult<()> {
    diesel::update(deliveries::table.find(id))
        .set((
            deliveries::status.eq(status),
            deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
            deliveries::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Queues a new attempt now for a failed or dead-lettered delivery: sets it
/// pending and writes its outbox row. False when the delivery is in another state.
pub async fn requeue(conn: &mut AsyncPgConnection, row: &DeliveryRow, reason: &str) -> QueryResult<bool> {
    let next = row.attempt_count.max(row.scheduled_attempt - 1) + 1;
    let n = diesel::update(deliveries::table.find(row.id).filter(deliveries::status.eq_any(["failed", "dead_letter"])))
        .set((
            deliveries::status.eq("pending"),
            deliveries::scheduled_attempt.eq(next),
            deliveries::next_attempt_at.eq(Some(Utc::now())),
            deliveries::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    crate::outbox::insert(
        conn,
        &[NewOutbox {
            org_id: row.org_id,
            delivery_id: row.id,
            reason: reason.to_owned(),
            attempt: next,
            traceparent: None,
            publish_after: None,
        }],
    )
    .await?;
    Ok(true)
}

/// Failed or dead-lettered deliveries of an endpoint created in a window.
pub async fn recoverable(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<Vec<DeliveryRow>> {
    deliveries::table
        .filter(deliveries::org_id.eq(org_id))
        .filter(deliveries::endpoint_id.eq(endpoint_id))
        .filter(deliveries::status.eq_any(["failed", "dead_letter"]))
        .filter(deliveries::created_at.ge(since))
        .filter(deliveries::created_at.lt(until))
        .order(deliveries::id.asc())
        .select(DeliveryRow::as_select())
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
        .filter(deliveries::status.eq("failed"))
        .filter(deliveries::next_attempt_at.lt(older_than))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            outbox::table.filter(outbox::delivery_id.eq(deliveries::id)).filter(outbox::published_at.is_null()),
        )))
        .order(deliveries::next_attempt_at.asc())
        .limit(limit)
        .select(DeliveryRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
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
