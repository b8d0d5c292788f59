//! API keys: issued within the caller's own powers, limited, rotated and revoked.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use hookline_domain::api_key::{ApiKey, KeyPepper};
use hookline_domain::id::{KeyId, OrgId};
use hookline_domain::scope::{effective_scopes, Role, Scope};
use hookline_service_kit::auth::Principal;
use hookline_service_kit::caches::{Caches, Topic};
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::keys::{KeyChanges, KeyFilter, KeyRow};
use ipnet::IpNet;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::keys::{CreateKey, KeyListParams, KeyUsage, RotateKey, UpdateKey, UsageHour};
use crate::state::ControlState;
use crate::views::KeyView;

pub const MAX_RATE_LIMIT_PER_HOUR: i32 = 10_000_000;

pub const MAX_GRACE_PERIOD_SECONDS: i64 = 30 * 24 * 3600;

const MAX_ALLOWED_IPS: usize = 100;

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
    let pepper = app.auth.authenticator.pepper();
    let mut conn = app.conn().await?;
    change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let org =
            hookline_store::orgs::get(c, auth.org_id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
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
        let view = insert_key(c, pepper, auth.org_id, Some(auth.key_id), spec).await?;
        trail.audit(
            auth.org_id,
            "key.created",
            "key",
            view.id,
            json!({"name": view.name, "role": view.role, "scopes": view.scopes, "rate_limit_per_hour": view.rate_limit_per_hour}),
        );
        Ok(view)
    })
    .await
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

pub async fn get(app: &ControlState, auth: &Principal, id: KeyId) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysRead)?;
    let mut conn = app.conn().await?;
    let row =
        hookline_store::keys::get(&mut conn, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(KeyView::from_row(row, None))
}

/// Changes what the body names; a key is changed only by a caller holding all of its scopes.
pub async fn update(app: &ControlState, auth: &Principal, id: KeyId, body: UpdateKey) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysWrite)?;
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
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let existing =
            hookline_store::keys::get(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        if existing.revoked_at.is_some() {
            return Err(ApiError::conflict("key_revoked", "a revoked key cannot be changed"));
        }
        within_scopes(auth, existing.scopes.iter().map(String::as_str))?;
        if let Some(rate) = changes.rate_limit_per_hour {
            within_rate(auth, rate)?;
            let org = hookline_store::orgs::get(c, auth.org_id.as_uuid()).await?;
            within_ceiling(org.and_then(|o| o.max_key_rate_limit_per_hour), rate)?;
        }
        if let Some(expiry) = changes.expires_at {
            within_expiry(auth, expiry)?;
        }
        if let Some(ips) = &changes.allowed_ips {
            let nets: Vec<IpNet> = ips.iter().filter_map(|s| s.parse().ok()).collect();
            within_allowlist(auth, &nets)?;
        }
        let details = json!({
            "name": changes.name, "rate_limit_per_hour": changes.rate_limit_per_hour,
            "allowed_ips": changes.allowed_ips, "expires_at": changes.expires_at,
            "description_changed": changes.description.is_some(),
        });
        let row = hookline_store::keys::update(c, auth.org_id, id, changes)
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
        trail.audit(auth.org_id, "key.updated", "key", id, details).invalidate(Topic::Keys(auth.org_id.as_uuid()));
        Ok(row)
    })
    .await?;
    Ok(KeyView::from_row(row, None))
}

/// Revokes the key on every instance within a second, and ends its admin sessions.
pub async fn revoke(app: &ControlState, auth: &Principal, id: KeyId) -> Result<(), ApiError> {
    auth.require(Scope::KeysWrite)?;
    let mut conn = app.conn().await?;
    change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let target =
            hookline_store::keys::get(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        within_scopes(auth, target.scopes.iter().map(String::as_str))?;
        let row =
            hookline_store::keys::revoke(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        hookline_store::sessions::delete_for_key(c, id.as_uuid()).await?;
        trail
            .audit(auth.org_id, "key.revoked", "key", id, json!({"name": row.name}))
            .invalidate(Topic::Keys(auth.org_id.as_uuid()));
        Ok(())
    })
    .await
}

/// Replaces the key's secret; the old one keeps working for the grace period.
pub async fn rotate(app: &ControlState, auth: &Principal, id: KeyId, body: RotateKey) -> Result<KeyView, ApiError> {
    auth.require(Scope::KeysWrite)?;
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
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let existing =
            hookline_store::keys::get(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        if existing.revoked_at.is_some() {
            return Err(ApiError::conflict("key_revoked", "a revoked key cannot be rotated"));
        }
        within_scopes(auth, existing.scopes.iter().map(String::as_str))?;
        hookline_store::sessions::delete_for_key(c, id.as_uuid()).await?;
        let row =
            hookline_store::keys::rotate(c, auth.org_id, id, hash.as_bytes(), &secret.display_prefix(), previous_until)
                .await?
                .ok_or_else(|| ApiError::not_found("API key"))?;
        trail
            .audit(auth.org_id, "key.rotated", "key", id, json!({"grace_period_seconds": grace}))
            .invalidate(Topic::Keys(auth.org_id.as_uuid()));
        Ok(row)
    })
    .await?;
    Ok(KeyView::from_row(row, Some(secret.expose().to_owned())))
}

/// Hourly requests and refusals of one key over a window of at most 93 days.
pub async fn usage(
    app: &ControlState,
    auth: &Principal,
    id: KeyId,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<KeyUsage, ApiError> {
    auth.require(Scope::KeysRead)?;
    time_in_range("since", since)?;
    time_in_range("until", until)?;
    let until = until.unwrap_or_else(Utc::now);
    let since = since.unwrap_or(until - Duration::hours(24));
    if since >= until {
        return Err(ApiError::invalid_field("since", "must be before until"));
    }
    if until - since > Duration::days(93) {
        return Err(ApiError::invalid_field("since", "the window may span at most 93 days"));
    }
    // Make this instance's own counts visible before reading.
    app.auth.flush_usage().await;
    let mut conn = app.conn().await?;
    hookline_store::keys::get(&mut conn, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    let from = since.duration_trunc(TimeDelta::hours(1)).unwrap_or(since);
    let rows = hookline_store::keys::usage(&mut conn, auth.org_id, id, from, until).await?;
    let data: Vec<UsageHour> = rows
        .into_iter()
        .map(|r| UsageHour { hour: r.hour, requests: r.requests, rate_limited: r.rate_limited })
        .collect();
    Ok(KeyUsage {
        key_id: id,
        since,
        until,
        total_requests: data.iter().map(|d| d.requests).sum(),
        total_rate_limited: data.iter().map(|d| d.rate_limited).sum(),
        data,
    })
}

/// Creates a key from the shell (`hookline key create`): the operator acts.
pub async fn create_for_operator(
    conn: &mut AsyncPgConnection,
    caches: &Caches,
    pepper: &KeyPepper,
    org_id: OrgId,
    name: &str,
    role: Role,
    rate_limit_per_hour: i32,
) -> Result<KeyView, ApiError> {
    let name = validate_name(name).map_err(|e| ApiError::validation(vec![e]))?;
    let rate = validate_rate_limit(rate_limit_per_hour).map_err(|e| ApiError::validation(vec![e]))?;
    change(conn, caches, Actor::Operator(None), async |c, trail| {
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
        let view = insert_key(c, pepper, org_id, None, spec).await?;
        trail.audit(org_id, "key.created", "key", view.id, json!({"role": role, "via": "cli"}));
        Ok(view)
    })
    .await
}
