//! `/api/v1/keys`: issue, list, inspect, limit, rotate and revoke API keys.

use std::collections::BTreeSet;

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use hookline_domain::api_key::{ApiKey, KeyPepper};
use hookline_domain::id::{KeyId, OrgId};
use hookline_domain::scope::{effective_scopes, Role, Scope};
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::keys::{KeyChanges, KeyFilter, KeyRow};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::views::{double_option, KeyView};

pub const MAX_RATE_LIMIT_PER_HOUR: i32 = 10_000_000;
pub const MAX_GRACE_PERIOD_SECONDS: i64 = 30 * 24 * 3600;
const MAX_ALLOWED_IPS: usize = 100;

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

/// A validated key to insert.
pub struct NewKeySpec {
    pub name: String,
    pub description: Option<String>,
    pub role: Role,
    pub scopes: BTreeSet<Scope>,
    pub rate_limit_per_hour: i32,
    pub allowed_ips: Vec<IpNet>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Generates a key and stores its hash; the answer carries the secret.
pub async fn insert_key(
    conn: &mut AsyncPgConnection,
    pepper: &KeyPepper,
    org_id: OrgId,
    created_by: Option<KeyId>,
    spec: NewKeySpec,
) -> Result<KeyView, ApiError> {
    let secret = ApiKey::generate();
    let now = Utc::now();
    let row = KeyRow {
        id: KeyId::new().as_uuid(),
        org_id: org_id.as_uuid(),
        name: spec.name,
        description: spec.description,
        role: spec.role.as_str().to_owned(),
        scopes: spec.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        key_hash: secret.hash(pepper).as_bytes().to_vec(),
        display_prefix: secret.display_prefix(),
        previous_key_hash: None,
        previous_expires_at: None,
        rate_limit_per_hour: spec.rate_limit_per_hour,
        allowed_ips: spec.allowed_ips.iter().map(|n| n.to_string()).collect(),
        expires_at: spec.expires_at,
        revoked_at: None,
        last_used_at: None,
        created_by_key_id: created_by.map(|k| k.as_uuid()),
        created_at: now,
        updated_at: now,
    };
    let row = hookline_store::keys::insert(conn, &row).await?;
    Ok(KeyView::from_row(row, Some(secret.expose().to_owned())))
}

fn validate_name(name: &str) -> Result<String, FieldError> {
    let t = name.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(FieldError { field: "name".into(), message: "must be 1 to 200 characters".into() });
    }
    Ok(t.to_owned())
}

fn validate_description(d: Option<String>) -> Result<Option<String>, FieldError> {
    match d {
        Some(d) if d.chars().count() > 1000 => {
            Err(FieldError { field: "description".into(), message: "must be at most 1000 characters".into() })
        }
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn validate_rate_limit(v: i32) -> Result<i32, FieldError> {
    if (1..=MAX_RATE_LIMIT_PER_HOUR).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError {
            field: "rate_limit_per_hour".into(),
            message: format!("must be between 1 and {MAX_RATE_LIMIT_PER_HOUR}"),
        })
    }
}

