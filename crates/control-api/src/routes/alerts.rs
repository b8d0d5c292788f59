//! `/api/v1/alerts` and `/api/v1/alert-settings`.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::id::{AlertId, EndpointId, KeyId};
use hookline_domain::scope::Scope;
use hookline_domain::status::AlertRule;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::alerts::{AlertFilter, AlertRow, SettingsRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::views::double_option;

pub const STATES: [&str; 3] = ["open", "acknowledged", "resolved"];

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

fn parse_alert_id(id: &str) -> Result<AlertId, ApiError> {
    AlertId::parse(id).map_err(|_| ApiError::not_found("alert"))
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
    Ok(HttpResponse::Ok().json(list(&app, &auth, &q).await?))
}

pub async fn list(app: &ControlState, auth: &Principal, q: &AlertParams) -> Result<ListResponse<AlertView>, ApiError> {
    auth.require(Scope::AlertsRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    if q.state.as_deref().is_some_and(|s| !STATES.contains(&s)) {
        return Err(ApiError::invalid_field("state", format!("must be one of {}", STATES.join(", "))));
    }
    let rule = match &q.rule {
        Some(r) => Some(AlertRule::parse(r).ok_or_else(|| {
            let names: Vec<_> = AlertRule::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::invalid_field("rule", format!("must be one of {}", names.join(", ")))
        })?),
        None => None,
    };
    let endpoint_id = match &q.webhook_id {
        Some(w) => {
            Some(EndpointId::parse(w).map_err(|e| ApiError::invalid_field("webhook_id", e.to_string()))?.as_uuid())
        }
        None => None,
    };
    let f = AlertFilter { state: q.state.clone(), rule, endpoint_id };
    let mut conn = app.conn().await?;
    let page = hookline_store::alerts::list(&mut conn, auth.org_id.as_uuid(), &f, before, limit).await?;
    let last = page.items.last().map(|a| a.id);
    let data: Vec<AlertView> = page.items.into_iter().map(AlertView::from).collect();
    Ok(ListResponse::new(data, page.has_more, last))
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
    auth.require(Scope::AlertsRead)?;
    let id = parse_alert_id(&id)?;
    let mut conn = app.conn().await?;
    let a = hookline_store::alerts::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("alert"))?;
    Ok(HttpResponse::Ok().json(AlertView::from(a)))
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
    Ok(HttpResponse::Ok().json(acknowledge_alert(&app, &auth, &id).await?))
}

pub async fn acknowledge_alert(app: &ControlState, auth: &Principal, id: &str) -> Result<AlertView, ApiError> {
    auth.require(Scope::AlertsWrite)?;
    let id = parse_alert_id(id)?;
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let a = conn
        .transaction::<_, ApiError, _>(async |c| {
            let existing = hookline_store::alerts::get(c, principal.org_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| ApiError::not_found("alert"))?;
            let a = hookline_store::alerts::acknowledge(
                c,
                principal.org_id.as_uuid(),
                id.as_uuid(),
                principal.key_id.as_uuid(),
            )
            .await?
            .ok_or_else(|| ApiError::conflict("alert_not_open", format!("the alert is {}", existing.state)))?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "alert.acknowledged",
                "alert",
                &id.to_string(),
                json!({"rule": a.rule.as_str()}),
            )
            .await?;
            Ok(a)
        })
        .await?;
    Ok(AlertView::from(a))
}

/// The organisation's alert thresholds and channels
#[utoipa::path(
    get, path = "/api/v1/alert-settings", tag = "Alerts",
    security(("api_key" = ["alerts:read"])),
    responses((status = 200, description = "Current settings (defaults until changed)", body = AlertSettingsView))
)]
pub async fn get_settings(app: web::Data<ControlState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(settings(&app, &auth).await?))
}

pub async fn settings(app: &ControlState, auth: &Principal) -> Result<AlertSettingsView, ApiError> {
    auth.require(Scope::AlertsRead)?;
    let mut conn = app.conn().await?;
    let s = hookline_store::alerts::settings(&mut conn, auth.org_id.as_uuid()).await?;
    Ok(AlertSettingsView::from(s))
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
    Ok(HttpResponse::Ok().json(save_settings(&app, &auth, body.into_inner()).await?))
}

