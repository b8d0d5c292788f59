//! `POST /api/v1/erasures`: erase everything Hookline keeps about one lead.

use actix_web::{web, HttpResponse};
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use serde::{Deserialize, Serialize};

use crate::state::ControlState;
use crate::usecases::erasures;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/erasures", web::post().to(create_erasure));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureInput {
    /// A JSON pointer into event data, e.g. `/id` or `/email`.
    #[schema(example = "/id")]
    pub path: String,
    /// The value there that names the lead: a string, number or boolean.
    #[schema(value_type = Object, example = "lead_123")]
    pub value: serde_json::Value,
}

/// What was scrubbed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Events whose data held the value: their payload and idempotency key are gone.
    pub events: usize,
    /// Their deliveries' attempts: the receivers' answers (body, headers, error) are gone.
    pub attempts: usize,
    /// Their dead letters, scrubbed with the rest.
    pub dead_letters: usize,
}

/// Erase one lead
///
/// Scrubs the data of every event whose data holds `value` at `path`, with
/// their idempotency records, the receivers' answers kept with their
/// attempts, and what their deliveries (dead letters too) kept of the last
/// answer; deliveries still waiting are cancelled. Ids, types, times and
/// counts stay for the audit trail, which records the erasure without the
/// value. Works through the history in batches of 1,000 events.
#[utoipa::path(
    post, path = "/api/v1/erasures", tag = "Erasure",
    request_body = ErasureInput,
    security(("api_key" = ["events:write"])),
    responses(
        (status = 200, description = "Erased; the numbers scrubbed", body = Erased),
        (status = 422, description = "Invalid path or value", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_erasure(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<ErasureInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(erasures::erase(&app, &auth, body.into_inner()).await?))
}
