//! Delivery history and replay: list and inspect deliveries, retry one,
//! recover an endpoint's failures, send a test event, endpoint stats.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::event::WEBHOOK_TEST;
use hookline_domain::id::{AttemptId, DeliveryId, EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_domain::status::{DeliveryStatus, OutboxReason};
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::deliveries::{AttemptRow, DeliveryFilter, DeliveryRow};
use hookline_store::events::EventRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};

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

/// At most this many deliveries are re-queued by one recover call...
pub const RECOVER_MAX: usize = 10_000;
/// ...in transactions of this many, so that no lock is held for long.
const RECOVER_BATCH: usize = 500;

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
const TEST_WAIT_MARGIN_SECS: u64 = 5;

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
    fn of(s: &hookline_service_kit::flow::FlowState, configured: Option<i32>) -> Self {
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

fn parse_delivery_id(id: &str) -> Result<DeliveryId, ApiError> {
    DeliveryId::parse(id).map_err(|_| ApiError::not_found("delivery"))
}

/// The organisation's endpoint, which must be enabled for new attempts.
async fn active_endpoint(
    c: &mut diesel_async::AsyncPgConnection,
    org: hookline_domain::id::OrgId,
    id: EndpointId,
) -> Result<hookline_store::endpoints::EndpointRow, ApiError> {
    let ep = hookline_store::endpoints::get(c, org.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    if !ep.is_active {
        return Err(ApiError::conflict("endpoint_inactive", "the endpoint is disabled; enable it first"));
    }
    Ok(ep)
}

fn parse_endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).map_err(|_| ApiError::not_found("webhook endpoint"))
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
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
}

pub async fn list(
    app: &ControlState,
    auth: &Principal,
    q: &DeliveryParams,
) -> Result<ListResponse<DeliveryView>, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let status = match &q.status {
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            let names: Vec<_> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid_field("status", format!("must be one of {}", names.join(", ")))
        })?),
        None => None,
    };
    let endpoint_id = match &q.webhook_id {
        Some(w) => {
            Some(EndpointId::parse(w).map_err(|e| ApiError::invalid_field("webhook_id", e.to_string()))?.as_uuid())
        }
        None => None,
    };
    time_in_range("since", q.since)?;
    time_in_range("until", q.until)?;
    let filter = DeliveryFilter { endpoint_id, status, event_type: q.event.clone(), since: q.since, until: q.until };
    let mut conn = app.conn().await?;
    let page = hookline_store::deliveries::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|d| d.id);
    let data: Vec<DeliveryView> = page.items.into_iter().map(DeliveryView::from).collect();
    Ok(ListResponse::new(data, page.has_more, last))
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
    Ok(HttpResponse::Ok().json(get(&app, &auth, &id).await?))
}

pub async fn get(app: &ControlState, auth: &Principal, id: &str) -> Result<DeliveryDetail, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let id = parse_delivery_id(id)?;
    let mut conn = app.conn().await?;
    let d = hookline_store::deliveries::get_for_org(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let event =
        hookline_store::events::get(&mut conn, d.event_id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = hookline_store::deliveries::attempts(&mut conn, d.id).await?;
    let payload = serde_json::from_slice(&hookline_domain::event::webhook_body(
        &event.event_type,
        event.occurred_at,
        &event.data,
    ))
    .map_err(ApiError::internal)?;
    Ok(DeliveryDetail {
        delivery: d.into(),
        payload,
        attempt_log: attempts.into_iter().map(AttemptView::from).collect(),
    })
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
    Ok(HttpResponse::Accepted().json(retry(&app, &auth, &id).await?))
}

/// Queues a new attempt of a failed or dead-lettered delivery.
pub async fn retry(app: &ControlState, auth: &Principal, id: &str) -> Result<DeliveryView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let id = parse_delivery_id(id)?;
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let d = hookline_store::deliveries::get_for_org(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("delivery"))?;
            let ep = hookline_store::endpoints::get(c, principal.org_id.as_uuid(), d.endpoint_id).await?;
            if ep.is_none_or(|e| !e.is_active) {
                return Err(ApiError::conflict(
                    "endpoint_inactive",
                    "the delivery's endpoint is disabled or deleted; enable it first",
                ));
            }
            if !hookline_store::deliveries::requeue(c, &d, OutboxReason::Manual).await? {
                return Err(ApiError::conflict(
                    "not_retryable",
                    format!("a {} delivery cannot be retried; only failed and dead_letter ones", d.status),
                ));
            }
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "delivery.retried",
                "delivery",
                &id.to_string(),
                json!({}),
            )
            .await?;
            hookline_store::deliveries::get(c, d.id).await?.ok_or_else(|| ApiError::not_found("delivery"))
        })
        .await?;
    Ok(DeliveryView::from(row))
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
    Ok(HttpResponse::Accepted().json(recover_failures(&app, &auth, &id, body.into_inner()).await?))
}

