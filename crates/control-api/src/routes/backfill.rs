//! Backfills: deliver to an endpoint the past events it would have received
//! (a new endpoint, or one re-enabled after a gap). The ingest service's
//! relay advances them a batch at a time, beside live traffic.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::{BackfillId, EndpointId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_store::backfill::BackfillRow;
use serde::{Deserialize, Serialize};

use crate::routes::scoped;
use crate::routes::webhooks::endpoint_id;
use crate::state::ControlState;
use crate::usecases::backfill;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/{id}/backfill", web::post().to(create_backfill))
        .route("/api/v1/webhooks/{id}/backfill/{job_id}", web::get().to(get_backfill));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillInput {
    /// Events accepted at or after this time.
    pub since: DateTime<Utc>,
    /// …and before this one (default now).
    pub until: Option<DateTime<Utc>>,
    /// Only these event types; omitted, the endpoint's own subscription.
    pub events: Option<Vec<String>>,
}

/// A backfill and how far it got.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackfillView {
    pub id: BackfillId,
    pub webhook_id: EndpointId,
    /// `running`, `completed`, or `cancelled` (the endpoint was disabled or deleted).
    pub state: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub events: Option<Vec<String>>,
    /// Events looked at so far.
    pub scanned: i64,
    /// Deliveries queued so far (events the endpoint had already been sent are skipped).
    pub enqueued: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<BackfillRow> for BackfillView {
    fn from(r: BackfillRow) -> Self {
        Self {
            id: BackfillId::from_uuid(r.id),
            webhook_id: EndpointId::from_uuid(r.endpoint_id),
            state: r.state,
            since: r.since,
            until: r.until,
            events: r.events,
            scanned: r.scanned,
            enqueued: r.enqueued,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// Deliver past events to an endpoint
///
/// The events accepted in the window that the endpoint subscribes to (or
/// the types named) and its filter passes, oldest first, skipping any it was
/// already sent. Runs in batches beside live traffic; follow it with the
/// returned id.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/backfill", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    request_body = BackfillInput,
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "Started", body = BackfillView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled, or a pull endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid window or event type", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_backfill(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<BackfillInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(
        backfill::create(&app, &auth, scoped(&auth, Scope::DeliveriesRetry, endpoint_id(&id))?, body.into_inner())
            .await?,
    ))
}

/// A backfill's progress
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/backfill/{job_id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id"), ("job_id" = String, Path, description = "bf_… id")),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "The backfill", body = BackfillView),
        (status = 404, description = "No such backfill", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_backfill(
    app: web::Data<ControlState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (ep, job) = path.into_inner();
    let job = scoped(&auth, Scope::DeliveriesRead, crate::usecases::parse_id(&job, "backfill"))?;
    Ok(HttpResponse::Ok()
        .json(backfill::get(&app, &auth, scoped(&auth, Scope::DeliveriesRead, endpoint_id(&ep))?, job).await?))
}
