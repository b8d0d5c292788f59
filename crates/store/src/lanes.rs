//! Ordered delivery's lanes (migration `ordered_lanes`): a trigger places
//! each new ordered delivery in its lane; `lane_release` queues the next once
//! the head settles. Each release takes one lane's lock in its own statement
//! (see the migration), so none is made inside a batch of attempts.

use diesel::sql_types::Uuid as SqlUuid;
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
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Released {
    #[diesel(sql_type = SqlUuid)]
    pub next_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_type: String,
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

/// Queues through the outbox the heads that were released for their worker to
/// publish and are still unattempted `idle` after (the worker stopped in
/// between). Lanes another transaction holds are left for the next pass.
pub async fn requeue_unpublished_heads(
    conn: &mut AsyncPgConnection,
    idle: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "WITH stale AS ( \
             SELECT l.endpoint_id, l.lane, d.id, d.org_id FROM delivery_lanes l JOIN deliveries d ON d.id = l.head \
             WHERE d.status = 'pending' AND d.attempt_count = 0 \
               AND l.updated_at < now() - make_interval(secs => $1) \
             ORDER BY l.updated_at LIMIT $2 FOR UPDATE OF l SKIP LOCKED), \
         touched AS (UPDATE delivery_lanes l SET updated_at = now() FROM stale \
             WHERE l.endpoint_id = stale.endpoint_id AND l.lane = stale.lane) \
         INSERT INTO outbox (org_id, delivery_id, reason, attempt) SELECT org_id, id, 'fresh', 1 FROM stale",
    )
    .bind::<diesel::sql_types::Double, _>(idle.as_secs_f64())
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
    .await
}

/// Moves on those of these lanes (endpoint, lane) whose head settled while
/// the caller was writing deliveries into them; run once they are committed.
pub async fn kick(conn: &mut AsyncPgConnection, lanes: &[(Uuid, &str)]) -> diesel::QueryResult<()> {
    if lanes.is_empty() {
        return Ok(());
    }
    let (endpoints, names): (Vec<Uuid>, Vec<&str>) = lanes.iter().copied().unzip();
    // Committed without waiting for the WAL flush, as a release is (see `release`).
    diesel::sql_query("SELECT lane_kick($1, $2), set_config('synchronous_commit', 'off', true)")
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(endpoints)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(names)
        .execute(conn)
        .await?;
    Ok(())
}

/// Heads of lanes that settled and were not released, untouched for `idle`
/// (their worker stopped between recording and releasing; a bulk
/// cancellation), optionally of one endpoint. Each is for [`release`].
pub async fn settled_heads(
    conn: &mut AsyncPgConnection,
    endpoint_id: Option<Uuid>,
    idle: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<Vec<Uuid>> {
    #[derive(diesel::QueryableByName)]
    struct Head {
        #[diesel(sql_type = SqlUuid)]
        head: Uuid,
    }
    let rows: Vec<Head> = diesel::sql_query(
        "SELECT l.head FROM delivery_lanes l JOIN deliveries d ON d.id = l.head \
         WHERE d.status IN ('delivered', 'cancelled', 'dead_letter') \
           AND l.updated_at < now() - make_interval(secs => $1) AND ($2::uuid IS NULL OR l.endpoint_id = $2) \
         ORDER BY l.updated_at LIMIT $3",
    )
    .bind::<diesel::sql_types::Double, _>(idle.as_secs_f64())
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(endpoint_id)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|h| h.head).collect())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