/// Parses CIDRs; a bare address means a single host.
pub fn parse_allowed_ips(values: &[String]) -> Result<Vec<IpNet>, Vec<FieldError>> {
    if values.len() > MAX_ALLOWED_IPS {
        return Err(vec![FieldError {
            field: "allowed_ips".into(),
            message: format!("at most {MAX_ALLOWED_IPS} entries"),
        }]);
    }
    let mut errors = Vec::new();
    let mut nets = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let v = v.trim();
        match v.parse::<IpNet>().or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(n) => nets.push(n.trunc()),
            Err(_) => errors.push(FieldError {
                field: format!("allowed_ips[{i}]"),
                message: format!("`{v}` is not an IP address or CIDR"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(nets)
    } else {
        Err(errors)
    }
}

fn validate_expiry(t: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, FieldError> {
    if let Err(e) = time_in_range("expires_at", t) {
        return Err(e.errors.and_then(|mut v| v.pop()).expect("one field"));
    }
    match t {
        Some(t) if t <= Utc::now() => {
            Err(FieldError { field: "expires_at".into(), message: "must be in the future".into() })
        }
        other => Ok(other),
    }
}

// A key's power only shrinks: it may create, change, rotate or revoke only
// keys within its own scopes, rate limit, expiry and address allowlist.

/// When a key created now without an expiry expires, by the organisation's `default_key_lifetime_days`.
fn default_expiry(org: &hookline_store::orgs::Org) -> Option<DateTime<Utc>> {
    org.default_key_lifetime_days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)))
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn caller_rate(auth: &Principal) -> i32 {
    i32::try_from(auth.rate_limit_per_hour).unwrap_or(i32::MAX)
}

fn within_scopes<'a>(auth: &Principal, scopes: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
    match scopes.into_iter().find(|s| !auth.scopes.iter().any(|own| own.as_str() == *s)) {
        Some(extra) => {
            Err(ApiError::forbidden(format!("the key holds `{extra}`, which the calling key does not hold itself")))
        }
        None => Ok(()),
    }
}

fn within_rate(auth: &Principal, rate: i32) -> Result<(), ApiError> {
    if rate > caller_rate(auth) {
        return Err(ApiError::forbidden(format!(
            "rate_limit_per_hour {rate} is above the calling key's own {}",
            auth.rate_limit_per_hour
        )));
    }
    Ok(())
}

fn within_ceiling(ceiling: Option<i32>, rate: i32) -> Result<(), ApiError> {
    match ceiling {
        Some(c) if rate > c => Err(ApiError::invalid_field(
            "rate_limit_per_hour",
            format!("must be at most {c}, the organisation's ceiling (max_key_rate_limit_per_hour)"),
        )),
        _ => Ok(()),
    }
}

fn within_expiry(auth: &Principal, expiry: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (auth.expires_at, expiry) {
        (Some(own), None) => Err(ApiError::forbidden(format!(
            "the calling key expires at {}: the key must expire no later",
            own.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))),
        (Some(own), Some(t)) if t > own => Err(ApiError::forbidden(format!(
            "expires_at is after the calling key's own expiry ({})",
            own.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))),
        _ => Ok(()),
    }
}

fn within_allowlist(auth: &Principal, nets: &[IpNet]) -> Result<(), ApiError> {
    if auth.allowed_ips.is_empty() {
        return Ok(());
    }
    if nets.is_empty() {
        return Err(ApiError::forbidden(
            "the calling key is limited to allowed_ips: the key must be limited within them",
        ));
    }
    match nets.iter().find(|n| !auth.allowed_ips.iter().any(|own| own.contains(*n))) {
        Some(outside) => {
            Err(ApiError::forbidden(format!("allowed_ips entry `{outside}` is outside the calling key's allowed_ips")))
        }
        None => Ok(()),
    }
}

fn parse_key_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(id).map_err(|_| ApiError::not_found("API key"))
}

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
    Ok(HttpResponse::Created().json(create(&app, &auth, body.into_inner()).await?))
}

