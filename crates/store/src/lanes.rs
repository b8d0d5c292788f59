//! Ordered delivery's lanes (migrations `ordered_lanes`, `lane_kicks_publish`):
//! a trigger places each new ordered delivery in its lane; `lane_release`
//! makes the next one head once the head settles. A release takes its lane's
//! lock without waiting (SKIP LOCKED), so one statement may release several
//! lanes; none runs inside the statement that records attempts, whose locks
//! would be held through its WAL flush.

use diesel::sql_types::Uuid as SqlUuid;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// An endpoint that stops ordering lets every delivery waiting in its lanes go.
/// Returns how many were released.
pub async fn dissolve(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> diesel::QueryResult<usize> {
    let released = diesel::sql_query(
        "WITH freed AS ( \
             UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now() \
             WHERE endpoint_id = $1 AND lane IS NOT NULL AND status = 'blocked' RETURNING id, org_id), \
         queued AS (INSERT INTO outbox (org_id, delivery_id, reason, attempt) \
             SELECT org_id, id, 'fresh', 1 FROM freed RETURNING 1) \
         SELECT count(*) AS n FROM queued",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .get_result::<Count>(conn)
    .await?
    .n;
    diesel::sql_query("DELETE FROM delivery_lanes WHERE endpoint_id = $1")
        .bind::<SqlUuid, _>(endpoint_id)
        .execute(conn)
        .await?;
    if released > 0 {
        crate::outbox::announce(conn).await?;
    }
    Ok(released as usize)
}

/// The delivery a release made its lane's head: what its broker message needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct Released {
    #[diesel(sql_type = SqlUuid)]
    pub next_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_type: String,
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub endpoint_id: Uuid,
}

/// How the delivery a release makes head is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Through the outbox and the relay.
    Relay,
    /// By the caller, at once; the sweeper queues it if that never happens.
    Caller,
}

/// Moves the delivery's lane on if the delivery is its head and settled,
/// returning the lane's next delivery, now pending.
pub async fn release(
    conn: &mut AsyncPgConnection,
    delivery_id: Uuid,
    publish: Publish,
) -> diesel::QueryResult<Option<Released>> {
    // Committed without waiting for the WAL flush, so a release costs no disk
    // write of its own: lost in a crash of Postgres, it leaves a settled head,
    // which the sweeper releases again.
    let rows: Vec<Released> =
        diesel::sql_query("SELECT r.* FROM lane_release($1, $2) r, set_config('synchronous_commit', 'off', true)")
            .bind::<SqlUuid, _>(delivery_id)
            .bind::<diesel::sql_types::Bool, _>(publish == Publish::Relay)
            .load(conn)
            .await?;
    Ok(rows.into_iter().next())
}

/// A release of several settled deliveries' lanes (see [`release`]) in one
/// statement, each lane under its own lock: what each moved on to, by the
/// settled delivery. For the caller to publish.
pub async fn release_many(
    conn: &mut AsyncPgConnection,
    settled: &[Uuid],
) -> diesel::QueryResult<std::collections::HashMap<Uuid, Released>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        settled: Uuid,
        #[diesel(embed)]
        next: Released,
    }
    if settled.is_empty() {
        return Ok(Default::default());
    }
    // Committed without waiting for the WAL flush (see `release`).
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT s.id AS settled, r.* FROM set_config('synchronous_commit', 'off', true) c, \
         unnest($1::uuid[]) s(id), LATERAL lane_release(s.id, false) r",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(settled)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.settled, r.next)).collect())
}

