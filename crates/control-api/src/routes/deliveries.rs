//! Delivery history and replay: list and inspect deliveries, retry one,
//! recover an endpoint's failures, send a test event, endpoint stats.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::{AttemptId, DeliveryId, EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::ListResponse;
use hookline_store::deliveries::{AttemptRow, DeliveryRow};
use serde::{Deserialize, Serialize};

use crate::routes::scoped;
use crate::routes::webhooks::endpoint_id;
use crate::state::ControlState;
use crate::usecases::deliveries;

/// Mounted before the endpoint routes so `/webhooks/deliveries` is not taken for an endpoint id.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/deliveries", web::get().to(list_deliveries))
        .route("/api/v1/webhooks/deliveries/{id}", web::get().to(get_delivery))
        .route("/api/v1/webhooks/deliveries/{id}/retry", web::post().to(retry_delivery))
        .route("/api/v1/webhooks/{id}/recover", web::post().to(recover))
        .route("/api/v1/webhooks/{id}/test", web::post().to(send_test))
        .route("/api/v1/webhooks/{id}/stats", web::get().to(stats));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub webhook_id: EndpointId,
    /// The event type.
    pub event: String,
    /// pending, delivered, failed (a retry is scheduled), dead_letter,
    /// cancelled, or blocked (waiting in its ordering lane for the deliveries ahead of it).
    pub status: String,
    /// The value of the endpoint's ordering key for this delivery's event; null when not ordered.
    pub ordering_key: Option<String>,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: DeliveryId::from_uuid(r.id),
            event_id: EventId::from_uuid(r.event_id),
            webhook_id: EndpointId::from_uuid(r.endpoint_id),
            event: r.event_type,
            next_attempt_at: if r.status.awaits_attempt() { r.next_attempt_at } else { None },
            status: r.status.as_str().to_owned(),
            ordering_key: r.lane,
            attempts: r.attempt_count,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            last_attempt_at: r.last_attempt_at,
            delivered_at: r.delivered_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: AttemptId,
    pub attempt: i32,
    pub succeeded: bool,
    pub status_code: Option<i32>,
    /// dns, connect, tls, timeout, http_status, or null on success.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i32,
    /// The headers sent (signatures shortened, custom header values hidden).
    pub request_headers: serde_json::Value,
    pub response_headers: Option<serde_json::Value>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> Self {
        Self {
            id: AttemptId::from_uuid(a.id),
            attempt: a.attempt_number,
            succeeded: a.succeeded,
            status_code: a.status_code,
            error_class: a.error_class,
            error: a.error_message,
            latency_ms: a.latency_ms,
            request_headers: a.request_headers,
            response_headers: a.response_headers,
            response_body: a.response_body,
            created_at: a.created_at,
        }
    }
}

/// A delivery with its payload and every attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The body as delivered: `{"event", "timestamp", "data"}`.
    pub payload: serde_json::Value,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only this endpoint's deliveries (`ep_…`).
    pub webhook_id: Option<String>,
    pub status: Option<String>,
    /// Only this event type.
    pub event: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverInput {
    /// Re-queue failures created at or after this time.
    pub since: DateTime<Utc>,
    /// Default now.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recovered {
    /// Deliveries queued for a new attempt.
    pub requeued: usize,
    /// True when the window holds more than one call re-queues
    /// ([`RECOVER_MAX`]): call again to go on.
    pub has_more: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestSent {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TestParams {
    /// Wait for the attempt (up to the endpoint's timeout) and answer with it.
    pub wait: Option<bool>,
}

/// The first attempt of a test delivery, as the receiver answered it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub succeeded: bool,
    /// The receiver's HTTP status; null when none came (timeout, refused connection).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// The start of the response body (at most 4 KiB).
    pub response_excerpt: Option<String>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
    /// How `X-Webhook-Signature` was written: hex or sha256_prefixed.
    pub signature_format: String,
}

/// Seconds `?wait=true` waits beyond the endpoint's timeout, for the queue.
pub const TEST_WAIT_MARGIN_SECS: u64 = 5;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// 1h, 24h (default), 7d or 30d.
    pub window: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointStatsView {
    pub webhook_id: EndpointId,
    pub window: String,
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Succeeded attempts over all attempts, 0 to 1; null without attempts.
    pub success_rate: Option<f64>,
    pub p50_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub consecutive_failures: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Flow control across the worker fleet.
    pub flow: FlowView,
}

/// How deliveries to the endpoint are paced now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowView {
    /// `normal`; `throttled` (held below its ceiling after a 429, a 503 or
    /// slow answers, rising while healthy); or `paused` (honouring a `Retry-After`).
    pub state: String,
    /// The rate allowed now: the adaptive one when throttled, else `rate_limit_per_second` (null: no limit).
    pub rate_per_second: Option<f64>,
    /// The rate it climbs back to.
    pub ceiling_per_second: Option<f64>,
    pub paused_until: Option<DateTime<Utc>>,
}

