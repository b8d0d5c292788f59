//! Retention: bounded deletes of what is past its window.

use diesel::sql_types::{BigInt, Integer};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Deletes up to `batch` deliveries (their attempts and outbox rows go
/// with them) older than their organisation's retention. Returns how many.
pub async fn delete_old_deliveries(conn: &mut AsyncPgConnection, batch: i64) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM deliveries WHERE id IN ( \
           SELECT d.id FROM deliveries d JOIN organisations o ON o.id = d.org_id \
           WHERE d.created_at < now() - make_interval(days => o.retention_days) LIMIT $1)",
    )
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await
}

/// Deletes up to `batch` events past retention that no delivery refers to.
pub async fn delete_old_events(conn: &mut AsyncPgConnection, batch: i64) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM events WHERE id IN ( \
           SELECT e.id FROM events e JOIN organisations o ON o.id = e.org_id \
           WHERE e.created_at < now() - make_interval(days => o.retention_days) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT $1)",
    )
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await
}

/// Forgets the stored hashes of keys that expired or were revoked more than
/// `days` ago (the row stays for the audit trail, unusable).
pub async fn scrub_dead_key_hashes(conn: &mut AsyncPgConnection, days: i32) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "UPDATE api_keys SET key_hash = sha256(gen_random_uuid()::text::bytea), previous_key_hash = NULL, \
                previous_expires_at = NULL, display_prefix = 'sk_live_…(scrubbed)' \
         WHERE display_prefix <> 'sk_live_…(scrubbed)' \
           AND (expires_at < now() - make_interval(days => $1) OR revoked_at < now() - make_interval(days => $1))",
    )
    .bind::<Integer, _>(days)
    .execute(conn)
    .await
}

/// Drops the sealed secrets of endpoints deleted more than `days` ago.
pub async fn scrub_deleted_endpoint_secrets(conn: &mut AsyncPgConnection, days: i32) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "UPDATE webhook_endpoints SET secret_ciphertext = ''::bytea, previous_secret_ciphertext = NULL, headers = '{}' \
         WHERE deleted_at < now() - make_interval(days => $1) AND secret_ciphertext <> ''::bytea",
    )
    .bind::<Integer, _>(days)
    .execute(conn)
    .await
}

/// Bookkeeping rows: published outbox rows and counted outcomes older than `days`.
pub async fn prune_bookkeeping(conn: &mut AsyncPgConnection, days: i32) -> diesel::QueryResult<usize> {
    let a = diesel::sql_query("DELETE FROM outbox WHERE published_at < now() - make_interval(days => $1)")
        .bind::<Integer, _>(days)
        .execute(conn)
        .await?;
    let b = diesel::sql_query("DELETE FROM processed_outcomes WHERE processed_at < now() - make_interval(days => $1)")
        .bind::<Integer, _>(days)
        .execute(conn)
        .await?;
    Ok(a + b)
}
