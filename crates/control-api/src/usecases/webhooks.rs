//! Webhook endpoints: their configuration, secrets and signing keys.

use chrono::{Duration, Utc};
use hookline_domain::event::EventType;
use hookline_domain::filter::Filter;
use hookline_domain::header::{CustomHeader, MAX_HEADERS};
use hookline_domain::id::{EndpointId, OrgId};
use hookline_domain::ordering::{OnDeadLetter, Ordering};
use hookline_domain::retry::RetryPolicy;
use hookline_domain::scope::Scope;
use hookline_domain::signing::{SignatureFormat, SigningKey, WebhookSecret};
use hookline_service_kit::auth::Principal;
use hookline_service_kit::caches::Topic;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::secrets;
use hookline_store::endpoints::{EndpointConfig, EndpointRow};
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::webhooks::{
    RetryPolicyInput, RetryPolicyView, RotateSecret, WebhookInput, WebhookPatch, WebhookView, MASKED_VALUE,
};
use crate::state::ControlState;

pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;

const MAX_EVENTS: usize = 100;

fn view(app: &ControlState, row: EndpointRow, secret: Option<&WebhookSecret>) -> Result<WebhookView, ApiError> {
    let headers = secrets::open_headers(&app.master_key, row.id, &row.headers)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(name, _)| (name, MASKED_VALUE.to_owned()))
        .collect();
    let now = Utc::now();
    Ok(WebhookView {
        id: EndpointId::from_uuid(row.id),
        url: Some(row.url).filter(|u| !u.is_empty()),
        description: row.description,
        events: row.events,
        is_active: row.is_active,
        disabled_reason: row.disabled_reason,
        disabled_at: row.disabled_at,
        max_retries: row.max_retries,
        timeout: row.timeout_seconds,
        retry_policy: RetryPolicyView {
            initial_delay_ms: row.initial_delay_ms,
            multiplier: row.multiplier,
            max_delay_ms: row.max_delay_ms,
        },
        headers,
        rate_limit_per_second: row.rate_limit_per_second,
        signature_format: row.signature_format,
        public_key: row.signing_public_key,
        filter: row.filter,
        mode: row.mode,
        ordering: row.ordering,
        previous_secret_expires_at: row.previous_secret_expires_at.filter(|t| *t > now),
        created_at: row.created_at,
        updated_at: row.updated_at,
        secret: secret.map(|s| s.expose().to_owned()),
    })
}

/// A fully validated configuration.
struct Validated {
    config: EndpointConfig,
    headers: Vec<(String, String)>,
}

