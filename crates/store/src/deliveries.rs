//! Deliveries (one event bound for one endpoint) and their attempts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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

pub async fn insert_many(conn: &mut AsyncPgConnection, rows: Vec<DeliveryRow>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(deliveries::table).values(rows).execute(conn).await.map(|_| ())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    deliveries::table.find(id).select(DeliveryRow::as_select()).first(conn).await.optional()
}

/// Several deliveries with their events, in one query; absent ids are skipped.
///
/// On a connection from `db::keyed_pool` (`Plan::Keyed`) the statement is
/// planned once, as index lookups. Elsewhere one id, the common case when
/// deliveries do not queue, keeps a cached plan: an equality on the primary
/// key is planned as index lookups even on an empty table, so planning it
/// afresh (most of its cost) buys nothing; a list is planned per execution
/// (see `db::CustomPlan`).
pub async fn get_many_with_event(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    plan: crate::db::Plan,
) -> QueryResult<Vec<(DeliveryRow, crate::events::EventRow)>> {
    let query = deliveries::table
        .inner_join(crate::schema::events::table)
        .select((DeliveryRow::as_select(), crate::events::EventRow::as_select()));
    match (plan, ids) {
        (crate::db::Plan::Keyed, _) => query.filter(deliveries::id.eq_any(ids)).load(conn).await,
        (crate::db::Plan::PerExecution, [id]) => query.filter(deliveries::id.eq(*id)).load(conn).await,
        (crate::db::Plan::PerExecution, _) => {
            crate::db::CustomPlan(query.filter(deliveries::id.eq_any(ids))).load(conn).await
        }
    }
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

/// Records an attempt and its effect on the delivery and the endpoint's
/// health, in one statement. Returns whether alerting must hear of it (see
/// [`record_attempts`]).
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    attempt: &AttemptRow,
    outcome: &AttemptOutcome,
) -> QueryResult<bool> {
    let (attempt, outcome) = (std::slice::from_ref(attempt), std::slice::from_ref(outcome));
    Ok(record_attempts(conn, attempt, outcome, crate::db::Plan::PerExecution).await?[0])
}

/// Records several attempts (`outcomes[i]` belongs to `attempts[i]`) in one
/// statement, atomic on its own: the attempts, their deliveries, and the
/// health of their endpoints as the attempts leave it, in order.
///
/// Returns, per attempt, whether alerting must hear of it: every failure,
/// and a success only when its endpoint failed in the batch or, before it,
/// was in a state a success changes (`alerts::SUCCESS_MATTERS`). A success
/// to a healthy endpoint opens and resolves nothing, so telling alerting of
/// it would only cost a message each way.
///
/// The statement joins the batch to `deliveries`: it keeps a cached plan
/// only with `Plan::Keyed` (see `db::keyed_pool`).
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
    plan: crate::db::Plan,
) -> QueryResult<Vec<bool>> {
    assert_eq!(attempts.len(), outcomes.len(), "one outcome per attempt");
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let health = HealthChanges::fold(attempts, outcomes);
    // One parameter per column, each an array: any batch size fits.
    let rows: Vec<crate::alerts::IdRow> = RecordAttempts::new(attempts, outcomes, &health, plan).load(conn).await?;
    let mut heard: std::collections::HashSet<Uuid> = rows.into_iter().map(|r| r.id).collect();
    heard.extend(health.failing.iter().map(|f| f.endpoint_id));
    Ok(attempts.iter().map(|a| !a.succeeded || heard.contains(&a.endpoint_id)).collect())
}

/// What a batch of attempts does to the health of its endpoints.
#[derive(Debug, Default, PartialEq)]
struct HealthChanges {
    /// Endpoints that only succeeded, each with its latest success: their
    /// rows are touched only if unhealthy or stale (see the statement).
    healthy: Vec<(Uuid, Uuid, DateTime<Utc>)>,
    /// Endpoints with a failure in the batch.
    failing: Vec<Fold>,
}

/// The failures of one endpoint in a batch, folded in attempt order.
#[derive(Debug, PartialEq)]
struct Fold {
    endpoint_id: Uuid,
    org_id: Uuid,
    /// Failures (and of those, dead letters) since the batch's last
    /// success, or in the whole batch when nothing succeeded.
    failures: i32,
    dead_letters: i32,
    /// The first of those failures: when the endpoint began failing.
    failing_since: Option<DateTime<Utc>>,
    last_failure_at: DateTime<Utc>,
    /// The batch's last success: when set, the row's streaks restart from it.
    last_success_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
}

