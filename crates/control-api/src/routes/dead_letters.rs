//! Dead letters as a resource: deliveries that spent their retries, listed,
//! replayed one by one or by filter, and resolved (kept, but no longer
//! counted in `webhook_dlq_size`).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::{DeliveryId, EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::ListResponse;
use hookline_store::dead_letters::DeadLetterRow;
use serde::{Deserialize, Serialize};

use crate::routes::deliveries::DeliveryView;
use crate::routes::scoped;
use crate::state::ControlState;
use crate::usecases::dead_letters;

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
    Ok(HttpResponse::Ok().json(dead_letters::list(&app, &auth, &q).await?))
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
    Ok(HttpResponse::Ok()
        .json(dead_letters::get(&app, &auth, scoped(&auth, Scope::DeliveriesRead, dead_letter_id(&id))?).await?))
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
    Ok(HttpResponse::Accepted()
        .json(dead_letters::replay(&app, &auth, scoped(&auth, Scope::DeliveriesRetry, dead_letter_id(&id))?).await?))
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
    Ok(HttpResponse::Ok()
        .json(dead_letters::resolve(&app, &auth, scoped(&auth, Scope::DeliveriesRetry, dead_letter_id(&id))?).await?))
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
    Ok(HttpResponse::Accepted().json(dead_letters::replay_all(&app, &auth, body.into_inner()).await?))
}

/// A `dlv_…` id from a dead letter's path.
pub fn dead_letter_id(text: &str) -> Result<DeliveryId, ApiError> {
    crate::usecases::parse_id(text, "dead letter")
}