/// Checks every field; the error names each invalid one.
async fn validate(app: &ControlState, org_id: OrgId, input: WebhookInput) -> Result<Validated, ApiError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    let pull = match input.mode.as_deref() {
        None | Some("push") => false,
        Some("pull") => true,
        Some(_) => {
            err("mode", "must be push or pull".into());
            false
        }
    };
    let url = match input.url.as_deref().map(str::trim) {
        None | Some("") if pull => Some(String::new()),
        None | Some("") => {
            err("url", "is required (a pull endpoint may leave it out)".into());
            None
        }
        Some(u) => match hookline_service_kit::targets::check_url(u, app.settings.allow_private_targets).await {
            Ok(u) => Some(u.to_string()),
            Err(m) => {
                err("url", m);
                None
            }
        },
    };
    let description = match input.description {
        Some(d) if d.chars().count() > 1000 => {
            err("description", "must be at most 1000 characters".into());
            None
        }
        Some(d) if d.trim().is_empty() => None,
        other => other,
    };
    let mut events: Vec<String> = Vec::new();
    let mut custom: Vec<String> = Vec::new();
    if input.events.is_empty() {
        err("events", "must name at least one event type, or `*`".into());
    }
    if input.events.len() > MAX_EVENTS {
        err("events", format!("at most {MAX_EVENTS} event types"));
    }
    for (i, e) in input.events.iter().enumerate() {
        if e == "*" {
            events.push(e.clone());
            continue;
        }
        match EventType::parse(e) {
            Ok(t) if t.is_builtin() => events.push(e.clone()),
            Ok(_) => {
                custom.push(e.clone());
                events.push(e.clone());
            }
            Err(x) => err(&format!("events[{i}]"), x.to_string()),
        }
    }
    // An organisation that accepts unregistered types may subscribe to them too.
    let strict = match custom.is_empty() {
        true => false,
        false => {
            let mut conn = app.conn().await?;
            hookline_store::orgs::get(&mut conn, org_id.as_uuid()).await?.is_none_or(|o| o.strict_event_types)
        }
    };
    if strict {
        let mut conn = app.conn().await?;
        let known = hookline_store::event_types::existing_names(&mut conn, org_id.as_uuid(), &custom).await?;
        for (i, e) in input.events.iter().enumerate() {
            if custom.contains(e) && !known.contains(e) {
                err(&format!("events[{i}]"), format!("unknown event type `{e}`"));
            }
        }
    }
    events.sort();
    events.dedup();
    let max_retries = input.max_retries.unwrap_or(5);
    let timeout = input.timeout.unwrap_or(30);
    if !(1..=60).contains(&timeout) {
        err("timeout", "must be between 1 and 60 seconds".into());
    }
    let d = RetryPolicy::default();
    let rp = input.retry_policy.unwrap_or_default();
    let policy = RetryPolicy {
        max_retries: u32::try_from(max_retries).unwrap_or(u32::MAX),
        initial_delay_ms: rp.initial_delay_ms.unwrap_or(d.initial_delay_ms),
        multiplier: rp.multiplier.unwrap_or(d.multiplier),
        max_delay_ms: rp.max_delay_ms.unwrap_or(d.max_delay_ms.max(rp.initial_delay_ms.unwrap_or(0))),
    };
    if let Err(e) = policy.validate() {
        err(e.field, e.message);
    }
    let mut headers = Vec::new();
    let given = input.headers.unwrap_or_default();
    if given.len() > MAX_HEADERS {
        err("headers", format!("at most {MAX_HEADERS} headers"));
    }
    for (k, v) in given {
        let field = format!("headers.{k}");
        match CustomHeader::parse(k, v) {
            Ok(h) => headers.push(h.into_parts()),
            Err(e) => err(&field, e.to_string()),
        }
    }
    if let Some(r) = input.rate_limit_per_second {
        if !(1..=10_000).contains(&r) {
            err("rate_limit_per_second", "must be between 1 and 10000".into());
        }
    }
    let signature_format = match input.signature_format.as_deref() {
        None => SignatureFormat::default(),
        Some(f) => SignatureFormat::parse(f).unwrap_or_else(|| {
            err("signature_format", "must be hex, sha256_prefixed or ed25519".into());
            SignatureFormat::default()
        }),
    };
    let filter = match input.filter {
        None | Some(serde_json::Value::Null) => None,
        Some(f) => match Filter::parse(&f, "filter") {
            Ok(_) => Some(f),
            Err(errs) => {
                for e in errs {
                    err(&e.field, e.message);
                }
                None
            }
        },
    };
    let ordering = match input.ordering {
        None | Some(serde_json::Value::Null) => None,
        Some(_) if pull => {
            err("ordering", "applies to push endpoints; a pull endpoint reads its events in order already".into());
            None
        }
        Some(o) => match Ordering::parse(&o, "ordering") {
            Ok(o) => Some(o.to_json()),
            Err(errs) => {
                for e in errs {
                    err(&e.field, e.message);
                }
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(Validated {
        config: EndpointConfig {
            url: url.expect("validated"),
            description,
            events,
            is_active: input.is_active.unwrap_or(true),
            max_retries,
            timeout_seconds: timeout,
            initial_delay_ms: policy.initial_delay_ms as i64,
            multiplier: policy.multiplier,
            max_delay_ms: policy.max_delay_ms as i64,
            headers: serde_json::Value::Null,
            rate_limit_per_second: input.rate_limit_per_second,
            signature_format: signature_format.as_str().to_owned(),
            filter,
            mode: if pull { "pull" } else { "push" }.to_owned(),
            ordering,
        },
        headers,
    })
}

/// Every change to an endpoint drops it from the caches of its organisation.
fn topic(auth: &Principal, id: EndpointId) -> Topic {
    Topic::Endpoint { org: auth.org_id.as_uuid(), id: id.as_uuid() }
}

fn audit_details(c: &EndpointConfig, header_names: Vec<&str>) -> serde_json::Value {
    json!({
        "url": c.url, "events": c.events, "is_active": c.is_active, "max_retries": c.max_retries,
        "timeout": c.timeout_seconds, "headers": header_names, "filter": c.filter, "mode": c.mode,
        "ordering": c.ordering,
    })
}

/// Validates and creates an endpoint within the organisation's quota; the view carries the new secret.
pub async fn create(app: &ControlState, auth: &Principal, input: WebhookInput) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let v = validate(app, auth.org_id, input).await?;
    let id = EndpointId::new();
    let secret = WebhookSecret::generate();
    let signing = (v.config.signature_format == SignatureFormat::Ed25519.as_str()).then(SigningKey::generate);
    let now = Utc::now();
    let row = EndpointRow {
        id: id.as_uuid(),
        org_id: auth.org_id.as_uuid(),
        url: v.config.url.clone(),
        description: v.config.description.clone(),
        events: v.config.events.clone(),
        is_active: v.config.is_active,
        disabled_reason: None,
        disabled_at: None,
        max_retries: v.config.max_retries,
        timeout_seconds: v.config.timeout_seconds,
        initial_delay_ms: v.config.initial_delay_ms,
        multiplier: v.config.multiplier,
        max_delay_ms: v.config.max_delay_ms,
        headers: secrets::seal_headers(&app.master_key, id.as_uuid(), &v.headers),
        rate_limit_per_second: v.config.rate_limit_per_second,
        signature_format: v.config.signature_format.clone(),
        signing_key_ciphertext: signing.as_ref().map(|k| secrets::seal_signing_key(&app.master_key, id.as_uuid(), k)),
        signing_public_key: signing.as_ref().map(|k| k.public_key()),
        filter: v.config.filter.clone(),
        mode: v.config.mode.clone(),
        ordering: v.config.ordering.clone(),
        secret_ciphertext: secrets::seal_secret(&app.master_key, id.as_uuid(), &secret),
        previous_secret_ciphertext: None,
        previous_secret_expires_at: None,
        deleted_at: None,
        created_at: now,
        updated_at: now,
    };
    let details = audit_details(&v.config, v.headers.iter().map(|(k, _)| k.as_str()).collect());
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let org = hookline_store::orgs::get(c, auth.org_id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("organisation"))?;
        let count = hookline_store::endpoints::count_live(c, org.id).await?;
        if count >= i64::from(org.max_endpoints) {
            return Err(ApiError::conflict(
                "quota_exceeded",
                format!(
                    "the organisation's quota of {} webhook endpoints is reached (max_endpoints)",
                    org.max_endpoints
                ),
            ));
        }
        let row = hookline_store::endpoints::insert(c, &row).await?;
        trail.audit(auth.org_id, "webhook.created", "webhook", id, details).invalidate(topic(auth, id));
        Ok(row)
    })
    .await?;
    view(app, row, Some(&secret))
}