/// Validates and creates a key within the organisation's quota, audited.
pub async fn create(app: &ControlState, auth: &Principal, body: CreateKey) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let mut errors = Vec::new();
    let name = validate_name(&body.name).map_err(|e| errors.push(e)).ok();
    let description = validate_description(body.description).map_err(|e| errors.push(e)).ok().flatten();
    // Unset limits are inherited from the caller where its own are tighter.
    let rate_given = body.rate_limit_per_hour.is_some();
    let default_rate = (app.settings.default_rate_limit_per_hour as i32).min(caller_rate(auth));
    let rate = validate_rate_limit(body.rate_limit_per_hour.unwrap_or(default_rate)).map_err(|e| errors.push(e)).ok();
    let expiry_given = body.expires_at.is_some();
    let expires_at = match body.expires_at {
        Some(t) => validate_expiry(Some(t)).map_err(|e| errors.push(e)).ok().flatten(),
        None => auth.expires_at,
    };
    let allowed_ips = match &body.allowed_ips {
        Some(ips) => parse_allowed_ips(ips).map_err(|e| errors.extend(e)).ok(),
        None => Some(auth.allowed_ips.clone()),
    };
    let scopes = match effective_scopes(body.role, body.scopes.as_deref()) {
        Ok(s) if s.is_empty() => {
            errors.push(FieldError { field: "scopes".into(), message: "must name at least one scope".into() });
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(FieldError { field: "scopes".into(), message: e.to_string() });
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let scopes = scopes.expect("validated");
    let (rate, allowed_ips) = (rate.expect("validated"), allowed_ips.expect("validated"));
    within_scopes(auth, scopes.iter().map(|s| s.as_str()))?;
    within_rate(auth, rate)?;
    within_expiry(auth, expires_at)?;
    within_allowlist(auth, &allowed_ips)?;
    let mut spec = NewKeySpec {
        name: name.expect("validated"),
        description,
        role: body.role,
        scopes,
        rate_limit_per_hour: rate,
        allowed_ips,
        expires_at,
    };
    let principal = auth.clone();
    let pepper = app.auth.authenticator.pepper().clone();
    let mut conn = app.conn().await?;
    let view = conn
        .transaction::<_, ApiError, _>(async |c| {
            let org = hookline_store::orgs::get(c, principal.org_id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
            match org.max_key_rate_limit_per_hour {
                Some(ceiling) if !rate_given => spec.rate_limit_per_hour = spec.rate_limit_per_hour.min(ceiling),
                ceiling => within_ceiling(ceiling, spec.rate_limit_per_hour)?,
            }
            if !expiry_given {
                spec.expires_at = earliest(spec.expires_at, default_expiry(&org));
            }
            let count = hookline_store::keys::count_active(c, org.id).await?;
            if count >= i64::from(org.max_keys) {
                return Err(ApiError::conflict(
                    "quota_exceeded",
                    format!("the organisation's quota of {} active API keys is reached (max_keys)", org.max_keys),
                ));
            }
            let view = insert_key(c, &pepper, principal.org_id, Some(principal.key_id), spec).await?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "key.created",
                "key",
                &view.id.to_string(),
                json!({"name": view.name, "role": view.role, "scopes": view.scopes, "rate_limit_per_hour": view.rate_limit_per_hour}),
            )
            .await?;
            Ok(view)
        })
        .await?;
    Ok(view)
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
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
}

pub async fn list(app: &ControlState, auth: &Principal, q: &KeyListParams) -> Result<ListResponse<KeyView>, ApiError> {
    auth.require(Scope::KeysRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let filter = KeyFilter { role: q.role.map(|r| r.as_str().to_owned()), revoked: q.revoked };
    let mut conn = app.conn().await?;
    let page = hookline_store::keys::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|r| r.id);
    let data = page.items.into_iter().map(|r| KeyView::from_row(r, None)).collect();
    Ok(ListResponse::new(data, page.has_more, last))
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
    Ok(HttpResponse::Ok().json(get(&app, &auth, &id).await?))
}

pub async fn get(app: &ControlState, auth: &Principal, id: &str) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysRead)?;
    let id = parse_key_id(id)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::keys::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(KeyView::from_row(row, None))
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
    Ok(HttpResponse::Ok().json(update(&app, &auth, &id, body.into_inner()).await?))
}

