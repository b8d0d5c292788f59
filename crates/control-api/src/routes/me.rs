//! `GET /api/v1/me`: who the presented key is.

use actix_web::{web, HttpResponse};
use hookline_domain::id::{KeyId, OrgId};
use hookline_domain::scope::{Role, Scope};
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use serde::Serialize;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/me", web::get().to(me));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub rate_limit_per_hour: u32,
}

/// The calling key: its organisation, role, scopes and limit
///
/// Needs no scope; useful to check a key and its limits without side effects.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "API keys",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The calling key", body = Me),
        (status = 401, description = "Missing, malformed, unknown, expired or revoked key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(auth: Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Me {
        key_id: auth.key_id,
        org_id: auth.org_id,
        role: auth.role,
        scopes: auth.scopes.iter().copied().collect(),
        rate_limit_per_hour: auth.rate_limit_per_hour,
    }))
}