pub async fn list(app: &ControlState, auth: &Principal, q: &PageParams) -> Result<ListResponse<WebhookView>, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let (limit, before) = q.resolve()?;
    let mut conn = app.conn().await?;
    let page = hookline_store::endpoints::list(&mut conn, auth.org_id.as_uuid(), before, limit).await?;
    let last = page.items.last().map(|r| r.id);
    let data = page.items.into_iter().map(|r| view(app, r, None)).collect::<Result<Vec<_>, _>>()?;
    Ok(ListResponse::new(data, page.has_more, last))
}

pub async fn get(app: &ControlState, auth: &Principal, id: EndpointId) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::endpoints::get(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    view(app, row, None)
}

async fn save(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    v: Validated,
    action: &str,
) -> Result<EndpointRow, ApiError> {
    let mut config = v.config;
    let mut headers = v.headers;
    let details = audit_details(&config, headers.iter().map(|(k, _)| k.as_str()).collect());
    let master = &app.master_key;
    let mut conn = app.conn().await?;
    let (ordered_before, row) = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let before = hookline_store::endpoints::get(c, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        let stored = secrets::open_headers(master, id.as_uuid(), &before.headers).map_err(ApiError::internal)?;
        keep_masked(&mut headers, &stored);
        config.headers = secrets::seal_headers(master, id.as_uuid(), &headers);
        let mut row = hookline_store::endpoints::update(c, auth.org_id, id, &config)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        if row.signature_format == SignatureFormat::Ed25519.as_str() && row.signing_key_ciphertext.is_none() {
            let key = SigningKey::generate();
            let sealed = secrets::seal_signing_key(master, id.as_uuid(), &key);
            row = hookline_store::endpoints::ensure_signing_key(c, id.as_uuid(), sealed, &key.public_key()).await?;
        }
        if row.is_active && !before.is_active {
            // Re-enabled: its counters start afresh and the disabling alert is over.
            hookline_store::endpoints::reset_health(c, id.as_uuid()).await?;
            hookline_store::alerts::resolve_for_endpoint(c, id.as_uuid(), &hookline_domain::status::AlertRule::ALL)
                .await?;
        }
        trail.audit(auth.org_id, action, "webhook", id, details).invalidate(topic(auth, id));
        Ok((before.ordering, row))
    })
    .await?;
    release_lanes(&mut conn, ordered_before.as_ref(), &row).await?;
    Ok(row)
}

