//! Hourly rollups for analytics, and the queries that read them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{delivery_rollups, event_rollups};

/// Upper bounds of the latency buckets, in milliseconds (the last is open).
pub const LATENCY_BOUNDS_MS: [u64; 13] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

pub fn bucket_of(latency_ms: u64) -> usize {
    LATENCY_BOUNDS_MS.iter().position(|b| latency_ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// Estimates a percentile from bucket counts (linear within a bucket).
pub fn percentile(buckets: &[i64], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let target = (total as f64 * q).ceil().max(1.0);
    let mut seen = 0.0;
    for (i, n) in buckets.iter().enumerate() {
        let n = *n as f64;
        if seen + n >= target && n > 0.0 {
            let lo = if i == 0 { 0.0 } else { LATENCY_BOUNDS_MS[i - 1] as f64 };
            let hi = LATENCY_BOUNDS_MS.get(i).map(|b| *b as f64).unwrap_or(lo * 2.0);
            return Some(lo + (hi - lo) * ((target - seen) / n));
        }
        seen += n;
    }
    None
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = delivery_rollups)]
pub struct DeliveryIncrement {
    pub org_id: Uuid,
    pub hour: DateTime<Utc>,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub delivered: i64,
    pub dead_lettered: i64,
    pub latency_buckets: Vec<i64>,
    pub latency_ms_total: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = event_rollups)]
pub struct EventIncrement {
    pub org_id: Uuid,
    pub hour: DateTime<Utc>,
    pub event_type: String,
    pub events: i64,
    pub deliveries: i64,
}

