//! `GET /api/v1/analytics`: the organisation's numbers, from hourly rollups.

use crate::state::ControlState;
use crate::usecases::analytics;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::EndpointId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_store::rollups::{percentile, DeliveryGroup};
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/analytics", web::get().to(analytics));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// 24h (default, hourly series), 7d (hourly) or 30d (daily).
    pub window: Option<String>,
    /// `fraction` (default): success rates from 0 to 1; `percent`: from 0 to 100.
    pub format: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointHealthCounts {
    pub total: i64,
    pub active: i64,
    pub failing: i64,
    pub disabled: i64,
}

/// Delivery figures for a group (the whole org, an endpoint, an event type, a time bucket).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Deliveries that succeeded.
    pub delivered: i64,
    pub dead_letters: i64,
    /// Succeeded attempts over all attempts (0 to 1, or 0 to 100 with `format=percent`); null without attempts.
    pub success_rate: Option<f64>,
    /// Mean attempt latency in milliseconds; null without attempts.
    pub average_response_time: Option<f64>,
    /// Estimated from latency buckets.
    pub p50_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<f64>,
}

impl From<&DeliveryGroup> for Figures {
    fn from(g: &DeliveryGroup) -> Self {
        let b = g.latency_buckets.clone().unwrap_or_default();
        Self {
            attempts: g.attempts,
            succeeded: g.succeeded,
            failed: g.failed,
            delivered: g.delivered,
            dead_letters: g.dead_lettered,
            success_rate: (g.attempts > 0).then(|| g.succeeded as f64 / g.attempts as f64),
            average_response_time: (g.attempts > 0).then(|| round2(g.latency_ms_total as f64 / g.attempts as f64)),
            p50_latency_ms: percentile(&b, 0.5),
            p95_latency_ms: percentile(&b, 0.95),
        }
    }
}

pub(crate) fn empty() -> Figures {
    Figures {
        attempts: 0,
        succeeded: 0,
        failed: 0,
        delivered: 0,
        dead_letters: 0,
        success_rate: None,
        average_response_time: None,
        p50_latency_ms: None,
        p95_latency_ms: None,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Events accepted by the ingest API.
    pub events: i64,
    /// Deliveries created for them (one per subscribed endpoint).
    pub deliveries: i64,
    /// Requests refused with 429 for this organisation's keys.
    pub rate_limit_hits: i64,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointFigures {
    pub webhook_id: EndpointId,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeFigures {
    pub event_type: String,
    pub events: i64,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the bucket.
    pub t: String,
    pub events: i64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The organisation's figures over a window. The flat fields from
/// `total_webhooks` to `failed_webhooks` summarise the rest under the names
/// CRM webhook dashboards use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    pub total_webhooks: i64,
    /// Enabled endpoints, healthy or failing.
    pub active_webhooks: i64,
    /// Deliveries created in the window.
    pub total_deliveries: i64,
    /// Succeeded attempts over all attempts in the window (as in `totals`).
    pub success_rate: Option<f64>,
    /// Mean attempt latency in milliseconds over the window.
    pub average_response_time: Option<f64>,
    /// Enabled endpoints whose last attempt did not fail.
    pub healthy_webhooks: i64,
    /// Enabled endpoints whose recent attempts are failing.
    pub failed_webhooks: i64,
    pub window: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// 1h or 1d.
    pub resolution: String,
    pub endpoints: EndpointHealthCounts,
    pub totals: Totals,
    pub by_endpoint: Vec<EndpointFigures>,
    pub by_event_type: Vec<EventTypeFigures>,
    pub series: Vec<Point>,
}

/// The organisation's delivery analytics over a window
///
/// Computed from hourly rollups kept as events and attempts land (a few
/// seconds behind real time), never from a scan of the delivery history.
#[utoipa::path(
    get, path = "/api/v1/analytics", tag = "Analytics",
    params(AnalyticsParams),
    security(("api_key" = ["deliveries:read"])),
    responses(
        (status = 200, description = "Totals, per endpoint, per event type, and a time series", body = Analytics),
        (status = 422, description = "Unknown window", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn analytics(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<AnalyticsParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let percent = match q.format.as_deref() {
        None | Some("fraction") => false,
        Some("percent") => true,
        Some(_) => return Err(ApiError::invalid_field("format", "must be fraction or percent")),
    };
    let mut a = analytics::compute(&app, auth.org_id.as_uuid(), q.window.as_deref().unwrap_or("24h")).await?;
    if percent {
        a.in_percent();
    }
    Ok(HttpResponse::Ok().json(a))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Analytics {
    /// Every success rate as a percentage (two decimals) instead of a fraction.
    pub fn in_percent(&mut self) {
        let scale = |r: &mut Option<f64>| *r = r.map(|r| round2(r * 100.0));
        scale(&mut self.success_rate);
        scale(&mut self.totals.figures.success_rate);
        self.by_endpoint.iter_mut().for_each(|e| scale(&mut e.figures.success_rate));
        self.by_event_type.iter_mut().for_each(|e| scale(&mut e.figures.success_rate));
        self.series.iter_mut().for_each(|p| scale(&mut p.figures.success_rate));
    }
}
