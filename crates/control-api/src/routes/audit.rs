//! `GET /api/v1/audit-log`.

use crate::state::ControlState;
use crate::usecases::audit;
use actix_web::{web, HttpResponse};
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::ListResponse;
use serde::Deserialize;

use crate::views::AuditView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/audit-log", web::get().to(list_audit));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// e.g. `key.revoked`.
    pub action: Option<String>,
    /// The id of the changed resource.
    pub target_id: Option<String>,
    /// Only changes made with this key.
    pub actor_key_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The organisation's audit log, newest first
#[utoipa::path(
    get, path = "/api/v1/audit-log", tag = "Audit log",
    params(AuditParams),
    security(("api_key" = ["audit:read"])),
    responses(
        (status = 200, description = "A page of audit entries", body = ListResponse<AuditView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(audit::list(&app, &auth, &q).await?))
}