impl HealthChanges {
    fn fold(attempts: &[AttemptRow], outcomes: &[AttemptOutcome]) -> Self {
        // Per endpoint, in order of first appearance: its fold so far and
        // whether anything failed.
        let mut order: Vec<Uuid> = Vec::new();
        let mut folds: std::collections::HashMap<Uuid, (Fold, bool)> = std::collections::HashMap::new();
        for (a, o) in attempts.iter().zip(outcomes) {
            let (f, failed) = folds.entry(a.endpoint_id).or_insert_with(|| {
                order.push(a.endpoint_id);
                let fold = Fold {
                    endpoint_id: a.endpoint_id,
                    org_id: a.org_id,
                    failures: 0,
                    dead_letters: 0,
                    failing_since: None,
                    last_failure_at: a.created_at,
                    last_success_at: None,
                    at: a.created_at,
                };
                (fold, false)
            });
            f.at = a.created_at;
            if a.succeeded {
                f.failures = 0;
                f.dead_letters = 0;
                f.failing_since = None;
                f.last_success_at = Some(a.created_at);
            } else {
                *failed = true;
                f.failures += 1;
                f.dead_letters += i32::from(o.status == DeliveryStatus::DeadLetter);
                f.failing_since.get_or_insert(a.created_at);
                f.last_failure_at = a.created_at;
            }
        }
        let mut changes = Self::default();
        for endpoint in order {
            let (f, failed) = folds.remove(&endpoint).expect("each endpoint folded");
            if failed {
                changes.failing.push(f);
            } else {
                changes.healthy.push((f.endpoint_id, f.org_id, f.at));
            }
        }
        changes
    }
}

/// The statement behind [`record_attempts`]: the attempts inserted, their
/// deliveries updated and the health of their endpoints brought up to date,
/// as data-modifying CTEs over arrays. The health row of an endpoint that
/// only succeeded is touched only when it is unhealthy or its last success
/// is more than a few seconds old, so deliveries to one endpoint do not
/// queue on its lock (an update that matches nothing locks nothing); a
/// failing endpoint's row takes the batch's fold: streaks restart at the
/// batch's last success, or else grow by the batch's failures. It returns
/// the endpoints that only succeeded but where a success matters, judged on
/// the state before the batch (every part of one statement sees the same
/// snapshot).
struct RecordAttempts<'a> {
    plan: crate::db::Plan,
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
    failing_endpoints: Vec<Uuid>,
    failing_orgs: Vec<Uuid>,
    failures: Vec<i32>,
    dead_letters: Vec<i32>,
    failing_since: Vec<Option<DateTime<Utc>>>,
    last_failure_at: Vec<DateTime<Utc>>,
    last_success_at: Vec<Option<DateTime<Utc>>>,
    failing_at: Vec<DateTime<Utc>>,
}

impl<'a> RecordAttempts<'a> {
    fn new(
        attempts: &'a [AttemptRow],
        outcomes: &'a [AttemptOutcome],
        health: &HealthChanges,
        plan: crate::db::Plan,
    ) -> Self {
        let f = &health.failing;
        Self {
            plan,
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
            statuses: outcomes.iter().map(|o| o.status.as_str()).collect(),
            next_at: outcomes.iter().map(|o| o.next_attempt_at).collect(),
            healthy_endpoints: health.healthy.iter().map(|h| h.0).collect(),
            healthy_orgs: health.healthy.iter().map(|h| h.1).collect(),
            healthy_at: health.healthy.iter().map(|h| h.2).collect(),
            failing_endpoints: f.iter().map(|f| f.endpoint_id).collect(),
            failing_orgs: f.iter().map(|f| f.org_id).collect(),
            failures: f.iter().map(|f| f.failures).collect(),
            dead_letters: f.iter().map(|f| f.dead_letters).collect(),
            failing_since: f.iter().map(|f| f.failing_since).collect(),
            last_failure_at: f.iter().map(|f| f.last_failure_at).collect(),
            last_success_at: f.iter().map(|f| f.last_success_at).collect(),
            failing_at: f.iter().map(|f| f.at).collect(),
        }
    }
}