pub async fn add_deliveries(conn: &mut AsyncPgConnection, rows: &[DeliveryIncrement]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(delivery_rollups::table)
        .values(rows)
        .on_conflict((
            delivery_rollups::org_id,
            delivery_rollups::hour,
            delivery_rollups::endpoint_id,
            delivery_rollups::event_type,
        ))
        .do_update()
        .set((
            delivery_rollups::attempts.eq(delivery_rollups::attempts + excluded(delivery_rollups::attempts)),
            delivery_rollups::succeeded.eq(delivery_rollups::succeeded + excluded(delivery_rollups::succeeded)),
            delivery_rollups::failed.eq(delivery_rollups::failed + excluded(delivery_rollups::failed)),
            delivery_rollups::delivered.eq(delivery_rollups::delivered + excluded(delivery_rollups::delivered)),
            delivery_rollups::dead_lettered
                .eq(delivery_rollups::dead_lettered + excluded(delivery_rollups::dead_lettered)),
            delivery_rollups::latency_ms_total
                .eq(delivery_rollups::latency_ms_total + excluded(delivery_rollups::latency_ms_total)),
            delivery_rollups::latency_buckets.eq(diesel::dsl::sql::<Array<BigInt>>(
                "hookline_array_add(delivery_rollups.latency_buckets, excluded.latency_buckets)",
            )),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn add_events(conn: &mut AsyncPgConnection, rows: &[EventIncrement]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(event_rollups::table)
        .values(rows)
        .on_conflict((event_rollups::org_id, event_rollups::hour, event_rollups::event_type))
        .do_update()
        .set((
            event_rollups::events.eq(event_rollups::events + excluded(event_rollups::events)),
            event_rollups::deliveries.eq(event_rollups::deliveries + excluded(event_rollups::deliveries)),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Delivery figures grouped by a key (endpoint, event type, or time bucket).
#[derive(Debug, Clone, QueryableByName)]
pub struct DeliveryGroup {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = BigInt)]
    pub succeeded: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub delivered: i64,
    #[diesel(sql_type = BigInt)]
    pub dead_lettered: i64,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    pub latency_buckets: Option<Vec<i64>>,
    #[diesel(sql_type = BigInt)]
    pub latency_ms_total: i64,
}

/// `group` is one of "total", "endpoint", "event_type", "hour", "day".
pub async fn delivery_groups(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    since: DateTime<Utc>,
    group: &str,
) -> QueryResult<Vec<DeliveryGroup>> {
    let key = match group {
        "endpoint" => "endpoint_id::text",
        "event_type" => "event_type",
        "hour" => "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')",
        "day" => "to_char(date_trunc('day', hour AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"00:00:00\"Z\"')",
        _ => "'total'",
    };
    // Plain per-bucket sums: native aggregates, no per-row function calls.
    let buckets =
        (1..=BUCKETS).map(|i| format!("coalesce(sum(latency_buckets[{i}]), 0)::bigint")).collect::<Vec<_>>().join(", ");
    diesel::sql_query(format!(
        "SELECT {key} AS key, coalesce(sum(attempts), 0)::bigint AS attempts, coalesce(sum(succeeded), 0)::bigint AS succeeded, \
         coalesce(sum(failed), 0)::bigint AS failed, coalesce(sum(delivered), 0)::bigint AS delivered, \
         coalesce(sum(dead_lettered), 0)::bigint AS dead_lettered, ARRAY[{buckets}] AS latency_buckets, \
         coalesce(sum(latency_ms_total), 0)::bigint AS latency_ms_total \
         FROM delivery_rollups WHERE org_id = $1 AND hour >= date_trunc('hour', $2::timestamptz) GROUP BY 1 ORDER BY 1"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await
}

#[derive(Debug, Clone, QueryableByName)]
pub struct EventGroup {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub events: i64,
    #[diesel(sql_type = BigInt)]
    pub deliveries: i64,
}

pub async fn event_groups(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    since: DateTime<Utc>,
    group: &str,
) -> QueryResult<Vec<EventGroup>> {
    let key = match group {
        "event_type" => "event_type",
        "hour" => "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')",
        "day" => "to_char(date_trunc('day', hour AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"00:00:00\"Z\"')",
        _ => "'total'",
    };
    diesel::sql_query(format!(
        "SELECT {key} AS key, coalesce(sum(events), 0)::bigint AS events, coalesce(sum(deliveries), 0)::bigint AS deliveries \
         FROM event_rollups WHERE org_id = $1 AND hour >= date_trunc('hour', $2::timestamptz) GROUP BY 1 ORDER BY 1"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await
}

#[derive(Debug, Clone, QueryableByName)]
pub struct EndpointCounts {
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    #[diesel(sql_type = BigInt)]
    pub active: i64,
    #[diesel(sql_type = BigInt)]
    pub failing: i64,
    #[diesel(sql_type = BigInt)]
    pub disabled: i64,
}

pub async fn endpoint_counts(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<EndpointCounts> {
    diesel::sql_query(
        "SELECT count(*) AS total, \
                count(*) FILTER (WHERE e.is_active AND coalesce(h.consecutive_failures, 0) = 0) AS active, \
                count(*) FILTER (WHERE e.is_active AND coalesce(h.consecutive_failures, 0) > 0) AS failing, \
                count(*) FILTER (WHERE NOT e.is_active) AS disabled \
         FROM webhook_endpoints e LEFT JOIN endpoint_health h ON h.endpoint_id = e.id \
         WHERE e.org_id = $1 AND e.deleted_at IS NULL",
    )
    .bind::<SqlUuid, _>(org_id)
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Requests refused with 429 for the organisation's keys since `since`.
pub async fn rate_limit_hits(conn: &mut AsyncPgConnection, org_id: Uuid, since: DateTime<Utc>) -> QueryResult<i64> {
    let s: Sum = diesel::sql_query(
        "SELECT coalesce(sum(rate_limited), 0)::bigint AS n FROM api_key_usage WHERE org_id = $1 AND hour >= date_trunc('hour', $2::timestamptz)",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Timestamptz, _>(since)
    .get_result(conn)
    .await?;
    Ok(s.n)
}

impl DeliveryGroup {
    /// Sums groups (the total of an organisation from its per-endpoint groups).
    pub fn sum<'a>(key: &str, groups: impl IntoIterator<Item = &'a DeliveryGroup>) -> DeliveryGroup {
        let mut total = DeliveryGroup {
            key: key.to_owned(),
            attempts: 0,
            succeeded: 0,
            failed: 0,
            delivered: 0,
            dead_lettered: 0,
            latency_buckets: Some(vec![0; BUCKETS]),
            latency_ms_total: 0,
        };
        for g in groups {
            total.attempts += g.attempts;
            total.succeeded += g.succeeded;
            total.failed += g.failed;
            total.delivered += g.delivered;
            total.dead_lettered += g.dead_lettered;
            total.latency_ms_total += g.latency_ms_total;
            if let (Some(t), Some(b)) = (total.latency_buckets.as_mut(), g.latency_buckets.as_ref()) {
                for (x, y) in t.iter_mut().zip(b) {
                    *x += y;
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(bucket_of(3), 0);
        assert_eq!(bucket_of(5), 0);
        assert_eq!(bucket_of(6), 1);
        assert_eq!(bucket_of(100_000), BUCKETS - 1);
        let mut b = vec![0i64; BUCKETS];
        b[bucket_of(40)] = 90;
        b[bucket_of(400)] = 10;
        let p50 = percentile(&b, 0.5).unwrap();
        assert!((25.0..=50.0).contains(&p50), "{p50}");
        let p95 = percentile(&b, 0.95).unwrap();
        assert!((250.0..=500.0).contains(&p95), "{p95}");
        assert_eq!(percentile(&[0; BUCKETS], 0.5), None);
    }
}