pub async fn update(app: &ControlState, auth: &Principal, id: &str, body: UpdateKey) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let id = parse_key_id(id)?;
    let mut errors = Vec::new();
    let mut changes = KeyChanges::default();
    if let Some(n) = &body.name {
        changes.name = validate_name(n).map_err(|e| errors.push(e)).ok();
    }
    if let Some(d) = body.description {
        changes.description = validate_description(d).map_err(|e| errors.push(e)).ok();
    }
    if let Some(r) = body.rate_limit_per_hour {
        changes.rate_limit_per_hour = validate_rate_limit(r).map_err(|e| errors.push(e)).ok();
    }
    if let Some(ips) = &body.allowed_ips {
        changes.allowed_ips = parse_allowed_ips(ips)
            .map_err(|e| errors.extend(e))
            .ok()
            .map(|n| n.iter().map(|n| n.to_string()).collect());
    }
    if let Some(e) = body.expires_at {
        changes.expires_at = validate_expiry(e).map_err(|e| errors.push(e)).ok();
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let existing = hookline_store::keys::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("API key"))?;
            if existing.revoked_at.is_some() {
                return Err(ApiError::conflict("key_revoked", "a revoked key cannot be changed"));
            }
            within_scopes(&principal, existing.scopes.iter().map(String::as_str))?;
            if let Some(rate) = changes.rate_limit_per_hour {
                within_rate(&principal, rate)?;
                let org = hookline_store::orgs::get(c, principal.org_id.as_uuid()).await?;
                within_ceiling(org.and_then(|o| o.max_key_rate_limit_per_hour), rate)?;
            }
            if let Some(expiry) = changes.expires_at {
                within_expiry(&principal, expiry)?;
            }
            if let Some(ips) = &changes.allowed_ips {
                let nets: Vec<IpNet> = ips.iter().filter_map(|s| s.parse().ok()).collect();
                within_allowlist(&principal, &nets)?;
            }
            let details = json!({
                "name": changes.name, "rate_limit_per_hour": changes.rate_limit_per_hour,
                "allowed_ips": changes.allowed_ips, "expires_at": changes.expires_at,
                "description_changed": changes.description.is_some(),
            });
            let row = hookline_store::keys::update(c, principal.org_id.as_uuid(), id.as_uuid(), changes)
                .await?
                .ok_or_else(|| ApiError::not_found("API key"))?;
            audit::record(c, principal.org_id, Actor::Key(&principal), "key.updated", "key", &id.to_string(), details)
                .await?;
            Ok(row)
        })
        .await?;
    app.auth.authenticator.invalidate(principal.org_id.as_uuid()).await;
    Ok(KeyView::from_row(row, None))
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
    revoke(&app, &auth, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn revoke(app: &ControlState, auth: &Principal, id: &str) -> Result<(), ApiError> {
    auth.require(Scope::KeysWrite)?;
    let id = parse_key_id(id)?;
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    conn.transaction::<_, ApiError, _>(async |c| {
        let target = hookline_store::keys::get(c, principal.org_id.as_uuid(), id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
        within_scopes(&principal, target.scopes.iter().map(String::as_str))?;
        let row = hookline_store::keys::revoke(c, principal.org_id.as_uuid(), id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
        hookline_store::sessions::delete_for_key(c, id.as_uuid()).await?;
        audit::record(
            c,
            principal.org_id,
            Actor::Key(&principal),
            "key.revoked",
            "key",
            &id.to_string(),
            json!({"name": row.name}),
        )
        .await?;
        Ok(())
    })
    .await?;
    app.auth.authenticator.invalidate(principal.org_id.as_uuid()).await;
    Ok(())
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
    Ok(HttpResponse::Ok().json(rotate(&app, &auth, &id, body).await?))
}

/// Replaces the key's secret; the old one keeps working for the grace period.
pub async fn rotate(app: &ControlState, auth: &Principal, id: &str, body: RotateKey) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysWrite)?;
    let id = parse_key_id(id)?;
    let grace = body.grace_period_seconds.unwrap_or(0);
    if !(0..=MAX_GRACE_PERIOD_SECONDS).contains(&grace) {
        return Err(ApiError::invalid_field(
            "grace_period_seconds",
            format!("must be between 0 and {MAX_GRACE_PERIOD_SECONDS}"),
        ));
    }
    let secret = ApiKey::generate();
    let hash = secret.hash(app.auth.authenticator.pepper());
    let previous_until = (grace > 0).then(|| Utc::now() + Duration::seconds(grace));
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let existing = hookline_store::keys::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("API key"))?;
            if existing.revoked_at.is_some() {
                return Err(ApiError::conflict("key_revoked", "a revoked key cannot be rotated"));
            }
            within_scopes(&principal, existing.scopes.iter().map(String::as_str))?;
            hookline_store::sessions::delete_for_key(c, id.as_uuid()).await?;
            let row = hookline_store::keys::rotate(
                c,
                principal.org_id.as_uuid(),
                id.as_uuid(),
                hash.as_bytes(),
                &secret.display_prefix(),
                previous_until,
            )
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "key.rotated",
                "key",
                &id.to_string(),
                json!({"grace_period_seconds": grace}),
            )
            .await?;
            Ok(row)
        })
        .await?;
    app.auth.authenticator.invalidate(principal.org_id.as_uuid()).await;
    Ok(KeyView::from_row(row, Some(secret.expose().to_owned())))
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
    auth.require(Scope::KeysRead)?;
    time_in_range("since", q.since)?;
    time_in_range("until", q.until)?;
    let id = parse_key_id(&id)?;
    let until = q.until.unwrap_or_else(Utc::now);
    let since = q.since.unwrap_or(until - Duration::hours(24));
    if since >= until {
        return Err(ApiError::invalid_field("since", "must be before until"));
    }
    if until - since > Duration::days(93) {
        return Err(ApiError::invalid_field("since", "the window may span at most 93 days"));
    }
    // Make this instance's own counts visible before reading.
    app.auth.flush_usage().await;
    let mut conn = app.conn().await?;
    hookline_store::keys::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let from = since.duration_trunc(TimeDelta::hours(1)).unwrap_or(since);
    let rows = hookline_store::keys::usage(&mut conn, auth.org_id.as_uuid(), id.as_uuid(), from, until).await?;
    let data: Vec<UsageHour> = rows
        .into_iter()
        .map(|r| UsageHour { hour: r.hour, requests: r.requests, rate_limited: r.rate_limited })
        .collect();
    Ok(HttpResponse::Ok().json(KeyUsage {
        key_id: id,
        since,
        until,
        total_requests: data.iter().map(|d| d.requests).sum(),
        total_rate_limited: data.iter().map(|d| d.rate_limited).sum(),
        data,
    }))
}

