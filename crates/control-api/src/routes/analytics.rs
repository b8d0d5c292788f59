//! `GET /api/v1/analytics`: the organisation's numbers, from hourly rollups.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use hookline_domain::id::EndpointId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_store::rollups::{percentile, DeliveryGroup, EventGroup};
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

fn empty() -> Figures {
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
    let mut a = compute(&app, auth.org_id.as_uuid(), q.window.as_deref().unwrap_or("24h")).await?;
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

/// The analytics of an organisation (also used by the admin dashboard).
pub async fn compute(app: &ControlState, org: uuid::Uuid, window: &str) -> Result<Analytics, ApiError> {
    let (span, resolution, group) = match window {
        "24h" => (Duration::hours(24), "1h", "hour"),
        "7d" => (Duration::days(7), "1h", "hour"),
        "30d" => (Duration::days(30), "1d", "day"),
        _ => return Err(ApiError::invalid_field("window", "must be 24h, 7d or 30d")),
    };
    let until = Utc::now();
    let since = until - span;
    let mut conn = app.conn().await?;
    let by_ep = hookline_store::rollups::delivery_groups(&mut conn, org, since, "endpoint").await?;
    let by_type = hookline_store::rollups::delivery_groups(&mut conn, org, since, "event_type").await?;
    let series = hookline_store::rollups::delivery_groups(&mut conn, org, since, group).await?;
    let ev_type = hookline_store::rollups::event_groups(&mut conn, org, since, "event_type").await?;
    let ev_series = hookline_store::rollups::event_groups(&mut conn, org, since, group).await?;
    let counts = hookline_store::rollups::endpoint_counts(&mut conn, org).await?;
    let total = DeliveryGroup::sum("total", &by_ep);
    let hits = hookline_store::rollups::rate_limit_hits(&mut conn, org, since).await?;
    let events_of =
        |groups: &[EventGroup], key: &str| groups.iter().find(|g| g.key == key).map(|g| g.events).unwrap_or(0);
    let mut types: Vec<String> =
        by_type.iter().map(|g| g.key.clone()).chain(ev_type.iter().map(|g| g.key.clone())).collect();
    types.sort();
    types.dedup();
    let mut times: Vec<String> =
        series.iter().map(|g| g.key.clone()).chain(ev_series.iter().map(|g| g.key.clone())).collect();
    times.sort();
    times.dedup();
    let totals = Totals {
        events: ev_type.iter().map(|g| g.events).sum(),
        deliveries: ev_type.iter().map(|g| g.deliveries).sum(),
        rate_limit_hits: hits,
        figures: Figures::from(&total),
    };
    Ok(Analytics {
        total_webhooks: counts.total,
        active_webhooks: counts.active + counts.failing,
        total_deliveries: totals.deliveries,
        success_rate: totals.figures.success_rate,
        average_response_time: totals.figures.average_response_time,
        healthy_webhooks: counts.active,
        failed_webhooks: counts.failing,
        window: window.to_owned(),
        since,
        until,
        resolution: resolution.to_owned(),
        endpoints: EndpointHealthCounts {
            total: counts.total,
            active: counts.active,
            failing: counts.failing,
            disabled: counts.disabled,
        },
        totals,
        by_endpoint: by_ep
            .iter()
            .filter_map(|g| {
                uuid::Uuid::parse_str(&g.key)
                    .ok()
                    .map(|u| EndpointFigures { webhook_id: EndpointId::from_uuid(u), figures: g.into() })
            })
            .collect(),
        by_event_type: types
            .iter()
            .map(|t| EventTypeFigures {
                event_type: t.clone(),
                events: events_of(&ev_type, t),
                figures: by_type.iter().find(|g| &g.key == t).map(Figures::from).unwrap_or_else(empty),
            })
            .collect(),
        series: times
            .iter()
            .map(|t| Point {
                t: t.clone(),
                events: events_of(&ev_series, t),
                figures: series.iter().find(|g| &g.key == t).map(Figures::from).unwrap_or_else(empty),
            })
            .collect(),
    })
}