/// Validates and replaces the settings, audited.
pub async fn save_settings(
    app: &ControlState,
    auth: &Principal,
    b: AlertSettingsInput,
) -> Result<AlertSettingsView, ApiError> {
    auth.require(Scope::AlertsWrite)?;
    let org = auth.org_id.as_uuid();
    let d = SettingsRow::defaults(org);
    let mut errors = Vec::new();
    let mut bounded = |field: &str, v: Option<i32>, default: i32, lo: i32, hi: i32| -> i32 {
        let v = v.unwrap_or(default);
        if !(lo..=hi).contains(&v) {
            errors.push(FieldError { field: field.into(), message: format!("must be between {lo} and {hi}") });
        }
        v
    };
    let endpoint_failing_threshold =
        bounded("endpoint_failing_threshold", b.endpoint_failing_threshold, d.endpoint_failing_threshold, 1, 1000);
    let auto_disable_dead_letters =
        bounded("auto_disable_dead_letters", b.auto_disable_dead_letters, d.auto_disable_dead_letters, 1, 10_000);
    let auto_disable_failing_hours =
        bounded("auto_disable_failing_hours", b.auto_disable_failing_hours, d.auto_disable_failing_hours, 1, 24 * 30);
    let auto_disable_failed_attempts = bounded(
        "auto_disable_failed_attempts",
        b.auto_disable_failed_attempts,
        d.auto_disable_failed_attempts,
        0,
        100_000,
    );
    let failure_rate_percent = bounded("failure_rate_percent", b.failure_rate_percent, d.failure_rate_percent, 1, 100);
    let failure_rate_window_minutes = bounded(
        "failure_rate_window_minutes",
        b.failure_rate_window_minutes,
        d.failure_rate_window_minutes,
        1,
        24 * 60,
    );
    let failure_rate_min_attempts =
        bounded("failure_rate_min_attempts", b.failure_rate_min_attempts, d.failure_rate_min_attempts, 1, 1_000_000);
    let recipients = b.email_recipients.unwrap_or_default();
    if recipients.len() > 20 {
        errors.push(FieldError { field: "email_recipients".into(), message: "at most 20 addresses".into() });
    }
    for (i, r) in recipients.iter().enumerate() {
        let ok = r.len() <= 320
            && r.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !r.contains(char::is_whitespace));
        if !ok {
            errors.push(FieldError {
                field: format!("email_recipients[{i}]"),
                message: format!("`{r}` is not an email address"),
            });
        }
    }
    let mut slack = None;
    if let Some(Some(url)) = &b.slack_webhook_url {
        match hookline_service_kit::targets::check_url(url, app.settings.allow_private_targets).await {
            Ok(u) => slack = Some(hookline_service_kit::secrets::seal_slack_url(&app.master_key, org, u.as_str())),
            Err(m) => errors.push(FieldError { field: "slack_webhook_url".into(), message: m }),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let saved = conn
        .transaction::<_, ApiError, _>(async |c| {
            let current = hookline_store::alerts::settings(c, org).await?;
            let row = SettingsRow {
                org_id: org,
                endpoint_failing_threshold,
                auto_disable_dead_letters,
                auto_disable_failing_hours,
                failure_rate_percent,
                failure_rate_window_minutes,
                failure_rate_min_attempts,
                email_recipients: recipients,
                slack_webhook_ciphertext: match &b.slack_webhook_url {
                    None => current.slack_webhook_ciphertext,
                    Some(None) => None,
                    Some(Some(_)) => slack,
                },
                notify_via_webhooks: b.notify_via_webhooks.unwrap_or(d.notify_via_webhooks),
                updated_at: Utc::now(),
                auto_disable_failed_attempts,
            };
            let saved = hookline_store::alerts::put_settings(c, &row).await?;
            audit::record(c, principal.org_id, Actor::Key(&principal), "alert_settings.updated", "alert_settings", &principal.org_id.to_string(), json!({
                "endpoint_failing_threshold": saved.endpoint_failing_threshold, "email_recipients": saved.email_recipients.len(),
                "slack_webhook_configured": saved.slack_webhook_ciphertext.is_some(),
            }))
            .await?;
            Ok(saved)
        })
        .await?;
    Ok(AlertSettingsView::from(saved))
}
