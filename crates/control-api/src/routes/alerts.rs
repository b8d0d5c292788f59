//! `/api/v1/alerts` and `/api/v1/alert-settings`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::{AlertId, EndpointId, KeyId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::ListResponse;
use hookline_store::alerts::{AlertRow, SettingsRow};
use serde::{Deserialize, Serialize};

use crate::routes::scoped;
use crate::state::ControlState;
use crate::usecases::alerts;
use crate::views::double_option;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/alerts", web::get().to(list_alerts))
        .route("/api/v1/alerts/{id}", web::get().to(get_alert))
        .route("/api/v1/alerts/{id}/acknowledge", web::post().to(acknowledge))
        .route("/api/v1/alert-settings", web::get().to(get_settings))
        .route("/api/v1/alert-settings", web::put().to(put_settings));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: AlertId,
    /// endpoint_failing, delivery_dead_lettered, endpoint_disabled, high_failure_rate.
    pub rule: String,
    pub webhook_id: Option<EndpointId>,
    /// open, acknowledged, resolved.
    pub state: String,
    /// How many times the condition was seen while the alert was unresolved.
    pub count: i32,
    pub message: String,
    pub details: serde_json::Value,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<KeyId>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        Self {
            id: AlertId::from_uuid(a.id),
            rule: a.rule.as_str().to_owned(),
            webhook_id: a.endpoint_id.map(EndpointId::from_uuid),
            state: a.state,
            count: a.occurrences,
            message: a.message,
            details: a.details,
            first_seen_at: a.first_seen_at,
            last_seen_at: a.last_seen_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by.map(KeyId::from_uuid),
            resolved_at: a.resolved_at,
            last_notified_at: a.last_notified_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    pub state: Option<String>,
    pub rule: Option<String>,
    pub webhook_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Thresholds and channels.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertSettingsView {
    /// Consecutive failed attempts that open `endpoint_failing` (default 5).
    pub endpoint_failing_threshold: i32,
    /// Consecutive dead-lettered deliveries that disable an endpoint (default 10).
    pub auto_disable_dead_letters: i32,
    /// Hours of failing without a success that disable an endpoint (default 24).
    pub auto_disable_failing_hours: i32,
    /// Failed attempts in a row that disable an endpoint; 0 (the default) leaves it to the other rules.
    pub auto_disable_failed_attempts: i32,
    /// `high_failure_rate` opens above this share of failed attempts (default 20)…
    pub failure_rate_percent: i32,
    /// …over this window (default 15)…
    pub failure_rate_window_minutes: i32,
    /// …with at least this many attempts (default 20).
    pub failure_rate_min_attempts: i32,
    pub email_recipients: Vec<String>,
    /// Whether a Slack-compatible incoming-webhook URL is set (it is stored encrypted and never shown).
    pub slack_webhook_configured: bool,
    /// Send `alert.opened`, `alert.resolved`, `endpoint.disabled` and `delivery.dead_lettered` to endpoints subscribed to them.
    pub notify_via_webhooks: bool,
    pub updated_at: DateTime<Utc>,
}

impl From<SettingsRow> for AlertSettingsView {
    fn from(s: SettingsRow) -> Self {
        Self {
            endpoint_failing_threshold: s.endpoint_failing_threshold,
            auto_disable_dead_letters: s.auto_disable_dead_letters,
            auto_disable_failing_hours: s.auto_disable_failing_hours,
            auto_disable_failed_attempts: s.auto_disable_failed_attempts,
            failure_rate_percent: s.failure_rate_percent,
            failure_rate_window_minutes: s.failure_rate_window_minutes,
            failure_rate_min_attempts: s.failure_rate_min_attempts,
            email_recipients: s.email_recipients,
            slack_webhook_configured: s.slack_webhook_ciphertext.is_some(),
            notify_via_webhooks: s.notify_via_webhooks,
            updated_at: s.updated_at,
        }
    }
}

/// Replaces the settings; omitted thresholds take their defaults. An omitted
/// `slack_webhook_url` keeps the current one; null removes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSettingsInput {
    pub endpoint_failing_threshold: Option<i32>,
    pub auto_disable_dead_letters: Option<i32>,
    pub auto_disable_failing_hours: Option<i32>,
    /// 0 to 100000; 0 is off.
    pub auto_disable_failed_attempts: Option<i32>,
    pub failure_rate_percent: Option<i32>,
    pub failure_rate_window_minutes: Option<i32>,
    pub failure_rate_min_attempts: Option<i32>,
    pub email_recipients: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(nullable)]
    pub slack_webhook_url: Option<Option<String>>,
    pub notify_via_webhooks: Option<bool>,
}

/// List alerts, newest first
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "Alerts",
    params(AlertParams),
    security(("api_key" = ["alerts:read"])),
    responses(
        (status = 200, description = "A page of alerts", body = ListResponse<AlertView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_alerts(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<AlertParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(alerts::list(&app, &auth, &q).await?))
}

/// Get an alert
#[utoipa::path(
    get, path = "/api/v1/alerts/{id}", tag = "Alerts",
    params(("id" = String, Path, description = "alr_… id")),
    security(("api_key" = ["alerts:read"])),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_alert(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(alerts::get(&app, &auth, scoped(&auth, Scope::AlertsRead, alert_id(&id))?).await?))
}

/// Acknowledge an open alert
#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/acknowledge", tag = "Alerts",
    params(("id" = String, Path, description = "alr_… id")),
    security(("api_key" = ["alerts:write"])),
    responses(
        (status = 200, description = "Acknowledged", body = AlertView),
        (status = 404, description = "No such alert", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The alert is not open", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn acknowledge(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(alerts::acknowledge(&app, &auth, scoped(&auth, Scope::AlertsWrite, alert_id(&id))?).await?))
}

/// The organisation's alert thresholds and channels
#[utoipa::path(
    get, path = "/api/v1/alert-settings", tag = "Alerts",
    security(("api_key" = ["alerts:read"])),
    responses((status = 200, description = "Current settings (defaults until changed)", body = AlertSettingsView))
)]
pub async fn get_settings(app: web::Data<ControlState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(alerts::settings(&app, &auth).await?))
}

/// Replace the alert thresholds and channels
#[utoipa::path(
    put, path = "/api/v1/alert-settings", tag = "Alerts",
    request_body = AlertSettingsInput,
    security(("api_key" = ["alerts:write"])),
    responses(
        (status = 200, description = "Saved", body = AlertSettingsView),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_settings(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<AlertSettingsInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(alerts::save_settings(&app, &auth, body.into_inner()).await?))
}

/// An `alr_…` id from a path.
pub fn alert_id(text: &str) -> Result<AlertId, ApiError> {
    crate::usecases::parse_id(text, "alert")
}
