//! `POST /api/v1/webhooks/filter-preview`: what a filter would have let
//! through, run over the organisation's latest events before it is saved.

use crate::state::ControlState;
use crate::usecases::filter_preview;
use actix_web::{web, HttpResponse};
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use serde::{Deserialize, Serialize};

use crate::views::EventBody;

/// Mounted before the endpoint routes, so `filter-preview` is not taken for an endpoint id.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/filter-preview", web::post().to(filter_preview));
}

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterPreviewInput {
    /// A filter as an endpoint takes it.
    #[schema(value_type = Object, example = json!({"path": "/data/source", "op": "eq", "value": "website"}))]
    pub filter: serde_json::Value,
    /// Only events of this type.
    pub event: Option<String>,
    /// How many of the latest events to run it over: 1 to 10000 (default 1000).
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FilterPreview {
    /// Events the filter was run over (newest first).
    pub scanned: usize,
    pub matched: usize,
    /// Up to 10 of the matches, newest first.
    pub samples: Vec<EventBody>,
}

/// Run a filter over the organisation's latest events
///
/// Nothing is saved or delivered. Errors in the filter are named as when
/// saving it on an endpoint (`filter.and[1].op`).
#[utoipa::path(
    post, path = "/api/v1/webhooks/filter-preview", tag = "Webhooks",
    request_body = FilterPreviewInput,
    security(("api_key" = ["webhooks:read", "events:read"])),
    responses(
        (status = 200, description = "How many of the latest events match, and some of them", body = FilterPreview),
        (status = 422, description = "Invalid filter or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn filter_preview(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<FilterPreviewInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(filter_preview::preview(&app, &auth, body.into_inner()).await?))
}
