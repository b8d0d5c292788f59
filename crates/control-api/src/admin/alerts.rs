//! Alerts (list, acknowledge) and the alert settings.

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::error::{ApiError, FieldError};
use maud::{html, Markup};

use super::layout::{csrf, notice, opt_time, page, page_with, status_badge, text_input, FormErrors, InputAttrs, Nav};
use super::see_other;
use super::session::{AdminForm, AdminSession, Refusal};
use crate::routes::alerts::{alert_id, AlertParams, AlertSettingsInput};
use crate::usecases::alerts::{self as api, STATES};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/alerts", web::get().to(list))
        .route("/alerts/settings", web::post().to(save_settings))
        .route("/alerts/{id}/acknowledge", web::post().to(acknowledge));
}

#[derive(serde::Deserialize, Default)]
pub struct Query {
    state: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

async fn list(app: web::Data<ControlState>, s: AdminSession, q: web::Query<Query>) -> Result<HttpResponse, Refusal> {
    let body = body(&app, &s, &q, None, &FormErrors::default()).await?;
    Ok(page(&s, Nav::Alerts, "Alerts", body))
}

/// Values of the settings form as typed, when it is shown again with errors.
struct Typed(Vec<(String, String)>);

async fn body(
    app: &ControlState,
    s: &AdminSession,
    q: &Query,
    typed: Option<&Typed>,
    errors: &FormErrors,
) -> Result<Markup, ApiError> {
    let state = q.state.clone().filter(|st| STATES.contains(&st.as_str()));
    let params =
        AlertParams { state: state.clone(), rule: None, webhook_id: None, limit: Some(50), cursor: q.cursor.clone() };
    let alerts = api::list(app, &s.principal, &params).await?;
    let settings = api::settings(app, &s.principal).await?;
    let value = |name: &str, current: String| -> String {
        typed.and_then(|t| t.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap_or(current)
    };
    let writable = s.can(Scope::AlertsWrite);
    let numbers: [(&str, &str, i32); 7] = [
        (
            "endpoint_failing_threshold",
            "Failed attempts in a row that open “endpoint failing”",
            settings.endpoint_failing_threshold,
        ),
        (
            "auto_disable_dead_letters",
            "Dead letters in a row that disable an endpoint",
            settings.auto_disable_dead_letters,
        ),
        (
            "auto_disable_failing_hours",
            "Hours failing without a success that disable an endpoint",
            settings.auto_disable_failing_hours,
        ),
        (
            "auto_disable_failed_attempts",
            "Failed attempts in a row that disable an endpoint (0: off)",
            settings.auto_disable_failed_attempts,
        ),
        (
            "failure_rate_percent",
            "“High failure rate” above this percentage of attempts…",
            settings.failure_rate_percent,
        ),
        ("failure_rate_window_minutes", "…over this many minutes…", settings.failure_rate_window_minutes),
        ("failure_rate_min_attempts", "…with at least this many attempts", settings.failure_rate_min_attempts),
    ];
    Ok(html! {
        (notice(q.notice.as_deref()))
        nav.tabs aria-label="Alert states" {
            a href="/admin/alerts" aria-current=[state.is_none().then_some("page")] { "All" }
            @for st in STATES { a href={ "/admin/alerts?state=" (st) } aria-current=[(state.as_deref() == Some(st)).then_some("page")] { (st) } }
        }
        div.table-wrap {
            table {
                caption.sr-only { "Alerts, newest first" }
                thead { tr { th { "Alert" } th { "Webhook" } th { "State" } th { "Seen" } th { "Last seen" } th { span.sr-only { "Actions" } } } }
                tbody {
                    @for a in &alerts.data {
                        tr data-alert=(a.id) {
                            td { strong { (a.rule) } br; (a.message) }
                            td { @if let Some(w) = a.webhook_id { a href={ "/admin/webhooks/" (w) } { code { (w) } } } }
                            td { (status_badge(&a.state)) }
                            td.num { (a.count) }
                            td { (opt_time(Some(a.last_seen_at))) }
                            td {
                                @if writable && a.state == "open" {
                                    form method="post" action={ "/admin/alerts/" (a.id) "/acknowledge" } {
                                        (csrf(s)) button type="submit" { "Acknowledge" }
                                    }
                                }
                            }
                        }
                    }
                    @if alerts.data.is_empty() { tr { td colspan="6" { "No alerts." } } }
                }
            }
        }
        @if let Some(c) = &alerts.next_cursor { p { a href={ "/admin/alerts?cursor=" (c) } { "Older alerts →" } } }
        section.card aria-labelledby="settings" {
            h2 #settings { "Alert settings" }
            (errors.summary())
            @if writable {
                form method="post" action="/admin/alerts/settings" {
                    (csrf(s))
                    div.grid {
                        @for (name, label, current) in numbers {
                            (text_input(label, name, &value(name, current.to_string()), errors, InputAttrs { kind: "number", required: true, inputmode: Some("numeric"), ..Default::default() }))
                        }
                    }
                    div.field {
                        label for="email_recipients" { "Email addresses" }
                        textarea id="email_recipients" name="email_recipients" rows="2" { (value("email_recipients", settings.email_recipients.join("\n"))) }
                        small.hint { "One per line." }
                        (errors.field("email_recipients"))
                    }
                    (text_input("Slack incoming-webhook URL", "slack_webhook_url", "", errors, InputAttrs { kind: "url", hint: Some(if settings.slack_webhook_configured { "A URL is set (stored encrypted, not shown). Leave empty to keep it." } else { "None set." }), ..Default::default() }))
                    @if settings.slack_webhook_configured {
                        label.check { input type="checkbox" name="remove_slack" value="on"; " Remove the Slack URL" }
                    }
                    label.check { input type="checkbox" name="notify_via_webhooks" value="on" checked[settings.notify_via_webhooks]; " Also send alert events to webhooks subscribed to them" }
                    div { button.primary type="submit" { "Save settings" } }
                }
            } @else {
                dl.facts {
                    @for (_, label, current) in numbers { dt { (label) } dd { (current) } }
                    dt { "Email addresses" } dd { (settings.email_recipients.join(", ")) }
                    dt { "Slack" } dd { (if settings.slack_webhook_configured { "configured" } else { "not set" }) }
                }
            }
        }
    })
}

async fn acknowledge(
    app: web::Data<ControlState>,
    f: AdminForm,
    id: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    api::acknowledge(&app, &f.session.principal, alert_id(&id)?).await?;
    Ok(see_other("/admin/alerts?notice=acknowledged".into()))
}

async fn save_settings(app: web::Data<ControlState>, f: AdminForm) -> Result<HttpResponse, Refusal> {
    let s = &f.session;
    let result = async {
        let mut errors = Vec::new();
        let mut num = |name: &str| -> Option<i32> {
            let v = f.text(name)?;
            v.parse()
                .map_err(|_| errors.push(FieldError { field: name.into(), message: "must be a whole number".into() }))
                .ok()
        };
        let input = AlertSettingsInput {
            endpoint_failing_threshold: num("endpoint_failing_threshold"),
            auto_disable_dead_letters: num("auto_disable_dead_letters"),
            auto_disable_failing_hours: num("auto_disable_failing_hours"),
            auto_disable_failed_attempts: num("auto_disable_failed_attempts"),
            failure_rate_percent: num("failure_rate_percent"),
            failure_rate_window_minutes: num("failure_rate_window_minutes"),
            failure_rate_min_attempts: num("failure_rate_min_attempts"),
            email_recipients: Some(
                f.get("email_recipients")
                    .unwrap_or_default()
                    .split(['\n', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            slack_webhook_url: if f.checked("remove_slack") {
                Some(None)
            } else {
                f.text("slack_webhook_url").map(Some)
            },
            notify_via_webhooks: Some(f.checked("notify_via_webhooks")),
        };
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        api::save_settings(&app, &s.principal, input).await
    }
    .await;
    match result {
        Ok(_) => Ok(see_other("/admin/alerts?notice=settings_saved".into())),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let typed = Typed(f.fields.clone());
            let body = body(&app, s, &Query::default(), Some(&typed), &FormErrors::from_api(&e)).await?;
            Ok(page_with(s, Nav::Alerts, "Alerts", e.status, body))
        }
        Err(e) => Err(e.into()),
    }
}