/// Re-queues an endpoint's failed and dead-lettered deliveries created in the window.
pub async fn recover_failures(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    body: RecoverInput,
) -> Result<Recovered, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let id = parse_endpoint_id(id)?;
    time_in_range("since", Some(body.since))?;
    time_in_range("until", body.until)?;
    let until = body.until.unwrap_or_else(Utc::now);
    if body.since >= until {
        return Err(ApiError::invalid_field("since", "must be before until"));
    }
    let (since, principal) = (body.since, auth.clone());
    let mut conn = app.conn().await?;
    let ep = active_endpoint(&mut conn, principal.org_id, id).await?;
    let (mut requeued, mut after, mut has_more) = (0, None, false);
    while requeued < RECOVER_MAX {
        let take = RECOVER_BATCH.min(RECOVER_MAX - requeued);
        let (n, last, full) = conn
            .transaction::<_, ApiError, _>(async |c| {
                let org = principal.org_id.as_uuid();
                let ids =
                    hookline_store::deliveries::recoverable(c, org, ep.id, (since, until), after, take as i64).await?;
                let n = hookline_store::deliveries::requeue_many(c, &ids, OutboxReason::Manual).await?;
                Ok((n, ids.last().copied(), ids.len() == take))
            })
            .await?;
        requeued += n;
        after = last;
        if !full {
            break;
        }
        has_more = requeued >= RECOVER_MAX;
    }
    audit::record(
        &mut conn,
        principal.org_id,
        Actor::Key(&principal),
        "webhook.recovered",
        "webhook",
        &id.to_string(),
        json!({"since": since, "until": until, "requeued": requeued, "has_more": has_more}),
    )
    .await?;
    Ok(Recovered { requeued, has_more })
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
        return Ok(HttpResponse::Accepted().json(test(&app, &auth, &id).await?));
    }
    Ok(match test_and_wait(&app, &auth, &id).await? {
        (_, Some(result)) => HttpResponse::Ok().json(result),
        (sent, None) => HttpResponse::Accepted().json(sent),
    })
}

/// Sends a test event and waits for its attempt ([`first_attempt`]), unless no worker consumes.
pub async fn test_and_wait(
    app: &ControlState,
    auth: &Principal,
    id: &str,
) -> Result<(TestSent, Option<TestResult>), ApiError> {
    let sent = test(app, auth, id).await?;
    if !workers_consuming(app).await {
        return Ok((sent, None));
    }
    let result = first_attempt(app, auth.org_id, &sent).await?;
    Ok((sent, result))
}

/// Whether any worker consumes the work queue: without one, waiting for
/// the attempt only holds the caller until the deadline.
async fn workers_consuming(app: &ControlState) -> bool {
    use hookline_broker::lapin::options::QueueDeclareOptions;
    let Ok(ch) = app.broker.channel().await else { return false };
    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(hookline_broker::topology::QUEUE_WORK.into(), opts, Default::default())
        .await
        .is_ok_and(|q| q.consumer_count() > 0)
}

