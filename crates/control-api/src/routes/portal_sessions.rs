//! Portal sessions: short-lived links that open the embeddable portal for
//! one organisation (or some of its endpoints), with no other credential.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::{EndpointId, PortalSessionId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::portal::PortalSessionRow;
use serde::{Deserialize, Serialize};

use crate::portal;
use crate::routes::scoped;
use crate::state::ControlState;
use crate::usecases::portal_sessions;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/portal-sessions", web::post().to(create_portal_session))
        .route("/api/v1/portal-sessions", web::get().to(list_portal_sessions))
        .route("/api/v1/portal-sessions/{id}", web::delete().to(revoke_portal_session));
}

/// The default and the longest life of a portal link, in seconds.
pub const DEFAULT_TTL_SECS: i64 = 3600;
pub const MAX_TTL_SECS: i64 = 86_400;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    /// Only these endpoints (`ep_…`); omitted, every endpoint of the organisation (and creating new ones).
    pub webhook_ids: Option<Vec<String>>,
    /// `manage` (default: create, edit, rotate secrets, disable, retry, replay, send tests) or `view` (read only).
    #[schema(example = "manage")]
    pub mode: Option<String>,
    /// 60 to 86400 (default 3600).
    #[schema(example = 3600, minimum = 60, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

/// A portal link. `url` is shown at creation only: it is the credential.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalSessionView {
    pub id: PortalSessionId,
    /// Open it, or put it in an iframe on one of the organisation's `portal_origins`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub mode: String,
    /// Null: every endpoint.
    pub webhook_ids: Option<Vec<EndpointId>>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl PortalSessionView {
    pub fn of(row: PortalSessionRow, url: Option<String>) -> Self {
        Self {
            id: PortalSessionId::from_uuid(row.id),
            url,
            mode: row.mode,
            webhook_ids: row.webhook_ids.map(|ids| ids.into_iter().map(EndpointId::from_uuid).collect()),
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        }
    }
}

/// Create a portal link
///
/// The answer's `url` opens the portal for this organisation, with no other
/// credential, until `expires_at` or revocation. A link can do no more than
/// the key that made it: `view` needs `webhooks:read` and `deliveries:read`,
/// `manage` also `webhooks:write` and `deliveries:retry`.
#[utoipa::path(
    post, path = "/api/v1/portal-sessions", tag = "Portal",
    request_body = CreatePortalSession,
    security(("api_key" = ["webhooks:read", "deliveries:read"])),
    responses(
        (status = 201, description = "Created; `url` is shown this once", body = PortalSessionView),
        (status = 403, description = "The key lacks a scope the mode needs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (mode, ttl_seconds, an unknown webhook id)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_portal_session(
    app: web::Data<ControlState>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<CreatePortalSession>,
) -> Result<HttpResponse, ApiError> {
    let base = portal::public_base(&app, &req);
    let view = portal_sessions::create(&app, &auth, body.into_inner(), &base).await?;
    Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(view))
}

/// List portal links, newest first
#[utoipa::path(
    get, path = "/api/v1/portal-sessions", tag = "Portal",
    params(PageParams),
    security(("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "A page of portal links (without their URLs)", body = ListResponse<PortalSessionView>))
)]
pub async fn list_portal_sessions(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(portal_sessions::list(&app, &auth, &q).await?))
}

/// Revoke a portal link
///
/// The link stops working at once, in every open page.
#[utoipa::path(
    delete, path = "/api/v1/portal-sessions/{id}", tag = "Portal",
    params(("id" = String, Path, description = "ps_… id")),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such portal link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_portal_session(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = scoped(&auth, Scope::WebhooksWrite, crate::usecases::parse_id(&id, "portal link"))?;
    portal_sessions::revoke(&app, &auth, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
