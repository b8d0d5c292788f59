//! `/api/v1/webhooks`: endpoints, their secrets and configuration.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::EndpointId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use serde::{Deserialize, Serialize};

use crate::routes::scoped;
use crate::state::ControlState;
use crate::usecases::webhooks;
use crate::views::double_option;

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
    Ok(HttpResponse::Created().json(webhooks::create(&app, &auth, body.into_inner()).await?))
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
    Ok(HttpResponse::Ok().json(webhooks::list(&app, &auth, &q).await?))
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
    Ok(HttpResponse::Ok()
        .json(webhooks::get(&app, &auth, scoped(&auth, Scope::WebhooksRead, endpoint_id(&id))?).await?))
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
    Ok(HttpResponse::Ok().json(
        webhooks::replace(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?, body.into_inner())
            .await?,
    ))
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
    Ok(HttpResponse::Ok().json(
        webhooks::update(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?, body.into_inner())
            .await?,
    ))
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
    webhooks::delete(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?).await?;
    Ok(HttpResponse::NoContent().finish())
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
    Ok(HttpResponse::Ok()
        .json(webhooks::rotate(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?, body).await?))
}

/// An `ep_…` id from a path.
pub fn endpoint_id(text: &str) -> Result<EndpointId, ApiError> {
    crate::usecases::parse_id(text, "webhook endpoint")
}