/// What a change of ordering does to the deliveries waiting in lanes:
/// without ordering they all go; with `skip` instead of `hold` the lanes
/// held by a dead letter move on, one lane per statement.
async fn release_lanes(
    conn: &mut diesel_async::AsyncPgConnection,
    before: Option<&serde_json::Value>,
    after: &EndpointRow,
) -> diesel::QueryResult<()> {
    let parse = |o: Option<&serde_json::Value>| o.and_then(|o| Ordering::parse(o, "ordering").ok());
    match (parse(before), parse(after.ordering.as_ref())) {
        (Some(_), None) => {
            hookline_store::lanes::dissolve(conn, after.id).await?;
        }
        (Some(b), Some(a)) if b.on_dead_letter == OnDeadLetter::Hold && a.on_dead_letter == OnDeadLetter::Skip => {
            let heads =
                hookline_store::lanes::settled_heads(conn, Some(after.id), std::time::Duration::ZERO, 10_000).await?;
            for head in heads {
                hookline_store::lanes::release(conn, head, hookline_store::lanes::Publish::Relay).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A header sent back as [`MASKED_VALUE`] keeps its stored value (a masked
/// header with no stored value is dropped: there is nothing to keep).
fn keep_masked(headers: &mut Vec<(String, String)>, stored: &[(String, String)]) {
    headers.retain_mut(|(name, value)| {
        if value != MASKED_VALUE {
            return true;
        }
        match stored.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, v)) => {
                value.clone_from(v);
                true
            }
            None => false,
        }
    });
}

/// Replaces the whole configuration (not the secret).
pub async fn replace(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    input: WebhookInput,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let v = validate(app, auth.org_id, input).await?;
    let row = save(app, auth, id, v, "webhook.replaced").await?;
    view(app, row, None)
}

/// Changes the fields the patch names, validated as a whole.
pub async fn update(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    patch: WebhookPatch,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let existing = {
        let mut conn = app.conn().await?;
        hookline_store::endpoints::get(&mut conn, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?
    };
    let current = view(app, existing, None)?;
    let merged = WebhookInput {
        url: patch.url.or(current.url),
        description: patch.description.unwrap_or(current.description),
        events: patch.events.unwrap_or(current.events),
        max_retries: Some(patch.max_retries.unwrap_or(current.max_retries)),
        timeout: Some(patch.timeout.unwrap_or(current.timeout)),
        retry_policy: Some(RetryPolicyInput {
            initial_delay_ms: patch
                .retry_policy
                .as_ref()
                .and_then(|r| r.initial_delay_ms)
                .or(Some(current.retry_policy.initial_delay_ms as u64)),
            multiplier: patch
                .retry_policy
                .as_ref()
                .and_then(|r| r.multiplier)
                .or(Some(current.retry_policy.multiplier)),
            max_delay_ms: patch
                .retry_policy
                .as_ref()
                .and_then(|r| r.max_delay_ms)
                .or(Some(current.retry_policy.max_delay_ms as u64)),
        }),
        headers: Some(patch.headers.unwrap_or(current.headers)),
        is_active: Some(patch.is_active.unwrap_or(current.is_active)),
        rate_limit_per_second: patch.rate_limit_per_second.unwrap_or(current.rate_limit_per_second),
        signature_format: Some(patch.signature_format.unwrap_or(current.signature_format)),
        filter: patch.filter.unwrap_or(current.filter),
        mode: Some(patch.mode.unwrap_or(current.mode)),
        ordering: patch.ordering.unwrap_or(current.ordering),
    };
    let v = validate(app, auth.org_id, merged).await?;
    let row = save(app, auth, id, v, "webhook.updated").await?;
    view(app, row, None)
}

/// Soft-deletes the endpoint and cancels its pending deliveries.
pub async fn delete(app: &ControlState, auth: &Principal, id: EndpointId) -> Result<(), ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let mut conn = app.conn().await?;
    change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let cancelled = hookline_store::endpoints::soft_delete(c, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        trail
            .audit(auth.org_id, "webhook.deleted", "webhook", id, json!({"cancelled_deliveries": cancelled}))
            .invalidate(topic(auth, id));
        Ok(())
    })
    .await
}

/// Replaces the signing secret; the previous one keeps signing for the grace period.
pub async fn rotate(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    body: RotateSecret,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let grace = body.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=7 * 24 * 3600).contains(&grace) {
        return Err(ApiError::invalid_field("grace_period_seconds", "must be between 0 and 604800"));
    }
    let secret = WebhookSecret::generate();
    let sealed = secrets::seal_secret(&app.master_key, id.as_uuid(), &secret);
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let current = hookline_store::endpoints::get(c, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        let (prev, until) = if grace > 0 {
            (Some(current.secret_ciphertext.as_slice()), Some(Utc::now() + Duration::seconds(grace)))
        } else {
            (None, None)
        };
        let row = hookline_store::endpoints::rotate_secret(c, auth.org_id, id, &sealed, prev, until)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        trail
            .audit(auth.org_id, "webhook.secret_rotated", "webhook", id, json!({"grace_period_seconds": grace}))
            .invalidate(topic(auth, id));
        Ok(row)
    })
    .await?;
    view(app, row, Some(&secret))
}