impl diesel::query_builder::Query for RecordAttempts<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryId for RecordAttempts<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RecordAttempts<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bool, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        // Elsewhere than on a keyed connection, planned for each batch (see
        // `db::CustomPlan`): a cached generic plan would join `deliveries` the
        // way that suited it when it was small.
        if self.plan == crate::db::Plan::PerExecution {
            out.unsafe_to_cache_prepared();
        }
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
                 status = CASE WHEN d.status = 'cancelled' AND NOT a.succeeded THEN d.status ELSE a.status END, \
                 attempt_count = greatest(d.attempt_count, a.attempt_number), \
                 last_status_code = a.status_code, \
                 last_error = a.error_message, \
                 last_attempt_at = a.created_at, \
                 next_attempt_at = CASE WHEN d.status = 'cancelled' AND NOT a.succeeded THEN NULL ELSE a.next_at END, \
                 delivered_at = CASE WHEN a.succeeded THEN a.created_at END, \
                 updated_at = a.created_at \
                 FROM a WHERE d.id = a.delivery_id \
                 RETURNING d.id, d.status, d.next_attempt_at, d.attempt_count), \
             scheduled AS (INSERT INTO delivery_retries (delivery_id, due_at) \
                 SELECT id, next_attempt_at FROM updated WHERE status = 'failed' AND next_attempt_at IS NOT NULL \
                 ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at), \
             unscheduled AS (DELETE FROM delivery_retries WHERE delivery_id IN ( \
                 SELECT id FROM updated WHERE attempt_count > 1 \
                     AND NOT (status = 'failed' AND next_attempt_at IS NOT NULL))), \
             s AS (SELECT * FROM unnest(",
        );
        push_binds!(out;
            Array<SqlUuid> => &self.healthy_endpoints,
            Array<SqlUuid> => &self.healthy_orgs,
            Array<Timestamptz> => &self.healthy_at,
        );
        out.push_sql(") AS s(endpoint_id, org_id, at)), f AS (SELECT * FROM unnest(");
        push_binds!(out;
            Array<SqlUuid> => &self.failing_endpoints,
            Array<SqlUuid> => &self.failing_orgs,
            Array<Int4> => &self.failures,
            Array<Int4> => &self.dead_letters,
            Array<Nullable<Timestamptz>> => &self.failing_since,
            Array<Timestamptz> => &self.last_failure_at,
            Array<Nullable<Timestamptz>> => &self.last_success_at,
            Array<Timestamptz> => &self.failing_at,
        );
        out.push_sql(
            ") AS f(endpoint_id, org_id, failures, dead_letters, failing_since, last_failure_at, last_success_at, at)), \
             folded AS ( \
                 INSERT INTO endpoint_health AS h (endpoint_id, org_id, consecutive_failures, \
                     consecutive_dead_letters, failing_since, last_failure_at, last_success_at, updated_at) \
                 SELECT endpoint_id, org_id, failures, dead_letters, failing_since, last_failure_at, \
                     last_success_at, at FROM f \
                 ON CONFLICT (endpoint_id) DO UPDATE SET \
                     consecutive_failures = CASE WHEN excluded.last_success_at IS NULL \
                         THEN h.consecutive_failures + excluded.consecutive_failures \
                         ELSE excluded.consecutive_failures END, \
                     consecutive_dead_letters = CASE WHEN excluded.last_success_at IS NULL \
                         THEN h.consecutive_dead_letters + excluded.consecutive_dead_letters \
                         ELSE excluded.consecutive_dead_letters END, \
                     failing_since = CASE WHEN excluded.last_success_at IS NULL \
                         THEN coalesce(h.failing_since, excluded.failing_since) \
                         ELSE excluded.failing_since END, \
                     last_failure_at = excluded.last_failure_at, \
                     last_success_at = coalesce(excluded.last_success_at, h.last_success_at), \
                     updated_at = excluded.updated_at \
                 RETURNING 1), \
             touched AS ( \
                 UPDATE endpoint_health h SET consecutive_failures = 0, consecutive_dead_letters = 0, \
                     failing_since = NULL, last_success_at = s.at, updated_at = s.at \
                 FROM s WHERE h.endpoint_id = s.endpoint_id \
                     AND (h.consecutive_failures <> 0 OR h.consecutive_dead_letters <> 0 \
                         OR h.failing_since IS NOT NULL OR h.last_success_at IS NULL \
                         OR h.last_success_at < s.at - interval '5 seconds') \
                 RETURNING 1), \
             fresh AS ( \
                 INSERT INTO endpoint_health (endpoint_id, org_id, last_success_at) \
                 SELECT s.endpoint_id, s.org_id, s.at FROM s \
                 WHERE NOT EXISTS (SELECT 1 FROM endpoint_health h WHERE h.endpoint_id = s.endpoint_id) \
                 ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT e.id FROM (SELECT endpoint_id AS id FROM s) AS e WHERE ",
        );
        out.push_sql(crate::alerts::SUCCESS_MATTERS);
        Ok(())
    }
}

/// Claims the right to publish attempt `next` (only one copy of a
/// duplicated message wins). False when another already did.
pub async fn claim_next_attempt(conn: &mut AsyncPgConnection, id: Uuid, next: i32) -> QueryResult<bool> {
    Ok(claim_next_attempts(conn, &[(id, next)], crate::db::Plan::PerExecution).await?[0])
}

