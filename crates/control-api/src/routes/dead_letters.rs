//! Dead letters as a resource: deliveries that spent their retries, listed,
//! replayed one by one or by filter, and resolved (kept, but no longer
//! counted in `webhook_dlq_size`).

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::id::{DeliveryId, EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_domain::status::OutboxReason;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::dead_letters::{DeadLetterFilter, DeadLetterRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::routes::deliveries::DeliveryView;

/// The literal `/replay` is mounted before `/{delivery_id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/dead-letters", web::get().to(list_dead_letters))
        .route("/api/v1/dead-letters/replay", web::post().to(replay_matching))
        .route("/api/v1/dead-letters/{delivery_id}", web::get().to(get_dead_letter))
        .route("/api/v1/dead-letters/{delivery_id}/replay", web::post().to(replay_dead_letter))
        .route("/api/v1/dead-letters/{delivery_id}/resolve", web::post().to(resolve_dead_letter));
}

/// A delivery that spent its retries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub delivery_id: DeliveryId,
    pub webhook_id: EndpointId,
    pub event_id: EventId,
    /// The event type.
    pub event: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub dead_lettered_at: DateTime<Utc>,
    /// Resolved dead letters are kept but no longer counted as open.
    pub resolved: bool,
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the delivery was created (the event's ingest).
    pub created_at: DateTime<Utc>,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(r: DeadLetterRow) -> Self {
        Self {
            delivery_id: DeliveryId::from_uuid(r.delivery_id),
            webhook_id: EndpointId::from_uuid(r.endpoint_id),
            event_id: EventId::from_uuid(r.event_id),
            event: r.event_type,
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            dead_lettered_at: r.dead_lettered_at,
            resolved: r.resolved_at.is_some(),
            resolved_at: r.resolved_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this endpoint's dead letters (`ep_…`).
    pub webhook_id: Option<String>,
    /// Only this event type.
    pub event: Option<String>,
    /// Dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before this time.
    pub until: Option<DateTime<Utc>>,
    /// true: only resolved ones; false: only open ones; omitted: both.
    pub resolved: Option<bool>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Which dead letters to replay; every field narrows the set.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// `ep_…`
    pub webhook_id: Option<String>,
    /// An event type.
    pub event: Option<String>,
    /// Dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before this time.
    pub until: Option<DateTime<Utc>>,
    /// Default false: resolved dead letters are replayed only when asked for with true.
    pub resolved: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Dead letters queued for a new attempt.
    pub replayed: usize,
    /// True when more match than one call replays ([`REPLAY_MAX`]): call again to go on.
    pub has_more: bool,
}

/// At most this many dead letters are replayed by one call...
pub const REPLAY_MAX: usize = 10_000;
/// ...in transactions of this many, so that no lock is held for long.
const REPLAY_BATCH: usize = 500;

fn parse_delivery_id(id: &str) -> Result<DeliveryId, ApiError> {
    DeliveryId::parse(id).map_err(|_| ApiError::not_found("dead letter"))
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

/// List dead letters, newest delivery first
#[utoipa::path(
    get, path = "/api/v1/dead-letters", tag = "Dead letters",
    params(DeadLetterParams),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "A page of dead letters", body = ListResponse<DeadLetterView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_dead_letters(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<DeadLetterParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
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

/// One dead letter
#[utoipa::path(
    get, path = "/api/v1/dead-letters/{delivery_id}", tag = "Dead letters",
    params(("delivery_id" = String, Path, description = "dlv_… id")),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterView),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_dead_letter(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let id = parse_delivery_id(&id)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::dead_letters::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("dead letter"))?;
    Ok(HttpResponse::Ok().json(DeadLetterView::from(row)))
}

/// Replay one dead letter: a new attempt now
#[utoipa::path(
    post, path = "/api/v1/dead-letters/{delivery_id}/replay", tag = "Dead letters",
    params(("delivery_id" = String, Path, description = "dlv_… id")),
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "A new attempt is queued; the delivery is no longer a dead letter", body = DeliveryView),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled or deleted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_dead_letter(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(replay(&app, &auth, &id).await?))
}

pub async fn replay(app: &ControlState, auth: &Principal, id: &str) -> Result<DeliveryView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let id = parse_delivery_id(id)?;
    let principal = auth.clone();
    let org = principal.org_id.as_uuid();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let dead = hookline_store::dead_letters::get(c, org, id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("dead letter"))?;
            let ep = hookline_store::endpoints::get(c, org, dead.endpoint_id).await?;
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
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "dead_letter.replayed",
                "delivery",
                &id.to_string(),
                json!({}),
            )
            .await?;
            hookline_store::deliveries::get(c, dead.delivery_id)
                .await?
                .ok_or_else(|| ApiError::not_found("dead letter"))
        })
        .await?;
    Ok(DeliveryView::from(row))
}

/// Mark a dead letter resolved
///
/// It stays listed (with `resolved: true`) but no longer counts as open,
/// nor in `webhook_dlq_size`. Resolving twice keeps the first time.
#[utoipa::path(
    post, path = "/api/v1/dead-letters/{delivery_id}/resolve", tag = "Dead letters",
    params(("delivery_id" = String, Path, description = "dlv_… id")),
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 200, description = "Resolved", body = DeadLetterView),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resolve_dead_letter(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(resolve(&app, &auth, &id).await?))
}

pub async fn resolve(app: &ControlState, auth: &Principal, id: &str) -> Result<DeadLetterView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let id = parse_delivery_id(id)?;
    let principal = auth.clone();
    let org = principal.org_id.as_uuid();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            if !hookline_store::dead_letters::resolve(c, org, id.as_uuid()).await? {
                return Err(ApiError::not_found("dead letter"));
            }
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "dead_letter.resolved",
                "delivery",
                &id.to_string(),
                json!({}),
            )
            .await?;
            hookline_store::dead_letters::get(c, org, id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("dead letter"))
        })
        .await?;
    Ok(DeadLetterView::from(row))
}

/// Replay every dead letter matching a filter
///
/// Dead letters of disabled or deleted endpoints are left alone. Works in
/// batches of 500, at most 10,000 per call (`has_more` says when to call again).
#[utoipa::path(
    post, path = "/api/v1/dead-letters/replay", tag = "Dead letters",
    request_body = ReplayFilter,
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "Queued", body = Replayed),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_matching(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<ReplayFilter>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(replay_all(&app, &auth, body.into_inner()).await?))
}

pub async fn replay_all(app: &ControlState, auth: &Principal, body: ReplayFilter) -> Result<Replayed, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let f = filter(
        body.webhook_id.as_deref(),
        body.event.as_ref(),
        body.since,
        body.until,
        Some(body.resolved.unwrap_or(false)),
    )?;
    let principal = auth.clone();
    let org = principal.org_id.as_uuid();
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
    audit::record(
        &mut conn,
        principal.org_id,
        Actor::Key(&principal),
        "dead_letters.replayed",
        "dead_letters",
        &principal.org_id.to_string(),
        json!({"webhook_id": body.webhook_id, "event": body.event, "since": body.since, "until": body.until,
               "replayed": replayed, "has_more": has_more}),
    )
    .await?;
    Ok(Replayed { replayed, has_more })
}
