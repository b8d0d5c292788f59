//! `/api/v1/webhooks`: endpoints, their secrets and configuration.

use hookline_domain::signing::{SignatureFormat, SigningKey};
use std::collections::BTreeMap;

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::event::EventType;
use hookline_domain::filter::Filter;
use hookline_domain::id::{EndpointId, OrgId};
use hookline_domain::ordering::{OnDeadLetter, Ordering};
use hookline_domain::retry::RetryPolicy;
use hookline_domain::scope::Scope;
use hookline_domain::signing::WebhookSecret;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::caches::Topic;
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::secrets;
use hookline_store::endpoints::{EndpointConfig, EndpointRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::views::double_option;

pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
const MAX_HEADERS: usize = 20;
const MAX_EVENTS: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks", web::post().to(create_webhook))
        .route("/api/v1/webhooks", web::get().to(list_webhooks))
        .route("/api/v1/webhooks/{id}", web::get().to(get_webhook))
        .route("/api/v1/webhooks/{id}", web::put().to(replace_webhook))
        .route("/api/v1/webhooks/{id}", web::patch().to(update_webhook))
        .route("/api/v1/webhooks/{id}", web::delete().to(delete_webhook))
        .route("/api/v1/webhooks/{id}/rotate-secret", web::post().to(rotate_secret));
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyInput {
    /// Wait before the first retry, 100 ms to 24 h (default 1000).
    pub initial_delay_ms: Option<u64>,
    /// Growth per retry, 1.0 to 10.0 (default 2.0).
    pub multiplier: Option<f64>,
    /// Cap on any wait (default 3600000, one hour).
    pub max_delay_ms: Option<u64>,
}

/// An endpoint as created or replaced.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://crm.example.com/hooks/leads",
    "description": "Production receiver",
    "events": ["new_lead", "lead_update"],
    "max_retries": 5,
    "timeout": 30
}))]
pub struct WebhookInput {
    /// Where deliveries are POSTed; required unless `mode` is `pull`.
    pub url: Option<String>,
    pub description: Option<String>,
    /// Event types to receive; `*` for all.
    pub events: Vec<String>,
    /// Retries after the first attempt, 0 to 20 (default 5).
    pub max_retries: Option<i32>,
    /// Seconds to wait for an answer, 1 to 60 (default 30).
    pub timeout: Option<i32>,
    pub retry_policy: Option<RetryPolicyInput>,
    /// Extra headers sent with every delivery (stored encrypted). They cannot replace the signature headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Default true.
    pub is_active: Option<bool>,
    /// Deliveries per second to this endpoint at most (default: no limit).
    pub rate_limit_per_second: Option<i32>,
    /// How deliveries are signed: `hex` (default), `sha256_prefixed`
    /// (`X-Webhook-Signature: sha256=<hex>`) or `ed25519` (`webhook-signature`
    /// carries a `v1a,` Ed25519 signature checked with `public_key`). The
    /// Standard Webhooks headers and `X-Webhook-Signature` are sent with every format.
    #[schema(value_type = Option<String>, example = "hex")]
    pub signature_format: Option<String>,
    /// Deliver only events whose body matches: a condition
    /// `{"path": "/data/source", "op": "eq", "value": "website"}` (ops eq, ne, in,
    /// gt, gte, lt, lte, exists) or `{"and": [...]}`, `{"or": [...]}`, `{"not": {...}}`.
    /// Null or omitted: every subscribed event.
    #[schema(value_type = Option<Object>, example = json!({"path": "/data/source", "op": "eq", "value": "website"}))]
    pub filter: Option<serde_json::Value>,
    /// `push` (default): Hookline POSTs each event. `pull`: never pushed to;
    /// the owner reads the endpoint's events with `GET /api/v1/webhooks/{id}/events`.
    #[schema(example = "push")]
    pub mode: Option<String>,
    /// Deliver events that share a key strictly in ingest order, one at a
    /// time per key value, different values in parallel: `{"key": "/id"}` (a
    /// JSON pointer into the event's data). Deliveries waiting for an earlier
    /// one are `blocked`. `on_dead_letter`: `skip` (default; the key moves on
    /// past a dead letter) or `hold` (it waits until the dead letter is
    /// replayed and delivered, or resolved). Null or omitted: no ordering.
    #[schema(value_type = Option<Object>, example = json!({"key": "/id", "on_dead_letter": "skip"}))]
    pub ordering: Option<serde_json::Value>,
}

/// A partial update: only the fields present change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub description: Option<Option<String>>,
    pub events: Option<Vec<String>>,
    pub max_retries: Option<i32>,
    pub timeout: Option<i32>,
    pub retry_policy: Option<RetryPolicyInput>,
    pub headers: Option<BTreeMap<String, String>>,
    /// Setting true re-enables a disabled endpoint and resets its failure counters.
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub rate_limit_per_second: Option<Option<i32>>,
    /// `hex`, `sha256_prefixed` or `ed25519`.
    pub signature_format: Option<String>,
    /// A filter as on creation; null removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>, nullable)]
    pub filter: Option<Option<serde_json::Value>>,
    /// `push` or `pull`.
    pub mode: Option<String>,
    /// An ordering as on creation; null removes it (waiting deliveries go out at once).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>, nullable)]
    pub ordering: Option<Option<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing too, 0 to 604800 (default 86400).
    pub grace_period_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetryPolicyView {
    pub initial_delay_ms: i64,
    pub multiplier: f64,
    pub max_delay_ms: i64,
}

