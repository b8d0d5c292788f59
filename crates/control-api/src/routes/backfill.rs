//! Backfills: deliver to an endpoint the past events it would have received
//! (a new endpoint, or one re-enabled after a gap). The ingest service's
//! relay advances them a batch at a time, beside live traffic.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::event::EventType;
use hookline_domain::id::{BackfillId, EndpointId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_service_kit::storable::time_in_range;
use hookline_store::backfill::BackfillRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/{id}/backfill", web::post().to(create_backfill))
        .route("/api/v1/webhooks/{id}/backfill/{job_id}", web::get().to(get_backfill));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillInput {
    /// Events accepted at or after this time.
    pub since: DateTime<Utc>,
    /// …and before this one (default now).
    pub until: Option<DateTime<Utc>>,
    /// Only these event types; omitted, the endpoint's own subscription.
    pub events: Option<Vec<String>>,
}

/// A backfill and how far it got.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackfillView {
    pub id: BackfillId,
    pub webhook_id: EndpointId,
    /// `running`, `completed`, or `cancelled` (the endpoint was disabled or deleted).
    pub state: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub events: Option<Vec<String>>,
    /// Events looked at so far.
    pub scanned: i64,
    /// Deliveries queued so far (events the endpoint had already been sent are skipped).
    pub enqueued: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<BackfillRow> for BackfillView {
    fn from(r: BackfillRow) -> Self {
        Self {
            id: BackfillId::from_uuid(r.id),
            webhook_id: EndpointId::from_uuid(r.endpoint_id),
            state: r.state,
            since: r.since,
            until: r.until,
            events: r.events,
            scanned: r.scanned,
            enqueued: r.enqueued,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

fn parse_endpoint(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).map_err(|_| ApiError::not_found("webhook endpoint"))
}

/// Deliver past events to an endpoint
///
/// The events accepted in the window that the endpoint subscribes to (or
/// the types named) and its filter passes, oldest first, skipping any it was
/// already sent. Runs in batches beside live traffic; follow it with the
/// returned id.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/backfill", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id")),
    request_body = BackfillInput,
    security(("api_key" = ["deliveries:retry"])),
    responses(
        (status = 202, description = "Started", body = BackfillView),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled, or a pull endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid window or event type", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_backfill(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    body: web::Json<BackfillInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(create(&app, &auth, &id, body.into_inner()).await?))
}

pub async fn create(
    app: &ControlState,
    auth: &Principal,
    id: &str,
    input: BackfillInput,
) -> Result<BackfillView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let id = parse_endpoint(id)?;
    time_in_range("since", Some(input.since))?;
    time_in_range("until", input.until)?;
    let until = input.until.unwrap_or_else(Utc::now);
    let mut errors = Vec::new();
    if input.since >= until {
        errors.push(FieldError { field: "since".into(), message: "must be before until".into() });
    }
    if let Some(types) = &input.events {
        if types.is_empty() || types.len() > 100 {
            errors.push(FieldError { field: "events".into(), message: "must name 1 to 100 event types".into() });
        }
        for (i, t) in types.iter().enumerate() {
            if t != "*" {
                if let Err(e) = EventType::parse(t) {
                    errors.push(FieldError { field: format!("events[{i}]"), message: e.to_string() });
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let ep = hookline_store::endpoints::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            if ep.mode == "pull" {
                return Err(ApiError::conflict(
                    "pull_endpoint",
                    "a pull endpoint reads its past events itself (GET /api/v1/webhooks/{id}/events)",
                ));
            }
            if !ep.is_active {
                return Err(ApiError::conflict("endpoint_inactive", "the endpoint is disabled; enable it first"));
            }
            let now = Utc::now();
            let row = BackfillRow {
                id: BackfillId::new().as_uuid(),
                org_id: principal.org_id.as_uuid(),
                endpoint_id: ep.id,
                since: input.since,
                until,
                events: input.events.clone(),
                state: "running".into(),
                cursor: None,
                scanned: 0,
                enqueued: 0,
                created_by_key_id: Some(principal.key_id.as_uuid()),
                created_at: now,
                updated_at: now,
                finished_at: None,
            };
            let row = hookline_store::backfill::insert(c, &row).await?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "webhook.backfill_started",
                "webhook",
                &id.to_string(),
                json!({"backfill_id": BackfillId::from_uuid(row.id), "since": row.since, "until": row.until, "events": row.events}),
            )
            .await?;
            Ok(row)
        })
        .await?;
    Ok(row.into())
}

/// A backfill's progress
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/backfill/{job_id}", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id"), ("job_id" = String, Path, description = "bf_… id")),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "The backfill", body = BackfillView),
        (status = 404, description = "No such backfill", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_backfill(
    app: web::Data<ControlState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let (ep, job) = path.into_inner();
    let ep = parse_endpoint(&ep)?;
    let job = BackfillId::parse(&job).map_err(|_| ApiError::not_found("backfill"))?;
    let mut conn = app.conn().await?;
    let row = hookline_store::backfill::get(&mut conn, auth.org_id.as_uuid(), ep.as_uuid(), job.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("backfill"))?;
    Ok(HttpResponse::Ok().json(BackfillView::from(row)))
}