/// Creates a key from the shell (`hookline key create`): the operator acts.
pub async fn create_for_operator(
    pool: &hookline_store::db::PgPool,
    pepper: &KeyPepper,
    org_id: OrgId,
    name: &str,
    role: Role,
    rate_limit_per_hour: i32,
) -> Result<KeyView, ApiError> {
    let name = validate_name(name).map_err(|e| ApiError::validation(vec![e]))?;
    let rate = validate_rate_limit(rate_limit_per_hour).map_err(|e| ApiError::validation(vec![e]))?;
    let pepper = pepper.clone();
    let mut conn = pool.get().await.map_err(ApiError::from_pool)?;
    conn.transaction::<_, ApiError, _>(async |c| {
        let org =
            hookline_store::orgs::get(c, org_id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
        let spec = NewKeySpec {
            name,
            description: None,
            role,
            scopes: role.scopes(),
            rate_limit_per_hour: rate,
            allowed_ips: Vec::new(),
            expires_at: default_expiry(&org),
        };
        let view = insert_key(c, &pepper, org_id, None, spec).await?;
        audit::record(
            c,
            org_id,
            Actor::Operator(None),
            "key.created",
            "key",
            &view.id.to_string(),
            json!({"role": role, "via": "cli"}),
        )
        .await?;
        Ok(view)
    })
    .await
}