/// A webhook endpoint. `secret` is present only when it was just created or rotated.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: EndpointId,
    /// Null for a pull endpoint without one.
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub is_active: bool,
    /// Why the endpoint was disabled automatically (410 Gone, failure rules).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub max_retries: i32,
    /// Seconds.
    pub timeout: i32,
    pub retry_policy: RetryPolicyView,
    pub headers: BTreeMap<String, String>,
    pub rate_limit_per_second: Option<i32>,
    /// `hex`, `sha256_prefixed` or `ed25519`: how deliveries are signed.
    pub signature_format: String,
    /// The Ed25519 public key (`whpk_…`) that verifies `v1a,` signatures; set once the endpoint uses `ed25519`.
    pub public_key: Option<String>,
    /// Only events whose delivery body matches are delivered; null: all subscribed events.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// `push` or `pull`.
    pub mode: String,
    /// `{"key", "on_dead_letter"}`: deliveries sharing the key's value go out in order; null: no ordering.
    #[schema(value_type = Option<Object>)]
    pub ordering: Option<serde_json::Value>,
    /// Until when the previous secret signs too.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The signing secret (`whsec_…`). Shown at creation and rotation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookView {
    /// The URL as shown to people: a pull endpoint without one says so.
    pub fn url_label(&self) -> &str {
        self.url.as_deref().unwrap_or("(pull: read through the API)")
    }
}

/// What a custom header's value reads as: values are write-only, as they
/// often carry credentials. Sent back unchanged on update, it keeps the
/// stored value.
pub const MASKED_VALUE: &str = "********";

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

fn is_reserved_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("x-webhook-")
        || n.starts_with("webhook-")
        || matches!(
            n.as_str(),
            "content-type"
                | "content-length"
                | "host"
                | "user-agent"
                | "transfer-encoding"
                | "connection"
                | "traceparent"
                | "tracestate"
        )
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
        if !is_token(&k) {
            err(&format!("headers.{k}"), "is not a valid header name".into());
        } else if is_reserved_header(&k) {
            err(&format!("headers.{k}"), "is set by Hookline and cannot be overridden".into());
        } else if v.len() > 4096 || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            err(&format!("headers.{k}"), "value must be at most 4096 characters without line breaks".into());
        } else {
            headers.push((k, v));
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

fn parse_id(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).map_err(|_| ApiError::not_found("webhook endpoint"))
}

fn audit_details(c: &EndpointConfig, header_names: Vec<&str>) -> serde_json::Value {
    json!({
        "url": c.url, "events": c.events, "is_active": c.is_active, "max_retries": c.max_retries,
        "timeout": c.timeout_seconds, "headers": header_names, "filter": c.filter, "mode": c.mode,
        "ordering": c.ordering,
    })
}

/// Create a webhook endpoint
///
/// The answer's `secret` signs every delivery to this endpoint; it is shown
/// now and at rotation only.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "Webhooks",
    request_body = WebhookInput,
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 201, description = "Created; `secret` is shown once", body = WebhookView),
        (status = 409, description = "The organisation's endpoint quota is reached", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (URL scheme or target, unknown event type, bounds, reserved header)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_webhook(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<WebhookInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(create(&app, &auth, body.into_inner()).await?))
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
    let principal = auth.clone();
    let details = audit_details(&v.config, v.headers.iter().map(|(k, _)| k.as_str()).collect());
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let org = hookline_store::orgs::get(c, principal.org_id.as_uuid())
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
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "webhook.created",
                "webhook",
                &id.to_string(),
                details,
            )
            .await?;
            Ok(row)
        })
        .await?;
    app.caches.invalidate(Topic::Endpoint { org: principal.org_id.as_uuid(), id: id.as_uuid() }).await;
    view(app, row, Some(&secret))
}