/// Waits for the test delivery's first attempt: up to the endpoint's timeout,
/// plus a few seconds for the trip through the queue.
pub async fn first_attempt(
    app: &ControlState,
    org: hookline_domain::id::OrgId,
    sent: &TestSent,
) -> Result<Option<TestResult>, ApiError> {
    let (timeout, format) = {
        let mut conn = app.conn().await?;
        let d = hookline_store::deliveries::get_for_org(&mut conn, org.as_uuid(), sent.delivery_id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("delivery"))?;
        let ep = hookline_store::endpoints::get(&mut conn, org.as_uuid(), d.endpoint_id)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        (ep.timeout_seconds, ep.signature_format)
    };
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_secs(timeout.max(1) as u64 + TEST_WAIT_MARGIN_SECS);
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        interval.tick().await;
        let attempt = {
            let mut conn = app.conn().await?;
            hookline_store::deliveries::attempts(&mut conn, sent.delivery_id.as_uuid()).await?.into_iter().next()
        };
        if let Some(a) = attempt {
            return Ok(Some(TestResult {
                delivery_id: sent.delivery_id,
                event_id: sent.event_id,
                succeeded: a.succeeded,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                response_excerpt: a.response_body,
                error: a.error_message,
                signature_format: format,
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// Sends a `webhook.test` event to one endpoint.
pub async fn test(app: &ControlState, auth: &Principal, id: &str) -> Result<TestSent, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = parse_endpoint_id(id)?;
    let principal = auth.clone();
    let now = Utc::now();
    let event_id = EventId::new();
    let mut conn = app.conn().await?;
    let delivery_id = conn
        .transaction::<_, ApiError, _>(async |c| {
            let ep = active_endpoint(c, principal.org_id, id).await?;
            if ep.mode == "pull" {
                return Err(ApiError::conflict(
                    "pull_endpoint",
                    "a pull endpoint is never pushed to; read its events with GET /api/v1/webhooks/{id}/events",
                ));
            }
            let event = EventRow {
                id: event_id.as_uuid(),
                org_id: principal.org_id.as_uuid(),
                event_type: WEBHOOK_TEST.into(),
                data: json!({"message": "This is a test event from Hookline.", "webhook_id": id.to_string()}),
                occurred_at: now,
                idempotency_key: None,
                request_hash: None,
                delivery_count: 1,
                created_at: now,
            };
            let ids = hookline_store::events::fan_out(c, &event, &[ep.id], &[], OutboxReason::Manual, None).await?;
            let delivery_id = DeliveryId::from_uuid(ids[0]);
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "webhook.tested",
                "webhook",
                &id.to_string(),
                json!({"delivery_id": delivery_id}),
            )
            .await?;
            Ok(delivery_id)
        })
        .await?;
    Ok(TestSent { delivery_id, event_id })
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
    Ok(HttpResponse::Ok().json(endpoint_stats(&app, &auth, &id, &q).await?))
}

pub async fn endpoint_stats(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    q: &StatsParams,
) -> Result<EndpointStatsView, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let id = parse_endpoint_id(id)?;
    let window = q.window.clone().unwrap_or_else(|| "24h".into());
    let span = match window.as_str() {
        "1h" => Duration::hours(1),
        "24h" => Duration::hours(24),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        _ => return Err(ApiError::invalid_field("window", "must be 1h, 24h, 7d or 30d")),
    };
    let mut conn = app.conn().await?;
    let ep = hookline_store::endpoints::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let s = hookline_store::deliveries::endpoint_stats(&mut conn, ep.id, Utc::now() - span).await?;
    let h = hookline_store::deliveries::endpoint_health(&mut conn, ep.id).await?;
    // Without Redis the fleet keeps no adaptive state: the configured limit is all there is.
    let flow = hookline_service_kit::flow::read_state(&app.redis, ep.id).await.unwrap_or_default();
    Ok(EndpointStatsView {
        webhook_id: id,
        window,
        attempts: s.attempts,
        succeeded: s.succeeded,
        failed: s.attempts - s.succeeded,
        success_rate: (s.attempts > 0).then(|| s.succeeded as f64 / s.attempts as f64),
        p50_latency_ms: s.p50_ms,
        p95_latency_ms: s.p95_ms,
        consecutive_failures: h.as_ref().map(|h| h.consecutive_failures).unwrap_or(0),
        last_success_at: h.as_ref().and_then(|h| h.last_success_at),
        last_failure_at: h.as_ref().and_then(|h| h.last_failure_at),
        flow: FlowView::of(&flow, ep.rate_limit_per_second),
    })
}
