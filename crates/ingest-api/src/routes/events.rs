//! Event ingest: `POST /api/v1/events/leads`, `/api/v1/events/leads/updates`
//! and the generic `POST /api/v1/events`.
//!
//! An event is answered 202 only once it, one delivery per active
//! subscribed endpoint, and their outbox rows are committed together.

use hookline_domain::status::OutboxReason;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use crate::state::IngestState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection;
use futures_util::StreamExt;
use hookline_domain::event::{builtin_schemas, EventType, PayloadSchema, SchemaViolation, LEAD_UPDATE, NEW_LEAD};
use hookline_domain::id::{EventId, OrgId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, OrgEventQuota};
use hookline_service_kit::caches::Fanout;
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_store::events::{EventRow, NewEvent};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

static BUILTIN: LazyLock<BTreeMap<&'static str, PayloadSchema>> = LazyLock::new(builtin_schemas);

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Each of these counts against the organisation's event quota: the
    // matched route says so, whatever spelling of the path reached it.
    let quota = web::Data::new(OrgEventQuota);
    cfg.service(web::resource("/api/v1/events/leads").app_data(quota.clone()).route(web::post().to(ingest_new_lead)))
        .service(
            web::resource("/api/v1/events/leads/updates")
                .app_data(quota.clone())
                .route(web::post().to(ingest_lead_update)),
        )
        .service(
            web::resource("/api/v1/events")
                .app_data(quota)
                .route(web::post().to(ingest_event))
                .route(web::get().to(list_events)),
        )
        .service(web::resource("/api/v1/events/{id}").route(web::get().to(get_event)));
}

/// An accepted event, as the API lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: EventId,
    /// The event type.
    pub event: String,
    pub data: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Deliveries created for it: one per endpoint subscribed at the time.
    pub delivery_count: i32,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        Self {
            id: EventId::from_uuid(e.id),
            event: e.event_type,
            data: e.data,
            occurred_at: e.occurred_at,
            created_at: e.created_at,
            delivery_count: e.delivery_count,
        }
    }
}

