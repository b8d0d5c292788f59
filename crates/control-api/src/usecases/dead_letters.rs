//! Dead letters: listed, replayed one by one or by filter, and resolved.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::id::{DeliveryId, EndpointId};
use hookline_domain::scope::Scope;
use hookline_domain::status::OutboxReason;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::dead_letters::DeadLetterFilter;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::dead_letters::{DeadLetterParams, DeadLetterView, ReplayFilter, Replayed};
use crate::routes::deliveries::DeliveryView;
use crate::state::ControlState;

/// At most this many dead letters are replayed by one call...
pub const REPLAY_MAX: usize = 10_000;

/// ...in transactions of this many, so that no lock is held for long.
const REPLAY_BATCH: usize = 500;

pub async fn get(app: &ControlState, auth: &Principal, id: DeliveryId) -> Result<DeadLetterView, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::dead_letters::get(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("dead letter"))?;
    Ok(DeadLetterView::from(row))
}

fn filter(
    webhook_id: Option<&str>,
    event: Option<&String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    resolved: Option<bool>,
) -> Result<DeadLetterFilter, ApiError> {
    let endpoint_id = match webhook_id {
        Some(w) => {
            Some(EndpointId::parse(w).map_err(|e| ApiError::invalid_field("webhook_id", e.to_string()))?.as_uuid())
        }
        None => None,
    };
    time_in_range("since", since)?;
    time_in_range("until", until)?;
    Ok(DeadLetterFilter { endpoint_id, event_type: event.cloned(), since, until, resolved })
}

pub async fn list(
    app: &ControlState,
    auth: &Principal,
    q: &DeadLetterParams,
) -> Result<ListResponse<DeadLetterView>, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let f = filter(q.webhook_id.as_deref(), q.event.as_ref(), q.since, q.until, q.resolved)?;
    let mut conn = app.conn().await?;
    let page = hookline_store::dead_letters::list(&mut conn, auth.org_id.as_uuid(), &f, before, limit).await?;
    let last = page.items.last().map(|d| d.delivery_id);
    Ok(ListResponse::new(page.items.into_iter().map(DeadLetterView::from).collect(), page.has_more, last))
}

/// Queues a new attempt now, unless the endpoint is disabled or deleted.
pub async fn replay(app: &ControlState, auth: &Principal, id: DeliveryId) -> Result<DeliveryView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let dead = hookline_store::dead_letters::get(c, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("dead letter"))?;
        let ep = hookline_store::endpoints::get(c, auth.org_id, EndpointId::from_uuid(dead.endpoint_id)).await?;
        if ep.is_none_or(|e| !e.is_active) {
            return Err(ApiError::conflict(
                "endpoint_inactive",
                "the dead letter's endpoint is disabled or deleted; enable it first",
            ));
        }
        let n = hookline_store::deliveries::requeue_many(c, &[dead.delivery_id], OutboxReason::Manual).await?;
        if n == 0 {
            return Err(ApiError::not_found("dead letter"));
        }
        trail.audit(auth.org_id, "dead_letter.replayed", "delivery", id, json!({}));
        hookline_store::deliveries::get(c, dead.delivery_id).await?.ok_or_else(|| ApiError::not_found("dead letter"))
    })
    .await?;
    Ok(DeliveryView::from(row))
}

/// Keeps the dead letter listed but no longer open; resolving twice keeps the first time.
pub async fn resolve(app: &ControlState, auth: &Principal, id: DeliveryId) -> Result<DeadLetterView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        if !hookline_store::dead_letters::resolve(c, auth.org_id, id).await? {
            return Err(ApiError::not_found("dead letter"));
        }
        trail.audit(auth.org_id, "dead_letter.resolved", "delivery", id, json!({}));
        hookline_store::dead_letters::get(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("dead letter"))
    })
    .await?;
    Ok(DeadLetterView::from(row))
}

/// Replays the dead letters matching the filter, in batches, at most [`REPLAY_MAX`] per call.
pub async fn replay_all(app: &ControlState, auth: &Principal, body: ReplayFilter) -> Result<Replayed, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let f = filter(
        body.webhook_id.as_deref(),
        body.event.as_ref(),
        body.since,
        body.until,
        Some(body.resolved.unwrap_or(false)),
    )?;
    let org = auth.org_id.as_uuid();
    let mut conn = app.conn().await?;
    let (mut replayed, mut after, mut has_more) = (0, None, false);
    while replayed < REPLAY_MAX {
        let take = REPLAY_BATCH.min(REPLAY_MAX - replayed);
        let (n, last, full) = conn
            .transaction::<_, ApiError, _>(async |c| {
                let ids = hookline_store::dead_letters::replayable(c, org, &f, after, take as i64).await?;
                let n = hookline_store::deliveries::requeue_many(c, &ids, OutboxReason::Manual).await?;
                Ok((n, ids.last().copied(), ids.len() == take))
            })
            .await?;
        replayed += n;
        after = last;
        if !full {
            break;
        }
        has_more = replayed >= REPLAY_MAX;
    }
    let details = json!({
        "webhook_id": body.webhook_id, "event": body.event, "since": body.since, "until": body.until,
        "replayed": replayed, "has_more": has_more,
    });
    change(&mut conn, &app.caches, Actor::Key(auth), async |_, trail| {
        trail.audit(auth.org_id, "dead_letters.replayed", "dead_letters", auth.org_id, details);
        Ok(())
    })
    .await?;
    Ok(Replayed { replayed, has_more })
}