/// Queues through the outbox the heads that were released for a worker to
/// deliver and are still unattempted well after (the worker stopped in
/// between): longer than their endpoint's timeout plus `slack` since they
/// became head, so that an attempt still running is not doubled. Lanes
/// another transaction holds are left for the next pass.
pub async fn requeue_unpublished_heads(
    conn: &mut AsyncPgConnection,
    slack: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "WITH stale AS ( \
             SELECT l.endpoint_id, l.lane, d.id, d.org_id FROM delivery_lanes l \
             JOIN deliveries d ON d.id = l.head JOIN webhook_endpoints e ON e.id = l.endpoint_id \
             WHERE d.status = 'pending' AND d.attempt_count = 0 \
               AND l.updated_at < now() - make_interval(secs => e.timeout_seconds + $1) \
             ORDER BY l.updated_at LIMIT $2 FOR UPDATE OF l SKIP LOCKED), \
         touched AS (UPDATE delivery_lanes l SET updated_at = now() FROM stale \
             WHERE l.endpoint_id = stale.endpoint_id AND l.lane = stale.lane) \
         INSERT INTO outbox (org_id, delivery_id, reason, attempt) SELECT org_id, id, 'fresh', 1 FROM stale",
    )
    .bind::<diesel::sql_types::Double, _>(slack.as_secs_f64())
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
    .await
}

/// Heads that failed and whose retry is overdue by more than their
/// endpoint's timeout plus `slack`: the worker that claimed the retry
/// stopped before publishing it. For `deliveries::requeue_many`; the lane
/// behind each waits on it.
pub async fn heads_with_lost_retries(
    conn: &mut AsyncPgConnection,
    slack: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let rows: Vec<Head> = diesel::sql_query(
        "SELECT d.id FROM delivery_lanes l \
         JOIN deliveries d ON d.id = l.head JOIN webhook_endpoints e ON e.id = l.endpoint_id \
         WHERE d.status = 'failed' AND d.next_attempt_at < now() - make_interval(secs => e.timeout_seconds + $1) \
         ORDER BY d.next_attempt_at LIMIT $2",
    )
    .bind::<diesel::sql_types::Double, _>(slack.as_secs_f64())
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|h| h.id).collect())
}

/// Moves on those of these lanes (endpoint, lane) whose head settled while
/// the caller was writing deliveries into them; run once they are committed.
/// Returns the deliveries made heads, for the caller to publish (the sweeper
/// queues any it does not).
pub async fn kick(conn: &mut AsyncPgConnection, lanes: &[(Uuid, String)]) -> diesel::QueryResult<Vec<Released>> {
    if lanes.is_empty() {
        return Ok(Vec::new());
    }
    let (endpoints, names): (Vec<Uuid>, Vec<&str>) = lanes.iter().map(|(e, l)| (*e, l.as_str())).unzip();
    // Committed without waiting for the WAL flush, as a release is (see `release`).
    diesel::sql_query("SELECT r.* FROM lane_kick($1, $2) r, set_config('synchronous_commit', 'off', true)")
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(endpoints)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(names)
        .load(conn)
        .await
}

/// Heads of lanes that settled and were not released, untouched for `idle`
/// (their worker stopped between recording and releasing; a bulk
/// cancellation), optionally of one endpoint. Each is for [`release`]. A
/// lane held on its dead letter is not among them: it waits by choice.
pub async fn settled_heads(
    conn: &mut AsyncPgConnection,
    endpoint_id: Option<Uuid>,
    idle: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = SqlUuid)]
        head: Uuid,
    }
    let rows: Vec<Head> = diesel::sql_query(
        "SELECT l.head FROM delivery_lanes l JOIN deliveries d ON d.id = l.head \
         JOIN webhook_endpoints e ON e.id = l.endpoint_id \
         WHERE d.status IN ('delivered', 'cancelled', 'dead_letter') \
           AND l.updated_at < now() - make_interval(secs => $1) AND ($2::uuid IS NULL OR l.endpoint_id = $2) \
           AND NOT (d.status = 'dead_letter' AND e.ordering ->> 'on_dead_letter' = 'hold' \
               AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.delivery_id = d.id AND x.resolved_at IS NOT NULL)) \
         ORDER BY l.updated_at LIMIT $3",
    )
    .bind::<diesel::sql_types::Double, _>(idle.as_secs_f64())
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(endpoint_id)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|h| h.head).collect())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
