//! `GET /api/v1/webhooks/{id}/events`: an endpoint's events read in order,
//! for consumers that cannot receive webhooks (behind a firewall). An
//! endpoint created with `"mode": "pull"` is never pushed to; any endpoint
//! can be read this way.

use crate::routes::scoped;
use crate::routes::webhooks::endpoint_id;
use crate::state::ControlState;
use crate::usecases::pull;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use serde::{Deserialize, Serialize};

use crate::views::EventBody;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/{id}/events", web::get().to(pull_events));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullParams {
    /// The `next_cursor` of the previous call; omitted, from the endpoint's creation.
    pub after: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PullPage {
    /// The endpoint's events after the cursor, oldest first, as deliveries would carry them.
    pub data: Vec<EventBody>,
    /// Where to go on from; call again with it (`after`), now or later.
    /// Null only while the endpoint has had no events.
    pub next_cursor: Option<String>,
}

/// Read an endpoint's events in order
///
/// The events the endpoint subscribes to (and its filter passes), accepted
/// since it was created, oldest first. Poll with the answer's `next_cursor`:
/// an empty `data` means nothing new yet. Events show up about a second after
/// they are accepted.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/events", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id"), PullParams),
    security(("api_key" = ["events:read"])),
    responses(
        (status = 200, description = "The next events", body = PullPage),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pull_events(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<PullParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(pull::pull(&app, &auth, scoped(&auth, Scope::EventsRead, endpoint_id(&id))?, &q).await?))
}
