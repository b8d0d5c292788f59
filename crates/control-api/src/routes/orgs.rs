//! `POST /api/v1/orgs`: the operator creates an organisation and its first admin key.

use actix_web::{web, HttpRequest, HttpResponse};
use hookline_domain::id::OrgId;
use hookline_service_kit::error::ApiError;
use serde::Deserialize;

use crate::state::ControlState;
use crate::usecases::orgs;
use crate::views::OrgCreated;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/orgs", web::post().to(create_org))
        .route("/api/v1/orgs/{id}", web::get().to(get_org))
        .route("/api/v1/orgs/{id}", web::patch().to(update_org));
}

/// An organisation and its quotas.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: OrgId,
    pub name: String,
    /// Events ingested per minute across all keys; null is unlimited.
    pub events_per_minute: Option<i32>,
    pub max_endpoints: i32,
    pub max_keys: i32,
    /// Days of delivery history kept.
    pub retention_days: i32,
    /// The highest `rate_limit_per_hour` the organisation's keys may have; null is the platform's maximum.
    pub max_key_rate_limit_per_hour: Option<i32>,
    /// True (the default): only built-in and registered event types are accepted, and validated.
    /// False: a type never registered is accepted as it is, without a schema.
    pub strict_event_types: bool,
    /// Keys created without `expires_at` expire after this many days; null means never.
    pub default_key_lifetime_days: Option<i32>,
    /// Origins allowed to embed the portal in a frame (`Content-Security-Policy: frame-ancestors`).
    pub portal_origins: Vec<String>,
    /// The portal's accent colour, `#rrggbb`.
    pub portal_accent_color: Option<String>,
    /// An https image shown in the portal's header.
    pub portal_logo_url: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<hookline_store::orgs::Org> for OrgView {
    fn from(o: hookline_store::orgs::Org) -> Self {
        Self {
            id: OrgId::from_uuid(o.id),
            name: o.name,
            events_per_minute: o.events_per_minute,
            max_endpoints: o.max_endpoints,
            max_keys: o.max_keys,
            retention_days: o.retention_days,
            max_key_rate_limit_per_hour: o.max_key_rate_limit_per_hour,
            strict_event_types: o.strict_event_types,
            default_key_lifetime_days: o.default_key_lifetime_days,
            portal_origins: o.portal_origins,
            portal_accent_color: o.portal_accent_color,
            portal_logo_url: o.portal_logo_url,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// Quota and setting changes; absent fields stay, `events_per_minute: null` removes the quota.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::views::double_option")]
    #[schema(nullable)]
    pub events_per_minute: Option<Option<i32>>,
    pub max_endpoints: Option<i32>,
    pub max_keys: Option<i32>,
    pub retention_days: Option<i32>,
    /// Set by the operator only; null removes the ceiling.
    #[serde(default, deserialize_with = "crate::views::double_option")]
    #[schema(nullable)]
    pub max_key_rate_limit_per_hour: Option<Option<i32>>,
    /// False accepts event types that were never registered, unvalidated.
    pub strict_event_types: Option<bool>,
    /// 1 to 3650; null removes the default.
    #[serde(default, deserialize_with = "crate::views::double_option")]
    #[schema(nullable)]
    pub default_key_lifetime_days: Option<Option<i32>>,
    /// Up to 20 origins (`https://app.example.com`, a port when not the default) that may frame the portal.
    #[schema(example = json!(["https://crm.example.com"]))]
    pub portal_origins: Option<Vec<String>>,
    /// `#rrggbb`; null restores the default.
    #[serde(default, deserialize_with = "crate::views::double_option")]
    #[schema(nullable)]
    pub portal_accent_color: Option<Option<String>>,
    /// An https URL; null removes the logo.
    #[serde(default, deserialize_with = "crate::views::double_option")]
    #[schema(nullable)]
    pub portal_logo_url: Option<Option<String>>,
}

/// An `org_…` id from a path.
fn org_id(text: &str) -> Result<OrgId, ApiError> {
    crate::usecases::parse_id(text, "organisation")
}

/// Get an organisation and its quotas (operator only)
#[utoipa::path(
    get, path = "/api/v1/orgs/{id}", tag = "Organisations",
    params(("id" = String, Path, description = "org_… id")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The organisation", body = OrgView),
        (status = 401, description = "Not the operator token", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_org(
    app: web::Data<ControlState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&app, &req)?;
    let mut conn = app.conn().await?;
    Ok(HttpResponse::Ok().json(orgs::get(&mut conn, org_id(&id)?).await?))
}

/// Set an organisation's quotas (operator only)
///
/// `events_per_minute` is shared by every key of the organisation and checked
/// with each key's own limit in one step; `max_endpoints` and `max_keys` cap
/// creation (409 beyond them).
#[utoipa::path(
    patch, path = "/api/v1/orgs/{id}", tag = "Organisations",
    params(("id" = String, Path, description = "org_… id")),
    request_body = UpdateOrg,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Updated", body = OrgView),
        (status = 401, description = "Not the operator token", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_org(
    app: web::Data<ControlState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<UpdateOrg>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&app, &req)?;
    let ip = hookline_service_kit::auth::client_ip(&req, &app.settings.trusted_proxies);
    let mut conn = app.conn().await?;
    Ok(HttpResponse::Ok().json(orgs::update(&mut conn, &app.caches, org_id(&id)?, body.into_inner(), ip).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// 1 to 200 characters.
    #[schema(example = "Acme Leads Ltd")]
    pub name: String,
}

/// Checks `Authorization: Bearer <HOOKLINE_OPERATOR_TOKEN>` in constant time.
pub fn require_operator(app: &ControlState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = app.settings.operator_token.as_ref() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "operator_disabled",
            "Operator routes are disabled",
        )
        .detail("set HOOKLINE_OPERATOR_TOKEN to enable operator routes"));
    };
    let presented = hookline_service_kit::auth::presented_key(req).unwrap_or_default();
    if hookline_domain::crypto::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("this route needs the operator token"))
    }
}

/// Create an organisation (operator only)
///
/// Answers with the organisation's first admin API key, including the full
/// key, which is shown this once.
#[utoipa::path(
    post, path = "/api/v1/orgs", tag = "Organisations",
    request_body = CreateOrg,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = OrgCreated),
        (status = 401, description = "Not the operator token", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operator routes are disabled (HOOKLINE_OPERATOR_TOKEN unset)", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_org(
    app: web::Data<ControlState>,
    req: HttpRequest,
    body: web::Json<CreateOrg>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&app, &req)?;
    let ip = hookline_service_kit::auth::client_ip(&req, &app.settings.trusted_proxies);
    let mut conn = app.conn().await?;
    let created = orgs::create(
        &mut conn,
        &app.caches,
        app.auth.authenticator.pepper(),
        app.settings.default_rate_limit_per_hour as i32,
        &body.name,
        ip,
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}
