//! Erasing one lead: scrubbing the payloads of the events whose data holds a
//! value at a JSON pointer, and what their deliveries kept of the receivers'
//! answers. Ids, types, times and counts stay for the audit trail.

use diesel::sql_types::{Array, BigInt, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scrubbed {
    pub events: usize,
    pub attempts: usize,
    pub dead_letters: usize,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Scrubs the matches among the organisation's next `batch` events after
/// `after` (in id order). Returns what it scrubbed and the last event id it
/// looked at (`None` when no events are left).
pub async fn scrub_batch(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    path: &[String],
    value: &serde_json::Value,
    after: Option<Uuid>,
    batch: i64,
) -> diesel::QueryResult<(Scrubbed, Option<Uuid>)> {
    let ids: Vec<Id> = diesel::sql_query("SELECT id FROM events WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind::<SqlUuid, _>(org_id)
        .bind::<SqlUuid, _>(after.unwrap_or(Uuid::nil()))
        .bind::<BigInt, _>(batch)
        .load(conn)
        .await?;
    let Some(last) = ids.last().map(|i| i.id) else { return Ok((Scrubbed::default(), None)) };
    let ids: Vec<Uuid> = ids.into_iter().map(|i| i.id).collect();
    // The payload and the idempotency record (its key may name the lead).
    let hit: Vec<Id> = diesel::sql_query(
        "UPDATE events SET data = '{}'::jsonb, idempotency_key = NULL, request_hash = NULL \
         WHERE id = ANY($1) AND data #> $2 = $3 RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Text>, _>(path)
    .bind::<Jsonb, _>(value)
    .load(conn)
    .await?;
    if hit.is_empty() {
        return Ok((Scrubbed::default(), Some(last)));
    }
    let hit: Vec<Uuid> = hit.into_iter().map(|i| i.id).collect();
    let attempts = diesel::sql_query(
        "UPDATE delivery_attempts SET response_body = NULL, response_headers = NULL, error_message = NULL \
         WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))",
    )
    .bind::<Array<SqlUuid>, _>(&hit)
    .execute(conn)
    .await?;
    let dead: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM dead_letters WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))",
    )
    .bind::<Array<SqlUuid>, _>(&hit)
    .get_result(conn)
    .await?;
    // What the deliveries kept of the last answer; those still waiting are
    // cancelled, as there is nothing left to send.
    diesel::sql_query(
        "UPDATE deliveries SET last_error = NULL, \
           status = CASE WHEN status IN ('pending', 'failed', 'blocked') THEN 'cancelled' ELSE status END, \
           next_attempt_at = CASE WHEN status IN ('pending', 'failed', 'blocked') THEN NULL ELSE next_attempt_at END, \
           updated_at = now() \
         WHERE event_id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(&hit)
    .execute(conn)
    .await?;
    Ok((Scrubbed { events: hit.len(), attempts, dead_letters: dead.n as usize }, Some(last)))
}
