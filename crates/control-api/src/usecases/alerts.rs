//! Alerts and the organisation's alert settings.

use chrono::Utc;
use hookline_domain::id::{AlertId, EndpointId};
use hookline_domain::scope::Scope;
use hookline_domain::status::AlertRule;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::alerts::{AlertFilter, SettingsRow};
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::alerts::{AlertParams, AlertSettingsInput, AlertSettingsView, AlertView};
use crate::state::ControlState;

pub const STATES: [&str; 3] = ["open", "acknowledged", "resolved"];

pub async fn get(app: &ControlState, auth: &Principal, id: AlertId) -> Result<AlertView, ApiError> {
    auth.require(Scope::AlertsRead)?;
    let mut conn = app.conn().await?;
    let a =
        hookline_store::alerts::get(&mut conn, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("alert"))?;
    Ok(AlertView::from(a))
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

/// Acknowledges an open alert, audited.
pub async fn acknowledge(app: &ControlState, auth: &Principal, id: AlertId) -> Result<AlertView, ApiError> {
    auth.require(Scope::AlertsWrite)?;
    let mut conn = app.conn().await?;
    let a = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let existing =
            hookline_store::alerts::get(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("alert"))?;
        let a = hookline_store::alerts::acknowledge(c, auth.org_id, id, auth.key_id)
            .await?
            .ok_or_else(|| ApiError::conflict("alert_not_open", format!("the alert is {}", existing.state)))?;
        trail.audit(auth.org_id, "alert.acknowledged", "alert", id, json!({"rule": a.rule.as_str()}));
        Ok(a)
    })
    .await?;
    Ok(AlertView::from(a))
}

pub async fn settings(app: &ControlState, auth: &Principal) -> Result<AlertSettingsView, ApiError> {
    auth.require(Scope::AlertsRead)?;
    let mut conn = app.conn().await?;
    let s = hookline_store::alerts::settings(&mut conn, auth.org_id.as_uuid()).await?;
    Ok(AlertSettingsView::from(s))
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
    let mut conn = app.conn().await?;
    let saved = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
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
            trail.audit(auth.org_id, "alert_settings.updated", "alert_settings", auth.org_id, json!({
                "endpoint_failing_threshold": saved.endpoint_failing_threshold, "email_recipients": saved.email_recipients.len(),
                "slack_webhook_configured": saved.slack_webhook_ciphertext.is_some(),
            }));
            Ok(saved)
        })
        .await?;
    Ok(AlertSettingsView::from(saved))
}
