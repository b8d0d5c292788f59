//! Recording attempts and claiming retries: the statements every delivery
//! runs, each for a whole batch.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::deliveries::{AttemptOutcome, AttemptRow};
use crate::hot::plan::Plan;
use crate::hot::Pieces;

/// The attempt statement, with the test of whether a success matters to an
/// endpoint in place.
static RECORD_ATTEMPTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../sql/record_attempts.sql").replace("/* SUCCESS_MATTERS */", crate::alerts::SUCCESS_MATTERS)
});
use hookline_domain::status::DeliveryStatus;

/// Records an attempt and its effect on the delivery and the endpoint's
/// health, in one statement. Returns whether alerting must hear of it (see
/// [`record_attempts`]).
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    attempt: &AttemptRow,
    outcome: &AttemptOutcome,
) -> QueryResult<bool> {
    let (attempt, outcome) = (std::slice::from_ref(attempt), std::slice::from_ref(outcome));
    Ok(record_attempts(conn, attempt, outcome, Plan::PerExecution).await?[0])
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
/// only with `Plan::Keyed` (see `hot::plan::keyed_pool`).
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
    plan: Plan,
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
    plan: Plan,
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
    fn new(attempts: &'a [AttemptRow], outcomes: &'a [AttemptOutcome], health: &HealthChanges, plan: Plan) -> Self {
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
        // `hot::plan::CustomPlan`): a cached generic plan would join `deliveries` the
        // way that suited it when it was small.
        if self.plan == Plan::PerExecution {
            out.unsafe_to_cache_prepared();
        }
        let mut sql = Pieces::of(&RECORD_ATTEMPTS);
        out.push_sql(sql.next());
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
        out.push_sql(sql.next());
        push_binds!(out;
            Array<SqlUuid> => &self.healthy_endpoints,
            Array<SqlUuid> => &self.healthy_orgs,
            Array<Timestamptz> => &self.healthy_at,
        );
        out.push_sql(sql.next());
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
        out.push_sql(sql.next());
        Ok(())
    }
}

/// Claims the right to publish attempt `next` (only one copy of a
/// duplicated message wins). False when another already did.
pub async fn claim_next_attempt(conn: &mut AsyncPgConnection, id: Uuid, next: i32) -> QueryResult<bool> {
    Ok(claim_next_attempts(conn, &[(id, next)], Plan::PerExecution).await?[0])
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
/// `Plan::Keyed` (see `hot::plan::keyed_pool`).
pub async fn claim_next_attempts(
    conn: &mut AsyncPgConnection,
    claims: &[(Uuid, i32)],
    plan: Plan,
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
    plan: Plan,
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
        if self.plan == Plan::PerExecution {
            out.unsafe_to_cache_prepared();
        }
        let mut sql = Pieces::of(include_str!("../../sql/claim_attempts.sql"));
        out.push_sql(sql.next());
        push_binds!(out; Array<SqlUuid> => self.ids, Array<Int4> => self.nexts);
        out.push_sql(sql.next());
        Ok(())
    }
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
