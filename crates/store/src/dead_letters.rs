//! Dead letters: deliveries that spent their retries, kept until replayed.
//! Rows appear and disappear with `deliveries.status` (a trigger, see the
//! migration); here they are listed, resolved and picked for replay.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::id::{DeliveryId, OrgId};
use uuid::Uuid;

use crate::schema::{dead_letters, deliveries, webhook_endpoints};
use crate::Page;

/// A dead letter with what its delivery knows of the last attempt.
#[derive(Debug, Clone, Queryable)]
pub struct DeadLetterRow {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub dead_lettered_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub event_id: Uuid,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone)]
pub struct DeadLetterFilter {
    pub endpoint_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// On the time the delivery was dead-lettered.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub resolved: Option<bool>,
}

type Columns = (
    dead_letters::delivery_id,
    dead_letters::endpoint_id,
    dead_letters::event_type,
    dead_letters::dead_lettered_at,
    dead_letters::resolved_at,
    deliveries::event_id,
    deliveries::attempt_count,
    deliveries::last_status_code,
    deliveries::last_error,
    deliveries::created_at,
);

const COLUMNS: Columns = (
    dead_letters::delivery_id,
    dead_letters::endpoint_id,
    dead_letters::event_type,
    dead_letters::dead_lettered_at,
    dead_letters::resolved_at,
    deliveries::event_id,
    deliveries::attempt_count,
    deliveries::last_status_code,
    deliveries::last_error,
    deliveries::created_at,
);

/// Newest delivery first, before the delivery `before`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    f: &DeadLetterFilter,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Page<DeadLetterRow>> {
    let mut q = dead_letters::table
        .inner_join(deliveries::table)
        .filter(dead_letters::org_id.eq(org_id))
        .select(COLUMNS)
        .into_boxed();
    if let Some(e) = f.endpoint_id {
        q = q.filter(dead_letters::endpoint_id.eq(e));
    }
    if let Some(t) = &f.event_type {
        q = q.filter(dead_letters::event_type.eq(t.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(dead_letters::dead_lettered_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(dead_letters::dead_lettered_at.lt(u));
    }
    match f.resolved {
        Some(true) => q = q.filter(dead_letters::resolved_at.is_not_null()),
        Some(false) => q = q.filter(dead_letters::resolved_at.is_null()),
        None => {}
    }
    if let Some(b) = before {
        q = q.filter(dead_letters::delivery_id.lt(b));
    }
    let rows = q.order(dead_letters::delivery_id.desc()).limit(limit + 1).load(conn).await?;
    Ok(Page::from_rows(rows, limit))
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    org_id: OrgId,
    delivery_id: DeliveryId,
) -> QueryResult<Option<DeadLetterRow>> {
    let (org_id, delivery_id) = (org_id.as_uuid(), delivery_id.as_uuid());
    dead_letters::table
        .inner_join(deliveries::table)
        .filter(dead_letters::org_id.eq(org_id))
        .filter(dead_letters::delivery_id.eq(delivery_id))
        .select(COLUMNS)
        .first(conn)
        .await
        .optional()
}

/// Marks a dead letter resolved (once: a second call keeps the first time).
/// False when the organisation has no such dead letter.
pub async fn resolve(conn: &mut AsyncPgConnection, org_id: OrgId, delivery_id: DeliveryId) -> QueryResult<bool> {
    let (org_id, delivery_id) = (org_id.as_uuid(), delivery_id.as_uuid());
    let n = diesel::update(
        dead_letters::table.filter(dead_letters::org_id.eq(org_id)).filter(dead_letters::delivery_id.eq(delivery_id)),
    )
    .set(dead_letters::resolved_at.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(
        "coalesce(resolved_at, now())",
    )))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Up to `limit` dead letters matching the filter whose endpoint is enabled,
/// after the delivery `after` in id order. Not locked: requeueing takes only
/// deliveries still dead-lettered, so two replays never queue one twice.
pub async fn replayable(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    f: &DeadLetterFilter,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    let mut q = dead_letters::table
        .inner_join(webhook_endpoints::table.on(webhook_endpoints::id.eq(dead_letters::endpoint_id)))
        .filter(dead_letters::org_id.eq(org_id))
        .filter(dead_letters::delivery_id.gt(after.unwrap_or(Uuid::nil())))
        .filter(webhook_endpoints::is_active.eq(true))
        .filter(webhook_endpoints::deleted_at.is_null())
        .select(dead_letters::delivery_id)
        .into_boxed();
    if let Some(e) = f.endpoint_id {
        q = q.filter(dead_letters::endpoint_id.eq(e));
    }
    if let Some(t) = &f.event_type {
        q = q.filter(dead_letters::event_type.eq(t.clone()));
    }
    if let Some(s) = f.since {
        q = q.filter(dead_letters::dead_lettered_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(dead_letters::dead_lettered_at.lt(u));
    }
    match f.resolved {
        Some(true) => q = q.filter(dead_letters::resolved_at.is_not_null()),
        Some(false) => q = q.filter(dead_letters::resolved_at.is_null()),
        None => {}
    }
    q.order(dead_letters::delivery_id.asc()).limit(limit).load(conn).await
}

/// Unresolved dead letters across every organisation (`webhook_dlq_size`).
pub async fn unresolved(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    dead_letters::table.filter(dead_letters::resolved_at.is_null()).count().get_result(conn).await
}
