//! Webhook endpoints.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{EndpointId, OrgId};
use hookline_domain::status::DeliveryStatus;
use uuid::Uuid;

use crate::schema::{deliveries, webhook_endpoints};
use crate::Page;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub max_retries: i32,
    pub timeout_seconds: i32,
    pub initial_delay_ms: i64,
    pub multiplier: f64,
    pub max_delay_ms: i64,
    pub headers: serde_json::Value,
    pub rate_limit_per_second: Option<i32>,
    pub secret_ciphertext: Vec<u8>,
    pub previous_secret_ciphertext: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `hex`, `sha256_prefixed` or `ed25519`: how deliveries are signed.
    pub signature_format: String,
    /// The sealed Ed25519 key (PKCS#8), made when the endpoint first needs it.
    pub signing_key_ciphertext: Option<Vec<u8>>,
    /// Its public half, `whpk_…`.
    pub signing_public_key: Option<String>,
    /// A predicate over the delivery body (`hookline_domain::filter`); null takes every subscribed event.
    pub filter: Option<serde_json::Value>,
    /// `push`, or `pull`: never pushed to, read through the API.
    pub mode: String,
    /// `{"key", "on_dead_letter"}` (`hookline_domain::ordering`); null: deliveries go out in parallel.
    pub ordering: Option<serde_json::Value>,
}

/// The configurable part of an endpoint (PUT replaces all of it).
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = webhook_endpoints, treat_none_as_null = true)]
pub struct EndpointConfig {
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub is_active: bool,
    pub max_retries: i32,
    pub timeout_seconds: i32,
    pub initial_delay_ms: i64,
    pub multiplier: f64,
    pub max_delay_ms: i64,
    pub headers: serde_json::Value,
    pub rate_limit_per_second: Option<i32>,
    pub signature_format: String,
    pub filter: Option<serde_json::Value>,
    pub mode: String,
    pub ordering: Option<serde_json::Value>,
}

/// Gives the endpoint an Ed25519 key unless it has one; the key it ends up with is returned.
pub async fn ensure_signing_key(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sealed: Vec<u8>,
    public_key: &str,
) -> QueryResult<EndpointRow> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((
            webhook_endpoints::signing_key_ciphertext.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Bytea>,
            >("coalesce(signing_key_ciphertext, ")
            .bind::<diesel::sql_types::Bytea, _>(sealed)
            .sql(")")),
            webhook_endpoints::signing_public_key.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >("coalesce(signing_public_key, ")
            .bind::<diesel::sql_types::Text, _>(public_key.to_owned())
            .sql(")")),
        ))
        .returning(EndpointRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &EndpointRow) -> QueryResult<EndpointRow> {
    diesel::insert_into(webhook_endpoints::table)
        .values(row)
        .returning(EndpointRow::as_returning())
        .get_result(conn)
        .await
}