impl FlowView {
    pub fn of(s: &hookline_service_kit::flow::FlowState, configured: Option<i32>) -> Self {
        let now = Utc::now().timestamp_millis();
        let paused_until = s.paused_until_ms.filter(|t| *t > now).and_then(DateTime::from_timestamp_millis);
        let state = match (paused_until, s.rate) {
            (Some(_), _) => "paused",
            (None, Some(_)) => "throttled",
            (None, None) => "normal",
        };
        let configured = configured.map(f64::from);
        let rate = match (s.rate, configured) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        Self {
            state: state.into(),
            rate_per_second: rate.map(|r| (r * 100.0).round() / 100.0),
            ceiling_per_second: s.ceiling.or(configured),
            paused_until,
        }
    }
}

/// List deliveries, newest first
#[utoipa::path(
    get, path = "/api/v1/webhooks/deliveries", tag = "Deliveries",
    params(DeliveryParams),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "A page of deliveries", body = ListResponse<DeliveryView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_deliveries(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(deliveries::list(&app, &auth, &q).await?))
}

/// A delivery, its payload and every attempt
#[utoipa::path(
    get, path = "/api/v1/webhooks/deliveries/{id}", tag = "Deliveries",
    params(("id" = String, Path, description = "dlv_… id")),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_delivery(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(deliveries::get(&app, &auth, scoped(&auth, Scope::DeliveriesRead, delivery_id(&id))?).await?))
}

/// Retry a failed or dead-lettered delivery now
#[utoipa::path(
    post, path = "/api/v1/webhooks/deliveries/{id}/retry", tag = "Deliveries",
    params(("id" = String, Path, description = "dlv_… id")),
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "A new attempt is queued", body = DeliveryView),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The delivery is not failed or dead-lettered", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_delivery(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted()
        .json(deliveries::retry(&app, &auth, scoped(&auth, Scope::DeliveriesRetry, delivery_id(&id))?).await?))
}

/// Re-queue an endpoint's failed and dead-lettered deliveries in a window
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/recover", tag = "Deliveries",
    params(("id" = String, Path, description = "ep_… id")),
    request_body = RecoverInput,
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "Queued", body = Recovered),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid window", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn recover(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<RecoverInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(
        deliveries::recover_failures(
            &app,
            &auth,
            scoped(&auth, Scope::DeliveriesRetry, endpoint_id(&id))?,
            body.into_inner(),
        )
        .await?,
    ))
}

/// Send a `webhook.test` event to this endpoint only
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/test", tag = "Deliveries",
    params(("id" = String, Path, description = "ep_… id"), TestParams),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "With `wait=true`: the attempt, as the receiver answered it", body = TestResult),
        (status = 202, description = "Queued (without `wait`, when no worker is consuming, or when no attempt finished in time)", body = TestSent),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn send_test(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<TestParams>,
) -> Result<HttpResponse, ApiError> {
    if !q.wait.unwrap_or(false) {
        return Ok(HttpResponse::Accepted()
            .json(deliveries::test(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?).await?));
    }
    Ok(match deliveries::test_and_wait(&app, &auth, scoped(&auth, Scope::WebhooksWrite, endpoint_id(&id))?).await? {
        (_, Some(result)) => HttpResponse::Ok().json(result),
        (sent, None) => HttpResponse::Accepted().json(sent),
    })
}

/// Delivery statistics of one endpoint
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/stats", tag = "Deliveries",
    params(("id" = String, Path, description = "ep_… id"), StatsParams),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "Statistics over the window", body = EndpointStatsView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown window", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<StatsParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        deliveries::endpoint_stats(&app, &auth, scoped(&auth, Scope::DeliveriesRead, endpoint_id(&id))?, &q).await?,
    ))
}

/// A `dlv_…` id from a delivery's path.
pub fn delivery_id(text: &str) -> Result<DeliveryId, ApiError> {
    crate::usecases::parse_id(text, "delivery")
}
