//! `POST /api/v1/webhooks/filter-preview`: what a filter would have let
//! through, run over the organisation's latest events before it is saved.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use hookline_domain::filter::{Body, Filter};
use hookline_domain::id::EventId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use serde::{Deserialize, Serialize};

use crate::views::EventBody;

/// Mounted before the endpoint routes, so `filter-preview` is not taken for an endpoint id.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/filter-preview", web::post().to(filter_preview));
}

pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
const SAMPLES: usize = 10;

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
    Ok(HttpResponse::Ok().json(preview(&app, &auth, body.into_inner()).await?))
}

pub async fn preview(
    app: &ControlState,
    auth: &Principal,
    input: FilterPreviewInput,
) -> Result<FilterPreview, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    auth.require(Scope::EventsRead)?;
    let mut errors = Vec::new();
    let filter = Filter::parse(&input.filter, "filter")
        .map_err(|errs| errors.extend(errs.into_iter().map(|e| FieldError { field: e.field, message: e.message })))
        .ok();
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError { field: "limit".into(), message: format!("must be between 1 and {MAX_LIMIT}") });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = filter.expect("validated");
    let rows = {
        let mut conn = app.conn().await?;
        hookline_store::events::recent(&mut conn, auth.org_id.as_uuid(), input.event.as_deref(), limit).await?
    };
    let scanned = rows.len();
    let mut matched = 0;
    let mut samples = Vec::new();
    for (id, event, at, data) in rows {
        let timestamp = hookline_domain::event::rfc3339(at);
        if filter.matches(&Body { event: &event, timestamp: &timestamp, data: &data }) {
            matched += 1;
            if samples.len() < SAMPLES {
                samples.push(EventBody { event_id: EventId::from_uuid(id), event, timestamp, data });
            }
        }
    }
    Ok(FilterPreview { scanned, matched, samples })
}
