//! `/api/v1/keys`: issue, list, inspect, limit, rotate and revoke API keys.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::KeyId;
use hookline_domain::scope::{Role, Scope};
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::ListResponse;
use serde::{Deserialize, Serialize};

use crate::routes::scoped;
use crate::state::ControlState;
use crate::usecases::keys;
use crate::views::{double_option, KeyView};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/keys", web::post().to(create_key))
        .route("/api/v1/keys", web::get().to(list_keys))
        .route("/api/v1/keys/{id}", web::get().to(get_key))
        .route("/api/v1/keys/{id}", web::patch().to(update_key))
        .route("/api/v1/keys/{id}", web::delete().to(revoke_key))
        .route("/api/v1/keys/{id}/rotate", web::post().to(rotate_key))
        .route("/api/v1/keys/{id}/usage", web::get().to(key_usage));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(example = "CRM production", min_length = 1, max_length = 200)]
    pub name: String,
    pub role: Role,
    /// A subset of the role's scopes; all of them when omitted.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// At most the caller's own. When omitted: HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR (1000), or the caller's when lower.
    #[schema(example = 1000, minimum = 1, maximum = 10_000_000)]
    pub rate_limit_per_hour: Option<i32>,
    /// When omitted: the caller's own expiry, or the organisation's `default_key_lifetime_days` from now, whichever is sooner.
    pub expires_at: Option<DateTime<Utc>>,
    /// IPv4 or IPv6 CIDRs (a bare address means just that address). Empty: any address.
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub allowed_ips: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub description: Option<Option<String>>,
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub rate_limit_per_hour: Option<i32>,
    pub allowed_ips: Option<Vec<String>>,
    /// null removes the expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working, 0 (default) to 2592000 (30 days).
    pub grace_period_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    pub role: Option<Role>,
    /// true: only revoked keys; false: only live ones.
    pub revoked: Option<bool>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Default: 24 hours before `until`.
    pub since: Option<DateTime<Utc>>,
    /// Default: now.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageHour {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    pub requests: i64,
    /// Requests refused with 429.
    pub rate_limited: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyUsage {
    pub key_id: KeyId,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub total_requests: i64,
    pub total_rate_limited: i64,
    pub data: Vec<UsageHour>,
}

// A key's power only shrinks: it may create, change, rotate or revoke only
// keys within its own scopes, rate limit, expiry and address allowlist.

/// Create an API key
///
/// The full key is in the answer's `key` field and is never shown again. A
/// key may only be given scopes its creator holds itself.
#[utoipa::path(
    post, path = "/api/v1/keys", tag = "API keys",
    request_body = CreateKey,
    security(("api_key" = ["keys:write"])),
    responses(
        (status = 201, description = "Created; `key` holds the secret, shown once", body = KeyView, headers(
            ("X-RateLimit-Limit" = u64, description = "Requests allowed per window"),
            ("X-RateLimit-Remaining" = u64, description = "Requests left in the window"),
            ("X-RateLimit-Reset" = u64, description = "Unix time when the window is full again"),
        )),
        (status = 403, description = "Missing `keys:write`, or scopes above the caller's own", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The organisation's key quota is reached", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_key(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(keys::create(&app, &auth, body.into_inner()).await?))
}

/// List API keys
#[utoipa::path(
    get, path = "/api/v1/keys", tag = "API keys",
    params(KeyListParams),
    security(("api_key" = ["keys:read"])),
    responses(
        (status = 200, description = "A page of keys, newest first", body = ListResponse<KeyView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_keys(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<KeyListParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(keys::list(&app, &auth, &q).await?))
}

/// Get an API key
#[utoipa::path(
    get, path = "/api/v1/keys/{id}", tag = "API keys",
    params(("id" = String, Path, description = "key_… id")),
    security(("api_key" = ["keys:read"])),
    responses(
        (status = 200, description = "The key (without its secret)", body = KeyView),
        (status = 404, description = "No such key in this organisation", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_key(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(keys::get(&app, &auth, scoped(&auth, Scope::KeysRead, key_id(&id))?).await?))
}

/// Update an API key's name, description, rate limit, allowed IPs or expiry
#[utoipa::path(
    patch, path = "/api/v1/keys/{id}", tag = "API keys",
    params(("id" = String, Path, description = "key_… id")),
    request_body = UpdateKey,
    security(("api_key" = ["keys:write"])),
    responses(
        (status = 200, description = "Updated", body = KeyView),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_key(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<UpdateKey>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(keys::update(&app, &auth, scoped(&auth, Scope::KeysWrite, key_id(&id))?, body.into_inner()).await?))
}

/// Revoke an API key
///
/// Takes effect on every instance within a second. Revoked keys stay listed,
/// with `revoked_at` set.
#[utoipa::path(
    delete, path = "/api/v1/keys/{id}", tag = "API keys",
    params(("id" = String, Path, description = "key_… id")),
    security(("api_key" = ["keys:write"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_key(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    keys::revoke(&app, &auth, scoped(&auth, Scope::KeysWrite, key_id(&id))?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate an API key's secret
///
/// The key keeps its id, role, scopes and limits; the answer's `key` is the
/// new secret. The old secret keeps working for `grace_period_seconds`.
#[utoipa::path(
    post, path = "/api/v1/keys/{id}/rotate", tag = "API keys",
    params(("id" = String, Path, description = "key_… id")),
    request_body(content = RotateKey, description = "Optional"),
    security(("api_key" = ["keys:write"])),
    responses(
        (status = 200, description = "Rotated; `key` holds the new secret, shown once", body = KeyView),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid grace period", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_key(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: Option<web::Json<RotateKey>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map(|b| b.into_inner()).unwrap_or_default();
    Ok(HttpResponse::Ok().json(keys::rotate(&app, &auth, scoped(&auth, Scope::KeysWrite, key_id(&id))?, body).await?))
}

/// Requests and rate-limited requests per hour for a key
#[utoipa::path(
    get, path = "/api/v1/keys/{id}/usage", tag = "API keys",
    params(("id" = String, Path, description = "key_… id"), UsageParams),
    security(("api_key" = ["keys:read"])),
    responses(
        (status = 200, description = "Hourly usage", body = KeyUsage),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid window", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn key_usage(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<UsageParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(keys::usage(&app, &auth, scoped(&auth, Scope::KeysRead, key_id(&id))?, q.since, q.until).await?))
}

/// A `key_…` id from a path.
pub fn key_id(text: &str) -> Result<KeyId, ApiError> {
    crate::usecases::parse_id(text, "API key")
}