/// A live (not deleted) endpoint of the organisation.
pub async fn get(conn: &mut AsyncPgConnection, org_id: OrgId, id: EndpointId) -> QueryResult<Option<EndpointRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::id.eq(id))
        .filter(webhook_endpoints::deleted_at.is_null())
        .select(EndpointRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Any endpoint by id, deleted ones included (the worker needs to see deletions).
pub async fn get_any(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<EndpointRow>> {
    webhook_endpoints::table.find(id).select(EndpointRow::as_select()).first(conn).await.optional()
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<EndpointRow>> {
    let mut q = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::deleted_at.is_null())
        .select(EndpointRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(webhook_endpoints::id.lt(b));
    }
    let rows = q.order(webhook_endpoints::id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

pub async fn count_live(conn: &mut AsyncPgConnection, org_id: Uuid) -> QueryResult<i64> {
    webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::deleted_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Replaces the configuration. Re-enabling clears the disabled reason.
pub async fn update(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: EndpointId,
    config: &EndpointConfig,
) -> QueryResult<Option<EndpointRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    let target = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::id.eq(id))
        .filter(webhook_endpoints::deleted_at.is_null());
    let row = if config.is_active {
        diesel::update(target)
            .set((
                config,
                webhook_endpoints::disabled_reason.eq(None::<String>),
                webhook_endpoints::disabled_at.eq(None::<DateTime<Utc>>),
                webhook_endpoints::updated_at.eq(diesel::dsl::now),
            ))
            .returning(EndpointRow::as_returning())
            .get_result(conn)
            .await
    } else {
        diesel::update(target)
            .set((config, webhook_endpoints::updated_at.eq(diesel::dsl::now)))
            .returning(EndpointRow::as_returning())
            .get_result(conn)
            .await
    };
    row.optional()
}

/// Marks the endpoint deleted and cancels its pending deliveries; the
/// history stays.
pub async fn soft_delete(conn: &mut AsyncPgConnection, org_id: OrgId, id: EndpointId) -> QueryResult<Option<i64>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    let n = diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::org_id.eq(org_id))
            .filter(webhook_endpoints::id.eq(id))
            .filter(webhook_endpoints::deleted_at.is_null()),
    )
    .set((
        webhook_endpoints::deleted_at.eq(diesel::dsl::now),
        webhook_endpoints::is_active.eq(false),
        webhook_endpoints::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    if n == 0 {
        return Ok(None);
    }
    let cancelled = cancel_pending(conn, id).await?;
    Ok(Some(cancelled as i64))
}

/// Cancels every pending, retrying or blocked delivery of an endpoint.
pub async fn cancel_pending(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<usize> {
    diesel::update(deliveries::table.filter(deliveries::endpoint_id.eq(endpoint_id)).filter(
        deliveries::status.eq_any([
            DeliveryStatus::Pending.as_str(),
            DeliveryStatus::Failed.as_str(),
            DeliveryStatus::Blocked.as_str(),
        ]),
    ))
    .set((
        deliveries::status.eq(DeliveryStatus::Cancelled.as_str()),
        deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
        deliveries::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// Disables an endpoint (410 Gone, or the alerting service's rules).
pub async fn disable(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> QueryResult<bool> {
    let n = diesel::update(
        webhook_endpoints::table.filter(webhook_endpoints::id.eq(id)).filter(webhook_endpoints::is_active.eq(true)),
    )
    .set((
        webhook_endpoints::is_active.eq(false),
        webhook_endpoints::disabled_reason.eq(Some(reason)),
        webhook_endpoints::disabled_at.eq(diesel::dsl::now),
        webhook_endpoints::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(n > 0)
}

pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    id: EndpointId,
    new_ciphertext: &[u8],
    previous_ciphertext: Option<&[u8]>,
    previous_expires_at: Option<DateTime<Utc>>,
) -> QueryResult<Option<EndpointRow>> {
    let (org_id, id) = (org_id.as_uuid(), id.as_uuid());
    diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::org_id.eq(org_id))
            .filter(webhook_endpoints::id.eq(id))
            .filter(webhook_endpoints::deleted_at.is_null()),
    )
    .set((
        webhook_endpoints::secret_ciphertext.eq(new_ciphertext),
        webhook_endpoints::previous_secret_ciphertext.eq(previous_ciphertext),
        webhook_endpoints::previous_secret_expires_at.eq(previous_expires_at),
        webhook_endpoints::updated_at.eq(diesel::dsl::now),
    ))
    .returning(EndpointRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Ids of the active endpoints of an organisation subscribed to `event_type`
/// (by name, or through `*` unless `explicit_only`).
/// A subscribed endpoint: its id, filter and ordering as stored.
pub type Subscriber = (Uuid, Option<serde_json::Value>, Option<serde_json::Value>);

/// The active endpoints subscribed to a type (by name or `*`), with their filters and orderings.
pub async fn subscribed(conn: &mut AsyncPgConnection, org_id: Uuid, event_type: &str) -> QueryResult<Vec<Subscriber>> {
    use diesel::PgArrayExpressionMethods;
    webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::is_active.eq(true))
        .filter(webhook_endpoints::deleted_at.is_null())
        .filter(webhook_endpoints::events.overlaps_with(vec![event_type.to_owned(), "*".to_owned()]))
        .filter(webhook_endpoints::mode.eq("push"))
        .select((webhook_endpoints::id, webhook_endpoints::filter, webhook_endpoints::ordering))
        .order(webhook_endpoints::id.asc())
        .load(conn)
        .await
}

/// The active push endpoints that name the type itself (not `*`): those that
/// receive operational events.
pub async fn subscribed_by_name(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    event_type: &str,
) -> QueryResult<Vec<Uuid>> {
    use diesel::PgArrayExpressionMethods;
    let names = vec![event_type.to_owned()];
    webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::is_active.eq(true))
        .filter(webhook_endpoints::deleted_at.is_null())
        .filter(webhook_endpoints::events.overlaps_with(names))
        .filter(webhook_endpoints::mode.eq("push"))
        .select(webhook_endpoints::id)
        .order(webhook_endpoints::id.asc())
        .load(conn)
        .await
}

/// Clears an endpoint's failure counters (it was re-enabled).
pub async fn reset_health(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<()> {
    use crate::schema::endpoint_health;
    diesel::update(endpoint_health::table.find(endpoint_id))
        .set((
            endpoint_health::consecutive_failures.eq(0),
            endpoint_health::consecutive_dead_letters.eq(0),
            endpoint_health::failing_since.eq(None::<DateTime<Utc>>),
            endpoint_health::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
