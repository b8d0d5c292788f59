//! `GET /api/v1/audit-log`.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use hookline_domain::id::KeyId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::audit::AuditFilter;
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
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
}

pub async fn list(app: &ControlState, auth: &Principal, q: &AuditParams) -> Result<ListResponse<AuditView>, ApiError> {
    auth.require(Scope::AuditRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let actor_key_id = match q.actor_key_id.as_deref() {
        Some(k) => Some(KeyId::parse(k).map_err(|e| ApiError::invalid_field("actor_key_id", e.to_string()))?.as_uuid()),
        None => None,
    };
    let filter = AuditFilter { action: q.action.clone(), target_id: q.target_id.clone(), actor_key_id };
    let mut conn = app.conn().await?;
    let page = hookline_store::audit::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|e| e.id);
    let data = page.items.into_iter().map(AuditView::from).collect();
    Ok(ListResponse::new(data, page.has_more, last))
}
