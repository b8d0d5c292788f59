//! `POST /api/v1/orgs`: the operator creates an organisation and its first admin key.

use crate::state::ControlState;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel_async::AsyncConnection;
use hookline_domain::api_key::KeyPepper;
use hookline_domain::id::OrgId;
use hookline_domain::scope::Role;
use hookline_service_kit::error::ApiError;
use hookline_store::db::PgPool;
use serde::Deserialize;

use crate::audit::Actor;
use crate::routes::keys::{insert_key, NewKeySpec};
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

/// Applies quota changes (the API's PATCH and `hookline org set-quota`).
pub async fn update(
    pool: &PgPool,
    id: OrgId,
    body: UpdateOrg,
    actor_ip: Option<std::net::IpAddr>,
) -> Result<OrgView, ApiError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, v: Option<i32>, lo: i32, hi: i32| {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            errors.push(hookline_service_kit::error::FieldError {
                field: field.into(),
                message: format!("must be between {lo} and {hi}"),
            });
        }
    };
    check("events_per_minute", body.events_per_minute.flatten(), 1, 100_000_000);
    check("max_endpoints", body.max_endpoints, 0, 100_000);
    check("max_keys", body.max_keys, 0, 100_000);
    check("retention_days", body.retention_days, 1, 3650);
    check(
        "max_key_rate_limit_per_hour",
        body.max_key_rate_limit_per_hour.flatten(),
        1,
        crate::routes::keys::MAX_RATE_LIMIT_PER_HOUR,
    );
    check("default_key_lifetime_days", body.default_key_lifetime_days.flatten(), 1, 3650);
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200) {
        errors.push(hookline_service_kit::error::FieldError {
            field: "name".into(),
            message: "must be 1 to 200 characters".into(),
        });
    }
    let portal_origins = match &body.portal_origins {
        Some(list) if list.len() > 20 => {
            errors.push(field_error("portal_origins", "at most 20 origins".into()));
            None
        }
        Some(list) => {
            let mut origins = Vec::with_capacity(list.len());
            for (i, o) in list.iter().enumerate() {
                match crate::portal::parse_origin(o) {
                    Ok(o) => origins.push(o),
                    Err(m) => errors.push(field_error(&format!("portal_origins[{i}]"), m)),
                }
            }
            Some(origins)
        }
        None => None,
    };
    if let Some(Some(c)) = &body.portal_accent_color {
        if !crate::portal::is_colour(c) {
            errors.push(field_error("portal_accent_color", "must be a colour like #2450c8".into()));
        }
    }
    if let Some(Some(u)) = &body.portal_logo_url {
        if crate::portal::parse_logo(u).is_none() {
            errors.push(field_error("portal_logo_url", "must be an https URL of at most 2000 characters".into()));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let changes = hookline_store::orgs::OrgChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        events_per_minute: body.events_per_minute,
        max_endpoints: body.max_endpoints,
        max_keys: body.max_keys,
        retention_days: body.retention_days,
        max_key_rate_limit_per_hour: body.max_key_rate_limit_per_hour,
        strict_event_types: body.strict_event_types,
        default_key_lifetime_days: body.default_key_lifetime_days,
        portal_origins,
        portal_accent_color: body.portal_accent_color,
        portal_logo_url: body.portal_logo_url,
        updated_at: None,
    };
    let details = serde_json::json!({
        "events_per_minute": changes.events_per_minute, "max_endpoints": changes.max_endpoints,
        "max_keys": changes.max_keys, "retention_days": changes.retention_days,
        "max_key_rate_limit_per_hour": changes.max_key_rate_limit_per_hour,
        "strict_event_types": changes.strict_event_types,
        "default_key_lifetime_days": changes.default_key_lifetime_days,
        "portal_origins": changes.portal_origins, "portal_accent_color": changes.portal_accent_color,
        "portal_logo_url": changes.portal_logo_url,
    });
    let mut conn = pool.get().await.map_err(ApiError::from_pool)?;
    let org = conn
        .transaction::<_, ApiError, _>(async |c| {
            let org = hookline_store::orgs::update(c, id.as_uuid(), changes)
                .await?
                .ok_or_else(|| ApiError::not_found("organisation"))?;
            crate::audit::record(c, id, Actor::Operator(actor_ip), "org.updated", "org", &id.to_string(), details)
                .await?;
            Ok(org)
        })
        .await?;
    Ok(org.into())
}

fn field_error(field: &str, message: String) -> hookline_service_kit::error::FieldError {
    hookline_service_kit::error::FieldError { field: field.into(), message }
}

fn parse_org_id(id: &str) -> Result<OrgId, ApiError> {
    OrgId::parse(id).map_err(|_| ApiError::not_found("organisation"))
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
    let id = parse_org_id(&id)?;
    let mut conn = app.conn().await?;
    let org =
        hookline_store::orgs::get(&mut conn, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
    Ok(HttpResponse::Ok().json(OrgView::from(org)))
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
    let id = parse_org_id(&id)?;
    let ip = hookline_service_kit::auth::client_ip(&req, &app.settings.trusted_proxies);
    let view = update(&app.pool, id, body.into_inner(), ip).await?;
    // Keys carry their organisation's quota in the cache.
    app.auth.authenticator.invalidate(id.as_uuid()).await;
    Ok(HttpResponse::Ok().json(view))
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

/// Creates an organisation and its first admin key in one transaction.
pub async fn create(
    pool: &PgPool,
    pepper: &KeyPepper,
    default_limit: i32,
    name: &str,
    actor_ip: Option<std::net::IpAddr>,
) -> Result<OrgCreated, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid_field("name", "must be 1 to 200 characters"));
    }
    let pepper = pepper.clone();
    let mut conn = pool.get().await.map_err(ApiError::from_pool)?;
    let name = name.to_owned();
    let result = conn
        .transaction::<_, ApiError, _>(async |c| {
            let org = hookline_store::orgs::insert(c, OrgId::new().as_uuid(), &name).await?;
            let org_id = OrgId::from_uuid(org.id);
            let spec = NewKeySpec {
                name: "Admin key".into(),
                description: Some("Created with the organisation".into()),
                role: Role::Admin,
                scopes: Role::Admin.scopes(),
                rate_limit_per_hour: default_limit,
                allowed_ips: Vec::new(),
                expires_at: None,
            };
            let key = insert_key(c, &pepper, org_id, None, spec).await?;
            crate::audit::record(
                c,
                org_id,
                Actor::Operator(actor_ip),
                "org.created",
                "org",
                &org_id.to_string(),
                serde_json::json!({"name": name}),
            )
            .await?;
            crate::audit::record(
                c,
                org_id,
                Actor::Operator(actor_ip),
                "key.created",
                "key",
                &key.id.to_string(),
                serde_json::json!({"role": "admin"}),
            )
            .await?;
            Ok(OrgCreated { id: org_id, name: org.name, created_at: org.created_at, api_key: key })
        })
        .await?;
    Ok(result)
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
    let created = create(
        &app.pool,
        app.auth.authenticator.pepper(),
        app.settings.default_rate_limit_per_hour as i32,
        &body.name,
        ip,
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}