/// List webhook endpoints
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "Webhooks",
    params(PageParams),
    security(("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "A page of endpoints, newest first", body = ListResponse<WebhookView>))
)]
pub async fn list_webhooks(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
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

/// Get a webhook endpoint
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    security(("api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "The endpoint (without its secret)", body = WebhookView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_webhook(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(get(&app, &auth, &id).await?))
}

pub async fn get(app: &ControlState, auth: &Principal, id: &str) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let id = parse_id(id)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::endpoints::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
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
    let principal = auth.clone();
    let details = audit_details(&config, headers.iter().map(|(k, _)| k.as_str()).collect());
    let mut conn = app.conn().await?;
    let action = action.to_owned();
    let master = app.master_key.clone();
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let before = hookline_store::endpoints::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            let stored = secrets::open_headers(&master, id.as_uuid(), &before.headers).map_err(ApiError::internal)?;
            keep_masked(&mut headers, &stored);
            config.headers = secrets::seal_headers(&master, id.as_uuid(), &headers);
            let mut row = hookline_store::endpoints::update(c, principal.org_id.as_uuid(), id.as_uuid(), &config)
                .await?
                .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            if row.signature_format == SignatureFormat::Ed25519.as_str() && row.signing_key_ciphertext.is_none() {
                let key = SigningKey::generate();
                let sealed = secrets::seal_signing_key(&master, id.as_uuid(), &key);
                row = hookline_store::endpoints::ensure_signing_key(c, id.as_uuid(), sealed, &key.public_key()).await?;
            }
            if row.is_active && !before.is_active {
                // Re-enabled: its counters start afresh and the disabling alert is over.
                hookline_store::endpoints::reset_health(c, id.as_uuid()).await?;
                hookline_store::alerts::resolve_for_endpoint(c, id.as_uuid(), &hookline_domain::status::AlertRule::ALL)
                    .await?;
            }
            audit::record(c, principal.org_id, Actor::Key(&principal), &action, "webhook", &id.to_string(), details)
                .await?;
            Ok((before.ordering, row))
        })
        .await?;
    let (ordered_before, row) = row;
    app.caches.invalidate(Topic::Endpoint { org: principal.org_id.as_uuid(), id: id.as_uuid() }).await;
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

/// Replace a webhook endpoint's configuration
#[utoipa::path(
    put, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    request_body = WebhookInput,
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Replaced", body = WebhookView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace_webhook(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<WebhookInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(replace(&app, &auth, &id, body.into_inner()).await?))
}

/// Replaces the whole configuration (not the secret).
pub async fn replace(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    input: WebhookInput,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = parse_id(id)?;
    let v = validate(app, auth.org_id, input).await?;
    let row = save(app, auth, id, v, "webhook.replaced").await?;
    view(app, row, None)
}

/// Update some of a webhook endpoint's fields
#[utoipa::path(
    patch, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    request_body = WebhookPatch,
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Updated", body = WebhookView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_webhook(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<WebhookPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(update(&app, &auth, &id, body.into_inner()).await?))
}

/// Changes the fields the patch names, validated as a whole.
pub async fn update(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    patch: WebhookPatch,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = parse_id(id)?;
    let existing = {
        let mut conn = app.conn().await?;
        hookline_store::endpoints::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
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

/// Delete a webhook endpoint
///
/// Its pending deliveries are cancelled; its delivery history is kept.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_webhook(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete(&app, &auth, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Soft-deletes the endpoint and cancels its pending deliveries.
pub async fn delete(app: &ControlState, auth: &Principal, id: &str) -> Result<(), ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = parse_id(id)?;
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    conn.transaction::<_, ApiError, _>(async |c| {
        let cancelled = hookline_store::endpoints::soft_delete(c, principal.org_id.as_uuid(), id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        audit::record(
            c,
            principal.org_id,
            Actor::Key(&principal),
            "webhook.deleted",
            "webhook",
            &id.to_string(),
            json!({"cancelled_deliveries": cancelled}),
        )
        .await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate(Topic::Endpoint { org: principal.org_id.as_uuid(), id: id.as_uuid() }).await;
    Ok(())
}

/// Rotate a webhook endpoint's signing secret
///
/// During the grace period both secrets sign every delivery (two `v1,`
/// entries in `webhook-signature`), so receivers can switch without loss.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    request_body(content = RotateSecret, description = "Optional"),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Rotated; `secret` is the new secret, shown once", body = WebhookView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid grace period", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: Option<web::Json<RotateSecret>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map(|b| b.into_inner()).unwrap_or_default();
    Ok(HttpResponse::Ok().json(rotate(&app, &auth, &id, body).await?))
}

/// Replaces the signing secret; the previous one keeps signing for the grace period.
pub async fn rotate(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    body: RotateSecret,
) -> Result<WebhookView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = parse_id(id)?;
    let grace = body.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=7 * 24 * 3600).contains(&grace) {
        return Err(ApiError::invalid_field("grace_period_seconds", "must be between 0 and 604800"));
    }
    let secret = WebhookSecret::generate();
    let sealed = secrets::seal_secret(&app.master_key, id.as_uuid(), &secret);
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let current = hookline_store::endpoints::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            let (prev, until) = if grace > 0 {
                (Some(current.secret_ciphertext.as_slice()), Some(Utc::now() + Duration::seconds(grace)))
            } else {
                (None, None)
            };
            let row = hookline_store::endpoints::rotate_secret(
                c,
                principal.org_id.as_uuid(),
                id.as_uuid(),
                &sealed,
                prev,
                until,
            )
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "webhook.secret_rotated",
                "webhook",
                &id.to_string(),
                json!({"grace_period_seconds": grace}),
            )
            .await?;
            Ok(row)
        })
        .await?;
    app.caches.invalidate(Topic::Endpoint { org: principal.org_id.as_uuid(), id: id.as_uuid() }).await;
    view(app, row, Some(&secret))
}