/// Claims, for each `(delivery, next)`, the right to publish attempt
/// `next`, in one statement; true where this caller won. Inside the
/// transaction that recorded the failed attempts, a worker claims their
/// retries with the same commit (and the same flush of the WAL).
///
/// A delivery named more than once is claimed once at most, for its
/// highest attempt (the first caller naming it): the lower ones are
/// stale copies whose attempt has already been made. The statement joins
/// the claims to `deliveries`: it keeps a cached plan only with
/// `Plan::Keyed` (see `db::keyed_pool`).
pub async fn claim_next_attempts(
    conn: &mut AsyncPgConnection,
    claims: &[(Uuid, i32)],
    plan: crate::db::Plan,
) -> QueryResult<Vec<bool>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    // Per delivery: the highest attempt claimed and who named it first.
    let mut best: std::collections::HashMap<Uuid, (i32, usize)> = std::collections::HashMap::new();
    for (i, &(id, next)) in claims.iter().enumerate() {
        let e = best.entry(id).or_insert((next, i));
        if next > e.0 {
            *e = (next, i);
        }
    }
    let (ids, nexts): (Vec<Uuid>, Vec<i32>) = best.iter().map(|(id, &(next, _))| (*id, next)).unzip();
    let won: Vec<crate::alerts::IdRow> = ClaimAttempts { ids: &ids, nexts: &nexts, plan }.load(conn).await?;
    let won: std::collections::HashSet<Uuid> = won.into_iter().map(|r| r.id).collect();
    Ok(claims.iter().enumerate().map(|(i, (id, _))| won.contains(id) && best[id].1 == i).collect())
}

/// The statement behind [`claim_next_attempts`].
struct ClaimAttempts<'a> {
    ids: &'a [Uuid],
    nexts: &'a [i32],
    plan: crate::db::Plan,
}

impl diesel::query_builder::Query for ClaimAttempts<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryId for ClaimAttempts<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ClaimAttempts<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Int4, Uuid as SqlUuid};
        if self.plan == crate::db::Plan::PerExecution {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql("UPDATE deliveries AS d SET scheduled_attempt = c.next FROM unnest(");
        push_binds!(out; Array<SqlUuid> => self.ids, Array<Int4> => self.nexts);
        out.push_sql(") AS c(id, next) WHERE d.id = c.id AND d.scheduled_attempt < c.next RETURNING d.id");
        Ok(())
    }
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
    org_id: Uuid,
    endpoint_id: Uuid,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(endpoint: Uuid, second: i64, succeeded: bool) -> AttemptRow {
        AttemptRow {
            id: Uuid::new_v4(),
            org_id: Uuid::nil(),
            delivery_id: Uuid::new_v4(),
            endpoint_id: endpoint,
            attempt_number: 1,
            succeeded,
            status_code: None,
            error_class: None,
            error_message: None,
            latency_ms: 1,
            request_headers: serde_json::json!({}),
            response_headers: None,
            response_body: None,
            created_at: DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap(),
        }
    }

    fn outcome(status: &str) -> AttemptOutcome {
        AttemptOutcome { status: status.parse().unwrap(), next_attempt_at: None }
    }

    #[test]
    fn a_batch_folds_into_one_health_change_per_endpoint_in_attempt_order() {
        let (ok, flaky, down) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let attempts = [
            attempt(flaky, 1, false),
            attempt(ok, 2, true),
            attempt(down, 3, false),
            attempt(flaky, 4, true),
            attempt(flaky, 5, false),
            attempt(down, 6, false),
            attempt(ok, 7, true),
            attempt(flaky, 8, false),
        ];
        let outcomes =
            ["failed", "delivered", "dead_letter", "delivered", "failed", "failed", "delivered", "dead_letter"]
                .map(outcome);
        let changes = HealthChanges::fold(&attempts, &outcomes);
        assert_eq!(changes.healthy, vec![(ok, Uuid::nil(), t(7))], "only successes: the latest one");
        assert_eq!(
            changes.failing,
            vec![
                // The streak restarts at the success at 4: two failures since, one dead-lettered.
                Fold {
                    endpoint_id: flaky,
                    org_id: Uuid::nil(),
                    failures: 2,
                    dead_letters: 1,
                    failing_since: Some(t(5)),
                    last_failure_at: t(8),
                    last_success_at: Some(t(4)),
                    at: t(8),
                },
                // No success: the row's streak grows by both failures.
                Fold {
                    endpoint_id: down,
                    org_id: Uuid::nil(),
                    failures: 2,
                    dead_letters: 1,
                    failing_since: Some(t(3)),
                    last_failure_at: t(6),
                    last_success_at: None,
                    at: t(6),
                },
            ]
        );
        // A failure then a success: healthy again, but the failure is remembered.
        let attempts = [attempt(flaky, 1, false), attempt(flaky, 2, true)];
        let changes = HealthChanges::fold(&attempts, &["failed", "delivered"].map(outcome));
        assert_eq!(
            changes.failing,
            vec![Fold {
                endpoint_id: flaky,
                org_id: Uuid::nil(),
                failures: 0,
                dead_letters: 0,
                failing_since: None,
                last_failure_at: t(1),
                last_success_at: Some(t(2)),
                at: t(2),
            }]
        );
    }
}
