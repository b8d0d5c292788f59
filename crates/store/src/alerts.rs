//! Alerts, alert settings, and the alerting service's bookkeeping.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{AlertId, KeyId, OrgId};
use hookline_domain::status::AlertRule;
use uuid::Uuid;

use crate::schema::{alert_settings, alerts};
use crate::Page;

/// `alerts.rule` as read: a name that is not an [`AlertRule`] fails the read.
#[derive(Debug, diesel::deserialize::FromSqlRow)]
pub struct RuleText(AlertRule);

impl diesel::deserialize::FromSql<Text, diesel::pg::Pg> for RuleText {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let name = <String as diesel::deserialize::FromSql<Text, diesel::pg::Pg>>::from_sql(bytes)?;
        Ok(Self(AlertRule::try_from(name)?))
    }
}

impl From<RuleText> for AlertRule {
    fn from(r: RuleText) -> Self {
        r.0
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: Uuid,
    pub org_id: Uuid,
    #[diesel(deserialize_as = RuleText)]
    pub rule: AlertRule,
    pub endpoint_id: Option<Uuid>,
    pub state: String,
    pub occurrences: i32,
    pub message: String,
    pub details: serde_json::Value,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Upserted {
    #[diesel(embed)]
    alert: AlertRow,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// Opens an alert, or counts another occurrence of the unresolved one for
/// the same rule and endpoint. Returns the alert and whether it is new.
pub async fn raise(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    org_id: Uuid,
    rule: AlertRule,
    endpoint_id: Option<Uuid>,
    message: &str,
    details: &serde_json::Value,
    occurrences: i32,
) -> QueryResult<(AlertRow, bool)> {
    let r: Upserted = diesel::sql_query(
        "INSERT INTO alerts (id, org_id, rule, endpoint_id, message, details, occurrences) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (org_id, rule, coalesce(endpoint_id, '00000000-0000-0000-0000-000000000000')) WHERE state <> 'resolved' \
         DO UPDATE SET occurrences = alerts.occurrences + excluded.occurrences, last_seen_at = now(), \
                       message = excluded.message, details = excluded.details \
         RETURNING *, (xmax = 0) AS inserted",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(rule.as_str())
    .bind::<Nullable<SqlUuid>, _>(endpoint_id)
    .bind::<Text, _>(message)
    .bind::<Jsonb, _>(details)
    .bind::<Integer, _>(occurrences)
    .get_result(conn)
    .await?;
    Ok((r.alert, r.inserted))
}

/// Resolves the endpoint's unresolved alerts of the given rules.
pub async fn resolve_for_endpoint(
    conn: &mut AsyncPgConnection,
    endpoint_id: Uuid,
    rules: &[AlertRule],
) -> QueryResult<Vec<AlertRow>> {
    diesel::sql_query(
        "UPDATE alerts SET state = 'resolved', resolved_at = now() \
         WHERE endpoint_id = $1 AND state <> 'resolved' AND rule = ANY($2) RETURNING *",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .bind::<Array<Text>, _>(rules.iter().map(|r| r.as_str()).collect::<Vec<_>>())
    .load(conn)
    .await
}

#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub state: Option<String>,
    pub rule: Option<AlertRule>,
    pub endpoint_id: Option<Uuid>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    f: &AlertFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<AlertRow>> {
    let mut q = alerts::table.filter(alerts::org_id.eq(org_id)).select(AlertRow::as_select()).into_boxed();
    if let Some(s) = &f.state {
        q = q.filter(alerts::state.eq(s.clone()));
    }
    if let Some(r) = f.rule {
        q = q.filter(alerts::rule.eq(r.as_str()));
    }
    if let Some(e) = f.endpoint_id {
        q = q.filter(alerts::endpoint_id.eq(e));
    }
    if let Some(b) = before {
        q = q.filter(alerts::id.lt(b));
    }
    let rows = q.order(alerts::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

pub async fn get(conn: &mut AsyncPgConnection, org_id: OrgId, id: AlertId) -> QueryResult<Option<AlertRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    alerts::table
        .filter(alerts::org_id.eq(org_id))
        .filter(alerts::id.eq(id))
        .select(AlertRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn acknowledge(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: AlertId,
    by: KeyId,
) -> QueryResult<Option<AlertRow>> {
    let (org_id, id, by) = (org_id.as_uuid(), id.as_uuid(), by.as_uuid());
    diesel::update(
        alerts::table.filter(alerts::org_id.eq(org_id)).filter(alerts::id.eq(id)).filter(alerts::state.eq("open")),
    )
    .set((
        alerts::state.eq("acknowledged"),
        alerts::acknowledged_at.eq(Some(Utc::now())),
        alerts::acknowledged_by.eq(Some(by)),
    ))
    .returning(AlertRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Claims the right to notify about `alert` on `channel`: false when the
/// last notification there is younger than `min_interval_secs`.
pub async fn claim_notification(
    conn: &mut AsyncPgConnection,
    alert_id: Uuid,
    channel: &str,
    min_interval_secs: i64,
) -> QueryResult<bool> {
    let n = diesel::sql_query(
        "INSERT INTO alert_notifications (alert_id, channel, last_sent_at) VALUES ($1, $2, now()) \
         ON CONFLICT (alert_id, channel) DO UPDATE SET last_sent_at = now() \
         WHERE alert_notifications.last_sent_at < now() - make_interval(secs => $3)",
    )
    .bind::<SqlUuid, _>(alert_id)
    .bind::<Text, _>(channel)
    .bind::<BigInt, _>(min_interval_secs)
    .execute(conn)
    .await?;
    if n > 0 {
        diesel::update(alerts::table.find(alert_id))
            .set(alerts::last_notified_at.eq(Some(Utc::now())))
            .execute(conn)
            .await?;
    }
    Ok(n > 0)
}

#[derive(QueryableByName)]
struct MarkedRow {
    #[diesel(sql_type = SqlUuid)]
    delivery_id: Uuid,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Text)]
    kind: String,
}

/// Records that these outcomes (delivery, attempt, kind) were counted, in one
/// statement; returns those that had not been yet. An outcome listed twice
/// is returned once.
pub async fn mark_outcomes(
    conn: &mut AsyncPgConnection,
    outcomes: &[(Uuid, i32, &str)],
) -> QueryResult<std::collections::HashSet<(Uuid, i32, String)>> {
    if outcomes.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<MarkedRow> = diesel::sql_query(
        "INSERT INTO processed_outcomes (delivery_id, attempt, kind) \
         SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[]) ON CONFLICT DO NOTHING \
         RETURNING delivery_id, attempt, kind",
    )
    .bind::<Array<SqlUuid>, _>(outcomes.iter().map(|o| o.0).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(outcomes.iter().map(|o| o.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(outcomes.iter().map(|o| o.2).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.delivery_id, r.attempt, r.kind)).collect())
}

#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Rate {
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// Attempts and failed attempts of an endpoint since `since`, over at most
/// the latest 1000 attempts (bounded cost however busy the endpoint is).
///
/// Runs inside the caller's transaction. The bound holds only if the plan
/// walks `delivery_attempts_endpoint_time` newest first and stops at the
/// thousandth row. Without statistics on the table (young, or a server
/// with autovacuum off) the planner guesses a few hundred rows and would
/// rather collect the whole window and sort it: 6 to 9 ms for an endpoint
/// with 12,000 recent attempts, against 0.6 ms. Sorting is therefore ruled
/// out for this one statement.
pub async fn failure_rate(conn: &mut AsyncPgConnection, endpoint_id: Uuid, since: DateTime<Utc>) -> QueryResult<Rate> {
    diesel::sql_query("SET LOCAL enable_sort = off").execute(conn).await?;
    let rate = diesel::sql_query(
        "SELECT count(*) AS attempts, count(*) FILTER (WHERE NOT succeeded) AS failed FROM ( \
           SELECT succeeded FROM delivery_attempts WHERE endpoint_id = $1 AND created_at >= $2 \
           ORDER BY created_at DESC LIMIT 1000) recent",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .bind::<Timestamptz, _>(since)
    .get_result(conn)
    .await?;
    diesel::sql_query("SET LOCAL enable_sort = on").execute(conn).await?;
    Ok(rate)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = alert_settings, treat_none_as_null = true)]
pub struct SettingsRow {
    pub org_id: Uuid,
    pub endpoint_failing_threshold: i32,
    pub auto_disable_dead_letters: i32,
    pub auto_disable_failing_hours: i32,
    pub failure_rate_percent: i32,
    pub failure_rate_window_minutes: i32,
    pub failure_rate_min_attempts: i32,
    pub email_recipients: Vec<String>,
    pub slack_webhook_ciphertext: Option<Vec<u8>>,
    pub notify_via_webhooks: bool,
    pub updated_at: DateTime<Utc>,
    /// Failed attempts in a row that disable an endpoint; 0 is off.
    pub auto_disable_failed_attempts: i32,
}

impl SettingsRow {
    pub fn defaults(org_id: Uuid) -> Self {
        Self {
            org_id,
            endpoint_failing_threshold: 5,
            auto_disable_dead_letters: 10,
            auto_disable_failing_hours: 24,
            failure_rate_percent: 20,
            failure_rate_window_minutes: 15,
            failure_rate_min_attempts: 20,
            email_recipients: Vec::new(),
            slack_webhook_ciphertext: None,
            notify_via_webhooks: true,
            updated_at: Utc::now(),
            auto_disable_failed_attempts: 0,
        }
    }
}

pub async fn settings(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<SettingsRow> {
    let row = alert_settings::table.find(org_id).select(SettingsRow::as_select()).first(conn).await.optional()?;
    Ok(row.unwrap_or_else(|| SettingsRow::defaults(org_id)))
}

pub async fn put_settings(conn: &mut AsyncPgConnection, row: &SettingsRow) -> QueryResult<SettingsRow> {
    diesel::insert_into(alert_settings::table)
        .values(row)
        .on_conflict(alert_settings::org_id)
        .do_update()
        .set(row)
        .returning(SettingsRow::as_returning())
        .get_result(conn)
        .await
}

#[derive(QueryableByName)]
pub struct StaleFailing {
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub endpoint_id: Uuid,
    #[diesel(sql_type = Integer)]
    pub hours: i32,
}

/// Active endpoints failing without a success for longer than their org allows.
pub async fn stale_failing(conn: &mut AsyncPgConnection) -> QueryResult<Vec<StaleFailing>> {
    diesel::sql_query(
        "SELECT h.org_id, h.endpoint_id, coalesce(s.auto_disable_failing_hours, 24) AS hours \
         FROM endpoint_health h \
         JOIN webhook_endpoints e ON e.id = h.endpoint_id AND e.is_active AND e.deleted_at IS NULL \
         LEFT JOIN alert_settings s ON s.org_id = h.org_id \
         WHERE h.failing_since IS NOT NULL \
           AND h.failing_since < now() - make_interval(hours => coalesce(s.auto_disable_failing_hours, 24)) \
           AND (h.last_success_at IS NULL OR h.last_success_at < h.failing_since)",
    )
    .load(conn)
    .await
}

/// The rules of the endpoint's unresolved alerts.
pub async fn unresolved_rules(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<Vec<AlertRule>> {
    let names: Vec<String> = alerts::table
        .filter(alerts::endpoint_id.eq(endpoint_id))
        .filter(alerts::state.ne("resolved"))
        .select(alerts::rule)
        .load(conn)
        .await?;
    // A rule this version does not know cannot be one it resolves.
    Ok(names.iter().filter_map(|n| AlertRule::parse(n)).collect())
}

/// A row of one column, `id`.
#[derive(QueryableByName)]
pub(crate) struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub(crate) id: Uuid,
}

/// Whether a success to the endpoint `e.id` could change anything, as an SQL
/// condition over a row source aliased `e`: it has an unresolved alert, or
/// its health shows a failing streak or a failure within the last hour (or
/// within the org's failure-rate window, when that is longer: a success can
/// complete the minimum number of attempts of a window). The worker asks it while
/// recording attempts (see `hot::attempts::record_attempts`), alerting when
/// judging them: one definition, so neither misses what the other skips.
pub(crate) const SUCCESS_MATTERS: &str =
    "(EXISTS (SELECT 1 FROM alerts a WHERE a.endpoint_id = e.id AND a.state <> 'resolved') \
     OR EXISTS (SELECT 1 FROM endpoint_health h WHERE h.endpoint_id = e.id \
         AND (h.consecutive_failures > 0 OR h.failing_since IS NOT NULL \
             OR h.last_failure_at > now() - interval '1 minute' * greatest(60, coalesce( \
                 (SELECT st.failure_rate_window_minutes FROM alert_settings st WHERE st.org_id = h.org_id), 0)))))";

/// Of these endpoints, those where a success could change anything, in one
/// query (see [`SUCCESS_MATTERS`]).
pub async fn needing_attention(
    conn: &mut AsyncPgConnection,
    endpoint_ids: &[Uuid],
) -> QueryResult<std::collections::HashSet<Uuid>> {
    let rows: Vec<IdRow> = diesel::sql_query(format!("SELECT e.id FROM unnest($1) AS e(id) WHERE {SUCCESS_MATTERS}"))
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(endpoint_ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
