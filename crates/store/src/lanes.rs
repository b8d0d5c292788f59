//! Ordered delivery's lanes (migration `ordered_lanes`): triggers place each
//! new ordered delivery in its lane and release the next one when the head
//! settles. Here: what an endpoint's change of `ordering` does to them.

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

/// Lanes held by a dead-lettered head move on, as `on_dead_letter: skip` has
/// them do. Returns how many moved.
pub async fn release_held(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> diesel::QueryResult<usize> {
    let moved = diesel::sql_query(
        "SELECT count(lane_release(l.head)) AS n FROM delivery_lanes l JOIN deliveries d ON d.id = l.head \
         WHERE l.endpoint_id = $1 AND d.status = 'dead_letter'",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .get_result::<Count>(conn)
    .await?
    .n;
    Ok(moved as usize)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