/// One of an event's deliveries, in brief (the delivery API has the rest).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDelivery {
    pub id: hookline_domain::id::DeliveryId,
    pub webhook_id: hookline_domain::id::EndpointId,
    /// pending, delivered, failed, dead_letter, cancelled.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An event with its deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventView,
    pub deliveries: Vec<EventDelivery>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Only events of this type.
    pub event: Option<String>,
    /// Accepted at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Accepted before this time.
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List the organisation's events, newest first
#[utoipa::path(
    get, path = "/api/v1/events", tag = "Events",
    params(EventListParams),
    security(("api_key" = ["events:read"])),
    responses(
        (status = 200, description = "A page of events", body = hookline_service_kit::pagination::ListResponse<EventView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(
    app: web::Data<IngestState>,
    auth: Auth,
    q: web::Query<EventListParams>,
) -> Result<HttpResponse, ApiError> {
    use hookline_service_kit::pagination::{ListResponse, PageParams};
    use hookline_service_kit::storable::time_in_range;
    auth.require(Scope::EventsRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    time_in_range("since", q.since)?;
    time_in_range("until", q.until)?;
    let filter = hookline_store::events::EventFilter { event_type: q.event.clone(), since: q.since, until: q.until };
    let mut conn = app.conn().await?;
    let page = hookline_store::events::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|e| e.id);
    let data: Vec<EventView> = page.items.into_iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(ListResponse::new(data, page.has_more, last)))
}

/// One event, with its deliveries
#[utoipa::path(
    get, path = "/api/v1/events/{id}", tag = "Events",
    params(("id" = String, Path, description = "evt_… id")),
    security(("api_key" = ["events:read"])),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event(
    app: web::Data<IngestState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::EventsRead)?;
    let id = EventId::parse(&id).map_err(|_| ApiError::not_found("event"))?;
    let org = auth.org_id;
    let mut conn = app.conn().await?;
    let event =
        hookline_store::events::get_for_org(&mut conn, org, id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let deliveries = hookline_store::deliveries::for_event(&mut conn, org, id)
        .await?
        .into_iter()
        .map(|d| EventDelivery {
            id: hookline_domain::id::DeliveryId::from_uuid(d.id),
            webhook_id: hookline_domain::id::EndpointId::from_uuid(d.endpoint_id),
            status: d.status.as_str().to_owned(),
            attempts: d.attempt_count,
            last_status_code: d.last_status_code,
            delivered_at: d.delivered_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(EventDetail { event: EventView::from(event), deliveries }))
}

/// A lead, as the CRM knows it.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "lead_123", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+441234567890", "source": "website"}))]
pub struct Lead {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub source: Option<String>,
}

/// A lead and what changed.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "lead_123", "name": "Ada Lovelace", "email": "ada@example.com", "changes": {"status": "contacted"}}))]
pub struct LeadUpdate {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    /// The fields that changed, with their new values.
    pub changes: serde_json::Value,
}

/// Any event type, built-in or the organisation's own.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_type": "new_lead", "data": {"id": "lead_123", "name": "Ada Lovelace", "email": "ada@example.com"}, "event_id": "crm-7f3a"}))]
pub struct EventInput {
    pub event_type: String,
    /// The event's body. `payload` is accepted as another name for it (as
    /// other webhook systems' clients send it): give exactly one of the two.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Object)]
    pub data: Option<serde_json::Value>,
    /// Another name for `data`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// Your id for the event: a retry with the same id within 24 h returns the
    /// original answer and creates nothing (the `Idempotency-Key` header does the same).
    pub event_id: Option<String>,
    /// When it happened (RFC 3339); default now.
    pub timestamp: Option<DateTime<Utc>>,
}

/// A field that is there, even as `null` (which is a document too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as Deserialize>::deserialize(d).map(Some)
}

/// What an accepted event became.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"event_id": "evt_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e", "event_type": "new_lead", "deliveries": 2}))]
pub struct Accepted {
    pub event_id: EventId,
    pub event_type: String,
    /// Deliveries created: one per active endpoint subscribed to the type.
    pub deliveries: i32,
}

/// Reads the body, refusing more than the limit with a 413 problem.
async fn read_body(app: &IngestState, req: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    let limit = app.settings.max_payload_bytes;
    if let Some(len) =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::payload_too_large(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid_json("the body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(e.to_string()))
}

fn idempotency_key(req: &HttpRequest, event_id: Option<&str>) -> Result<Option<String>, ApiError> {
    let header = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_owned));
    let key = match header {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(ApiError::invalid_field("Idempotency-Key", "must be printable ASCII")),
        None => event_id.map(str::to_owned),
    };
    match key {
        Some(k) if k.trim().is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN => Err(ApiError::invalid_field(
            if event_id.is_some() { "event_id" } else { "Idempotency-Key" },
            "must be 1 to 255 characters",
        )),
        other => Ok(other),
    }
}

fn violations(prefix: &str, errs: Vec<SchemaViolation>) -> ApiError {
    ApiError::validation(
        errs.into_iter().map(|v| FieldError { field: format!("{prefix}{}", v.path), message: v.message }).collect(),
    )
}

/// The schema for a type: built-in, or the organisation's (cached).
async fn schema_for(
    app: &IngestState,
    org: OrgId,
    event_type: &EventType,
) -> Result<Option<Arc<Option<PayloadSchema>>>, ApiError> {
    if event_type.is_builtin() {
        return Ok(None);
    }
    let key = (org.as_uuid(), event_type.to_string());
    if app.caches.active() {
        if let Some(s) = app.caches.event_types.get(&key) {
            return Ok(Some(s));
        }
    }
    let mut conn = app.conn().await?;
    let row = hookline_store::event_types::get_by_name(&mut conn, org.as_uuid(), event_type.as_str()).await?;
    let compiled = Arc::new(row.and_then(|r| PayloadSchema::compile(&r.schema).ok()));
    if app.caches.active() {
        app.caches.event_types.insert(key, compiled.clone());
    }
    Ok(Some(compiled))
}

fn validate_data(prefix: &str, schema: &PayloadSchema, data: &serde_json::Value) -> Result<(), ApiError> {
    schema.validate(data).map_err(|e| violations(prefix, e))
}

/// Active endpoints of the org subscribed to the type, with their filters (cached).
async fn subscribers(app: &IngestState, org: OrgId, event_type: &str) -> Result<Arc<Fanout>, ApiError> {
    let key = (org.as_uuid(), event_type.to_owned());
    if app.caches.active() {
        if let Some(subs) = app.caches.fanout.get(&key) {
            return Ok(subs);
        }
    }
    let mut conn = app.conn().await?;
    let rows = hookline_store::endpoints::subscribed(&mut conn, org.as_uuid(), event_type).await?;
    let subs = Arc::new(Fanout::new(rows));
    if app.caches.active() {
        app.caches.fanout.insert(key, subs.clone());
    }
    Ok(subs)
}

fn request_hash(event_type: &str, data: &serde_json::Value, timestamp: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(event_type.as_bytes());
    ctx.update(b"\n");
    ctx.update(&serde_json::to_vec(data).unwrap_or_default());
    if let Some(t) = timestamp {
        ctx.update(t.to_rfc3339().as_bytes());
    }
    ctx.finish().as_ref().to_vec()
}

enum Stored {
    New(Accepted),
    Replayed(Accepted),
}

/// Writes the event, its deliveries and their outbox rows: in a transaction
/// shared with other requests' events when it can (group commit), alone when
/// its idempotency key is taken or the shared transaction failed.
async fn store_event(
    app: &IngestState,
    org: OrgId,
    event_type: &str,
    data: serde_json::Value,
    occurred_at: DateTime<Utc>,
    idem: Option<String>,
    hash: Vec<u8>,
    trace: hookline_domain::trace::TraceParent,
) -> Result<Stored, ApiError> {
    let fanout = subscribers(app, org, event_type).await?;
    let endpoints = fanout.matching(event_type, occurred_at, &data);
    let lanes = fanout.lanes(&endpoints, &data);
    let event_id = EventId::new();
    let now = Utc::now();
    let event = EventRow {
        id: event_id.as_uuid(),
        org_id: org.as_uuid(),
        event_type: event_type.to_owned(),
        data,
        occurred_at,
        idempotency_key: idem.clone(),
        request_hash: idem.as_ref().map(|_| hash.clone()),
        delivery_count: endpoints.len() as i32,
        created_at: now,
    };
    let traceparent = trace.to_string();
    let batched = NewEvent { event, endpoints, lanes, traceparent: Some(traceparent) };
    let NewEvent { event, endpoints, lanes, traceparent } = match app.writer.submit(batched).await {
        Some(Ok(deliveries)) => {
            app.rollups.event(org.as_uuid(), event_type, deliveries as i64);
            return Ok(Stored::New(Accepted {
                event_id,
                event_type: event_type.to_owned(),
                deliveries: deliveries as i32,
            }));
        }
        Some(Err(event)) => event,
        None => return Err(ApiError::unavailable("the event writer is shutting down; retry", 1)),
    };
    let traceparent = traceparent.unwrap_or_default();

    for round in 0..2 {
        let mut conn = app.conn().await?;
        let result = conn
            .transaction::<_, diesel::result::Error, _>(async |c| {
                hookline_store::events::fan_out(c, &event, &endpoints, &lanes, OutboxReason::Fresh, Some(&traceparent))
                    .await
            })
            .await;
        match result {
            Ok(deliveries) => {
                drop(conn);
                hookline_service_kit::lanes::kick(&app.broker, &app.pool, &lanes).await;
                app.rollups.event(org.as_uuid(), event_type, deliveries.len() as i64);
                return Ok(Stored::New(Accepted {
                    event_id,
                    event_type: event_type.to_owned(),
                    deliveries: deliveries.len() as i32,
                }));
            }
            Err(e)
                if idem.is_some()
                    && hookline_store::db::is_unique_violation(
                        &e,
                        Some(hookline_store::events::UNIQUE_IDEMPOTENCY),
                    ) =>
            {
                // The key was used before (perhaps at this very moment, by another instance).
                let key = idem.as_deref().expect("checked");
                let Some(original) = hookline_store::events::by_idempotency_key(&mut conn, org.as_uuid(), key).await?
                else {
                    continue;
                };
                if original.created_at < Utc::now() - Duration::hours(IDEMPOTENCY_WINDOW_HOURS) && round == 0 {
                    // Outside the window: the key is free again.
                    hookline_store::events::release_idempotency_key(&mut conn, original.id).await?;
                    continue;
                }
                if original.request_hash.as_deref() != Some(hash.as_slice()) {
                    return Err(ApiError::conflict(
                        "idempotency_conflict",
                        "this idempotency key was already used with a different request body",
                    ));
                }
                return Ok(Stored::Replayed(Accepted {
                    event_id: EventId::from_uuid(original.id),
                    event_type: original.event_type,
                    deliveries: original.delivery_count,
                }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::unavailable("the idempotency key is being reused concurrently; retry", 1))
}

async fn accept(
    app: &IngestState,
    auth: &Auth,
    req: &HttpRequest,
    event_type: EventType,
    data: serde_json::Value,
    data_prefix: &str,
    event_id: Option<&str>,
    timestamp: Option<DateTime<Utc>>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency_key(req, event_id)?;
    hookline_service_kit::storable::time_in_range("timestamp", timestamp)?;
    if event_type.is_operational() || event_type.as_str() == hookline_domain::event::WEBHOOK_TEST {
        return Err(ApiError::invalid_field(
            "event_type",
            format!("`{event_type}` is emitted by Hookline itself and cannot be sent"),
        ));
    }
    match schema_for(app, auth.org_id, &event_type).await? {
        None => validate_data(data_prefix, &BUILTIN[event_type.as_str()], &data)?,
        Some(custom) => match custom.as_ref() {
            Some(schema) => validate_data(data_prefix, schema, &data)?,
            None if !auth.org_strict_event_types => {}
            None => return Err(ApiError::invalid_field("event_type", format!("unknown event type `{event_type}`"))),
        },
    }
    let hash = request_hash(event_type.as_str(), &data, timestamp);
    let occurred_at = timestamp.unwrap_or_else(Utc::now);
    // Continue the caller's trace (W3C traceparent) or start one; it travels with every delivery.
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(hookline_domain::trace::TraceParent::parse)
        .map(|t| t.child())
        .unwrap_or_else(hookline_domain::trace::TraceParent::root);
    let span = tracing::info_span!("ingest", org_id = %auth.org_id, event_type = %event_type, trace_id = %trace.trace_id_hex());
    hookline_service_kit::telemetry::attach_parent(&span, &trace);
    let stored = store_event(app, auth.org_id, event_type.as_str(), data, occurred_at, idem, hash, trace)
        .instrument(span)
        .await?;
    match stored {
        Stored::New(a) => Ok(HttpResponse::Accepted().json(a)),
        Stored::Replayed(a) => Ok(HttpResponse::Accepted().insert_header(("Idempotent-Replayed", "true")).json(a)),
    }
}

/// Report a new lead (`new_lead`)
///
/// The body is the lead. Answers 202 once the event and its deliveries are
/// stored; delivery happens asynchronously.
#[utoipa::path(
    post, path = "/api/v1/events/leads", tag = "Events",
    request_body = Lead,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry within 24 h return the original answer")),
    security(("api_key" = ["events:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit (256 KiB by default)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Schema violation; `errors` lists each failing path", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest_new_lead(
    app: web::Data<IngestState>,
    auth: Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::EventsWrite)?;
    let data = parse_json(&read_body(&app, &req, payload).await?)?;
    accept(&app, &auth, &req, EventType::parse(NEW_LEAD).expect("built-in"), data, "", None, None).await
}

/// Report a lead update (`lead_update`)
///
/// The body is the lead with a `changes` object.
#[utoipa::path(
    post, path = "/api/v1/events/leads/updates", tag = "Events",
    request_body = LeadUpdate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry within 24 h return the original answer")),
    security(("api_key" = ["events:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Schema violation", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest_lead_update(
    app: web::Data<IngestState>,
    auth: Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::EventsWrite)?;
    let data = parse_json(&read_body(&app, &req, payload).await?)?;
    accept(&app, &auth, &req, EventType::parse(LEAD_UPDATE).expect("built-in"), data, "", None, None).await
}

/// Send an event of any type
#[utoipa::path(
    post, path = "/api/v1/events", tag = "Events",
    request_body = EventInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Overrides `event_id` as the idempotency key")),
    security(("api_key" = ["events:write"])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown event type or schema violation", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest_event(
    app: web::Data<IngestState>,
    auth: Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::EventsWrite)?;
    let value = parse_json(&read_body(&app, &req, payload).await?)?;
    let input: EventInput = serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        let field = ["event_type", "data", "payload", "event_id", "timestamp"]
            .into_iter()
            .find(|f| msg.contains(&format!("`{f}`")))
            .unwrap_or("body");
        ApiError::invalid_field(field, msg)
    })?;
    let event_type =
        EventType::parse(&input.event_type).map_err(|e| ApiError::invalid_field("event_type", e.to_string()))?;
    let (body, pointer) = match (input.data, input.payload) {
        (Some(data), None) => (data, "/data"),
        (None, Some(payload)) => (payload, "/payload"),
        (Some(_), Some(_)) => return Err(ApiError::invalid_field("payload", "give data or payload, not both")),
        (None, None) => return Err(ApiError::invalid_field("data", "is required (or its other name, payload)")),
    };
    accept(&app, &auth, &req, event_type, body, pointer, input.event_id.as_deref(), input.timestamp).await
}
