//! Webhook endpoints: list, create, edit, reveal-once secret after rotation,
//! test event, enable/disable, recovery of failures, per-endpoint stats.

use std::collections::BTreeMap;

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::pagination::PageParams;
use maud::{html, Markup};

use super::keys::parse_utc;
use super::layout::{
    csrf, millis, notice, opt_time, page, page_with, percent, reveal, status_badge, text_input, FormErrors, InputAttrs,
    Nav, Reveal,
};
use super::see_other;
use super::session::{AdminForm, AdminSession, Refusal};
use crate::routes::deliveries::{RecoverInput, StatsParams};
use crate::routes::webhooks::{endpoint_id, RetryPolicyInput, RotateSecret, WebhookInput, WebhookPatch, WebhookView};
use crate::usecases::deliveries as deliveries_api;
use crate::usecases::event_types;
use crate::usecases::webhooks as api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::get().to(list))
        .route("/webhooks", web::post().to(create))
        .route("/webhooks/new", web::get().to(new_form))
        .route("/webhooks/{id}", web::get().to(show))
        .route("/webhooks/{id}", web::post().to(save))
        .route("/webhooks/{id}/rotate-secret", web::post().to(rotate))
        .route("/webhooks/{id}/test", web::post().to(test))
        .route("/webhooks/{id}/enable", web::post().to(enable))
        .route("/webhooks/{id}/disable", web::post().to(disable))
        .route("/webhooks/{id}/recover", web::post().to(recover))
        .route("/webhooks/{id}/delete", web::post().to(delete));
}

#[derive(serde::Deserialize, Default)]
pub struct Query {
    notice: Option<String>,
    cursor: Option<String>,
}

pub fn health(w: &WebhookView, consecutive_failures: i32) -> &'static str {
    if !w.is_active {
        "disabled"
    } else if consecutive_failures > 0 {
        "failing"
    } else {
        "healthy"
    }
}

async fn list(app: web::Data<ControlState>, s: AdminSession, q: web::Query<Query>) -> Result<HttpResponse, Refusal> {
    let page_params = PageParams { limit: Some(100), cursor: q.cursor.clone() };
    let hooks = api::list(&app, &s.principal, &page_params).await?;
    let body = html! {
        (notice(q.notice.as_deref()))
        @if s.can(Scope::WebhooksWrite) { p { a.button.primary href="/admin/webhooks/new" { "Add a webhook" } } }
        div.table-wrap {
            table {
                caption.sr-only { "Webhook endpoints" }
                thead { tr { th { "URL" } th { "Description" } th { "Events" } th { "State" } th { "Created" } } }
                tbody {
                    @for w in &hooks.data {
                        tr {
                            td { a href={ "/admin/webhooks/" (w.id) } { (w.url_label()) } }
                            td { (w.description.clone().unwrap_or_default()) }
                            td { (w.events.join(", ")) }
                            td { (status_badge(if w.is_active { "active" } else { "disabled" })) }
                            td { (opt_time(Some(w.created_at))) }
                        }
                    }
                    @if hooks.data.is_empty() { tr { td colspan="5" { "No webhooks yet." } } }
                }
            }
        }
        @if let Some(c) = &hooks.next_cursor { p { a href={ "/admin/webhooks?cursor=" (c) } { "Older webhooks →" } } }
    };
    Ok(page(&s, Nav::Webhooks, "Webhooks", body))
}

/// The form's values, as typed.
#[derive(Clone)]
struct Values {
    url: String,
    description: String,
    events: Vec<String>,
    max_retries: String,
    timeout: String,
    initial_delay_ms: String,
    multiplier: String,
    max_delay_ms: String,
    headers: String,
    rate: String,
    signature_format: String,
    /// The filter as JSON text; empty for none.
    filter: String,
    mode: String,
    /// The ordering key (a JSON pointer); empty for none.
    ordering_key: String,
    on_dead_letter: String,
    active: bool,
}

impl Default for Values {
    fn default() -> Self {
        Self {
            url: String::new(),
            description: String::new(),
            events: vec![],
            max_retries: "5".into(),
            timeout: "30".into(),
            initial_delay_ms: "1000".into(),
            multiplier: "2".into(),
            max_delay_ms: "3600000".into(),
            headers: String::new(),
            rate: String::new(),
            signature_format: "hex".into(),
            filter: String::new(),
            mode: "push".into(),
            ordering_key: String::new(),
            on_dead_letter: "skip".into(),
            active: true,
        }
    }
}

impl Values {
    fn of(w: &WebhookView) -> Self {
        Self {
            url: w.url.clone().unwrap_or_default(),
            description: w.description.clone().unwrap_or_default(),
            events: w.events.clone(),
            max_retries: w.max_retries.to_string(),
            timeout: w.timeout.to_string(),
            initial_delay_ms: w.retry_policy.initial_delay_ms.to_string(),
            multiplier: w.retry_policy.multiplier.to_string(),
            max_delay_ms: w.retry_policy.max_delay_ms.to_string(),
            headers: w.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n"),
            rate: w.rate_limit_per_second.map(|r| r.to_string()).unwrap_or_default(),
            signature_format: w.signature_format.clone(),
            filter: w.filter.as_ref().map(|f| serde_json::to_string_pretty(f).unwrap_or_default()).unwrap_or_default(),
            mode: w.mode.clone(),
            ordering_key: ordering_field(w, "key").unwrap_or_default(),
            on_dead_letter: ordering_field(w, "on_dead_letter").unwrap_or_else(|| "skip".into()),
            active: w.is_active,
        }
    }

    fn read(f: &AdminForm) -> Self {
        let g = |n: &str| f.get(n).unwrap_or_default().to_owned();
        Self {
            url: g("url"),
            description: g("description"),
            events: f.all("events"),
            max_retries: g("max_retries"),
            timeout: g("timeout"),
            initial_delay_ms: g("initial_delay_ms"),
            multiplier: g("multiplier"),
            max_delay_ms: g("max_delay_ms"),
            headers: g("headers"),
            rate: g("rate_limit_per_second"),
            signature_format: g("signature_format"),
            filter: g("filter"),
            mode: g("mode"),
            ordering_key: g("ordering_key"),
            on_dead_letter: g("on_dead_letter"),
            active: f.checked("is_active"),
        }
    }

    /// The API's input; number fields that do not parse are named.
    fn input(&self) -> Result<WebhookInput, ApiError> {
        let mut errors = Vec::new();
        fn num<T: std::str::FromStr>(errors: &mut Vec<FieldError>, field: &str, v: &str) -> Option<T> {
            let v = v.trim();
            if v.is_empty() {
                return None;
            }
            v.parse()
                .map_err(|_| errors.push(FieldError { field: field.into(), message: "must be a number".into() }))
                .ok()
        }
        let max_retries = num(&mut errors, "max_retries", &self.max_retries);
        let timeout = num(&mut errors, "timeout", &self.timeout);
        let initial = num(&mut errors, "retry_policy.initial_delay_ms", &self.initial_delay_ms);
        let multiplier = num(&mut errors, "retry_policy.multiplier", &self.multiplier);
        let max_delay = num(&mut errors, "retry_policy.max_delay_ms", &self.max_delay_ms);
        let rate = num(&mut errors, "rate_limit_per_second", &self.rate);
        let mut headers = BTreeMap::new();
        for (i, line) in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
            match line.split_once(':') {
                Some((k, v)) => {
                    headers.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                None => errors.push(FieldError {
                    field: format!("headers[{i}]"),
                    message: format!("`{line}` is not `Name: value`"),
                }),
            }
        }
        let filter = match self.filter.trim() {
            "" => None,
            text => serde_json::from_str(text)
                .map_err(|e| errors.push(FieldError { field: "filter".into(), message: format!("is not JSON: {e}") }))
                .ok(),
        };
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let description = Some(self.description.trim().to_owned()).filter(|d| !d.is_empty());
        Ok(WebhookInput {
            url: Some(self.url.clone()),
            description,
            events: self.events.clone(),
            max_retries,
            timeout,
            retry_policy: Some(RetryPolicyInput { initial_delay_ms: initial, multiplier, max_delay_ms: max_delay }),
            headers: Some(headers),
            is_active: Some(self.active),
            rate_limit_per_second: rate,
            signature_format: Some(self.signature_format.clone()).filter(|f| !f.is_empty()),
            filter,
            mode: Some(self.mode.clone()).filter(|m| !m.is_empty()),
            ordering: match self.ordering_key.trim() {
                "" => None,
                key => Some(serde_json::json!({"key": key, "on_dead_letter": self.on_dead_letter})),
            },
        })
    }
}

async fn form(
    app: &ControlState,
    s: &AdminSession,
    action: &str,
    v: &Values,
    errors: &FormErrors,
    submit: &str,
) -> Result<Markup, ApiError> {
    let types = event_types::list(app, &s.principal).await?;
    let n = |a: InputAttrs| InputAttrs { kind: "number", inputmode: Some("decimal"), ..a };
    Ok(html! {
        (errors.summary())
        form.webhook method="post" action=(action) {
            (csrf(s))
            (text_input("Endpoint URL", "url", &v.url, errors, InputAttrs { kind: "url", placeholder: Some("https://crm.example.com/hooks"), hint: Some("Required unless the endpoint is pulled."), ..Default::default() }))
            div.field {
                label for="mode" { "Delivery" }
                select id="mode" name="mode" {
                    option value="push" selected[v.mode != "pull"] { "Push: Hookline POSTs each event to the URL" }
                    option value="pull" selected[v.mode == "pull"] { "Pull: read through GET /api/v1/webhooks/{id}/events" }
                }
                (errors.field("mode"))
            }
            (text_input("Description", "description", &v.description, errors, InputAttrs::default()))
            fieldset {
                legend { "Events" }
                label.check { input type="checkbox" name="events" value="*" checked[v.events.iter().any(|e| e == "*")]; " every event type (*)" }
                @for t in &types {
                    label.check {
                        input type="checkbox" name="events" value=(t.name) checked[v.events.contains(&t.name)];
                        " " code { (t.name) }
                        @if let Some(d) = &t.description { " " small.muted { (d) } }
                    }
                }
                (errors.field("events"))
            }
            div.grid {
                (text_input("Retries after the first attempt", "max_retries", &v.max_retries, errors, n(InputAttrs { hint: Some("0 to 20"), ..Default::default() })))
                (text_input("Timeout (seconds)", "timeout", &v.timeout, errors, n(InputAttrs { hint: Some("1 to 60"), ..Default::default() })))
                (text_input("First retry after (ms)", "retry_policy.initial_delay_ms", &v.initial_delay_ms, errors, n(InputAttrs::default())))
                (text_input("Backoff multiplier", "retry_policy.multiplier", &v.multiplier, errors, n(InputAttrs::default())))
                (text_input("Longest wait (ms)", "retry_policy.max_delay_ms", &v.max_delay_ms, errors, n(InputAttrs::default())))
                (text_input("Deliveries per second at most", "rate_limit_per_second", &v.rate, errors, n(InputAttrs { hint: Some("Empty: no limit."), ..Default::default() })))
            }
            div.field {
                label for="headers" { "Custom headers" }
                textarea id="headers" name="headers" rows="3" placeholder="Authorization: Bearer …" { (v.headers) }
                small.hint { "One `Name: value` per line; stored encrypted." }
                (errors.field("headers"))
            }
            div.field {
                label for="signature_format" { "Signatures" }
                select id="signature_format" name="signature_format" {
                    option value="hex" selected[v.signature_format == "hex"] { "X-Webhook-Signature: <hex>" }
                    option value="sha256_prefixed" selected[v.signature_format == "sha256_prefixed"] { "X-Webhook-Signature: sha256=<hex>" }
                    option value="ed25519" selected[v.signature_format == "ed25519"] { "webhook-signature: v1a (Ed25519, verified with a public key)" }
                }
                small.hint { "X-Webhook-Signature and the Standard Webhooks headers are sent with every choice." }
                (errors.field("signature_format"))
            }
            div.field {
                label for="filter" { "Filter" }
                textarea id="filter" name="filter" rows="3" placeholder=r#"{"path": "/data/source", "op": "eq", "value": "website"}"# { (v.filter) }
                small.hint { "Deliver only events whose body matches this JSON condition. Empty: every subscribed event." }
                (errors.field("filter"))
            }
            div.field {
                label for="ordering_key" { "Ordering key" }
                input id="ordering_key" name="ordering_key" value=(v.ordering_key) placeholder="/id";
                small.hint { "A JSON pointer into the event's data: events with the same value are delivered one at a time, in order. Empty: in parallel." }
                (errors.field("ordering.key"))
                label for="on_dead_letter" { "When a key's delivery is dead-lettered" }
                select id="on_dead_letter" name="on_dead_letter" {
                    option value="skip" selected[v.on_dead_letter != "hold"] { "Skip it: the key's next events go out" }
                    option value="hold" selected[v.on_dead_letter == "hold"] { "Hold the key until it is replayed or resolved" }
                }
                (errors.field("ordering"))
                (errors.field("ordering.on_dead_letter"))
            }
            label.check { input type="checkbox" name="is_active" value="on" checked[v.active]; " Active" }
            div { button.primary type="submit" { (submit) } }
        }
    })
}

/// A field of the endpoint's ordering, as text.
fn ordering_field(w: &WebhookView, name: &str) -> Option<String> {
    w.ordering.as_ref()?.get(name)?.as_str().map(str::to_owned)
}

async fn new_form(app: web::Data<ControlState>, s: AdminSession) -> Result<HttpResponse, Refusal> {
    s.principal.require(Scope::WebhooksWrite)?;
    let body = form(&app, &s, "/admin/webhooks", &Values::default(), &FormErrors::default(), "Create webhook").await?;
    Ok(page(&s, Nav::Webhooks, "Add a webhook", body))
}

fn secret_page(s: &AdminSession, w: &WebhookView, title: &str) -> HttpResponse {
    let body = reveal(Reveal {
        warning: "This is the only time the signing secret is shown. Copy it into your receiver now.",
        label: format!("Signing secret for {}", w.url_label()),
        secret: w.secret.as_deref().unwrap_or_default(),
        done_href: format!("/admin/webhooks/{}", w.id),
        done_label: "Done: go to the webhook",
    });
    page(s, Nav::Webhooks, title, body)
}

async fn create(app: web::Data<ControlState>, f: AdminForm) -> Result<HttpResponse, Refusal> {
    let v = Values::read(&f);
    let s = &f.session;
    let result = match v.input() {
        Ok(input) => api::create(&app, &s.principal, input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(w) => Ok(secret_page(s, &w, "Webhook created")),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT => {
            let body = form(&app, s, "/admin/webhooks", &v, &FormErrors::from_api(&e), "Create webhook").await?;
            Ok(page_with(s, Nav::Webhooks, "Add a webhook", e.status, body))
        }
        Err(e) => Err(e.into()),
    }
}

async fn show(
    app: web::Data<ControlState>,
    s: AdminSession,
    id: web::Path<String>,
    q: web::Query<Query>,
) -> Result<HttpResponse, Refusal> {
    let w = api::get(&app, &s.principal, endpoint_id(&id)?).await?;
    let body = detail(&app, &s, &w, &Values::of(&w), &FormErrors::default(), q.notice.as_deref()).await?;
    Ok(page(&s, Nav::Webhooks, "Webhook", body))
}

async fn detail(
    app: &ControlState,
    s: &AdminSession,
    w: &WebhookView,
    v: &Values,
    errors: &FormErrors,
    notice_code: Option<&str>,
) -> Result<Markup, ApiError> {
    let stats =
        deliveries_api::endpoint_stats(app, &s.principal, w.id, &StatsParams { window: Some("24h".into()) }).await?;
    let writable = s.can(Scope::WebhooksWrite);
    let edit = if writable {
        Some(form(app, s, &format!("/admin/webhooks/{}", w.id), v, errors, "Save").await?)
    } else {
        None
    };
    let default_since = (chrono::Utc::now() - chrono::Duration::hours(24)).format("%Y-%m-%dT%H:%M").to_string();
    Ok(html! {
        (notice(notice_code))
        dl.facts {
            dt { "URL" } dd { code { (w.url_label()) } }
            dt { "Id" } dd { code { (w.id) } }
            dt { "Health" } dd { (status_badge(health(w, stats.consecutive_failures))) @if let Some(r) = &w.disabled_reason { " " span.muted { (r) } } }
            dt { "Flow" } dd data-testid="flow" {
                (status_badge(&stats.flow.state))
                @if let Some(r) = stats.flow.rate_per_second { " " (r) "/s" }
                @if let (Some(c), "throttled" | "paused") = (stats.flow.ceiling_per_second, stats.flow.state.as_str()) { span.muted { " (back up to " (c) "/s while healthy)" } }
                @if let Some(t) = stats.flow.paused_until { span.muted { " paused until " } (opt_time(Some(t))) }
            }
            dt { "Events" } dd { (w.events.join(", ")) }
            @if let Some(k) = &w.public_key { dt { "Ed25519 public key" } dd { code { (k) } } }
            @if let Some(t) = w.previous_secret_expires_at { dt { "Previous secret signs until" } dd { (opt_time(Some(t))) } }
        }
        section.card aria-labelledby="stats" {
            h2 #stats { "Last 24 hours" }
            div.tiles {
                div.tile { span.label { "Attempts" } span.value { (stats.attempts) } }
                div.tile { span.label { "Success rate" } span.value { (percent(stats.success_rate)) } }
                div.tile { span.label { "Failed" } span.value { (stats.failed) } }
                div.tile { span.label { "p50 latency" } span.value { (millis(stats.p50_latency_ms)) } }
                div.tile { span.label { "p95 latency" } span.value { (millis(stats.p95_latency_ms)) } }
                div.tile { span.label { "Failures in a row" } span.value { (stats.consecutive_failures) } }
            }
            p { a href={ "/admin/deliveries?webhook_id=" (w.id) } { "This webhook's deliveries →" } }
        }
        @if writable {
            section.card aria-labelledby="actions" {
                h2 #actions { "Actions" }
                div.actions {
                    @if w.is_active {
                        form method="post" action={ "/admin/webhooks/" (w.id) "/test" } {
                            (csrf(s)) button type="submit" { "Send a test event" }
                        }
                        form method="post" action={ "/admin/webhooks/" (w.id) "/disable" } data-confirm="Disable this webhook? Its pending deliveries wait until it is enabled again." {
                            (csrf(s)) button type="submit" { "Disable" }
                        }
                    } @else {
                        form method="post" action={ "/admin/webhooks/" (w.id) "/enable" } {
                            (csrf(s)) button.primary type="submit" { "Enable" }
                        }
                    }
                }
                form method="post" action={ "/admin/webhooks/" (w.id) "/rotate-secret" } data-confirm="Rotate the signing secret?" {
                    (csrf(s))
                    div.field {
                        label for="grace" { "The old secret keeps signing for" }
                        select id="grace" name="grace_period_seconds" {
                            option value="0" { "no time" }
                            option value="3600" { "1 hour" }
                            option value="86400" selected { "1 day" }
                            option value="604800" { "7 days" }
                        }
                    }
                    button type="submit" { "Rotate secret" }
                }
                @if s.can(Scope::DeliveriesRetry) {
                    form method="post" action={ "/admin/webhooks/" (w.id) "/recover" } {
                        (csrf(s))
                        div.field {
                            label for="since" { "Retry failed and dead-lettered deliveries since (UTC)" }
                            input id="since" name="since" type="datetime-local" value=(default_since) required;
                        }
                        button type="submit" { "Recover" }
                    }
                }
            }
            section.card aria-labelledby="edit" {
                h2 #edit { "Configuration" }
                @if let Some(e) = edit { (e) }
            }
            section.card.danger aria-labelledby="delete" {
                h2 #delete { "Delete" }
                p { "Pending deliveries to this webhook are cancelled; its delivery history stays." }
                form method="post" action={ "/admin/webhooks/" (w.id) "/delete" } data-confirm={ "Delete the webhook for " (w.url_label()) "?" } {
                    (csrf(s)) button.danger type="submit" { "Delete webhook" }
                }
            }
        }
    })
}

async fn save(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let v = Values::read(&f);
    let s = &f.session;
    let result = match v.input() {
        Ok(input) => api::replace(&app, &s.principal, endpoint_id(&id)?, input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(w) => Ok(see_other(format!("/admin/webhooks/{}?notice=webhook_saved", w.id))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let w = api::get(&app, &s.principal, endpoint_id(&id)?).await?;
            let body = detail(&app, s, &w, &v, &FormErrors::from_api(&e), None).await?;
            Ok(page_with(s, Nav::Webhooks, "Webhook", e.status, body))
        }
        Err(e) => Err(e.into()),
    }
}

async fn rotate(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let grace = f
        .text("grace_period_seconds")
        .map(|v| {
            v.parse::<i64>().map_err(|_| ApiError::invalid_field("grace_period_seconds", "must be a whole number"))
        })
        .transpose()?;
    let w = api::rotate(&app, &f.session.principal, endpoint_id(&id)?, RotateSecret { grace_period_seconds: grace })
        .await?;
    Ok(secret_page(&f.session, &w, "Secret rotated"))
}

async fn test(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let sent = deliveries_api::test(&app, &f.session.principal, endpoint_id(&id)?).await?;
    Ok(see_other(format!("/admin/deliveries/{}?notice=test_sent", sent.delivery_id)))
}

async fn set_active(app: &ControlState, f: &AdminForm, id: &str, active: bool) -> Result<HttpResponse, Refusal> {
    let patch = WebhookPatch { is_active: Some(active), ..Default::default() };
    let w = api::update(app, &f.session.principal, endpoint_id(id)?, patch).await?;
    let code = if active { "webhook_enabled" } else { "webhook_disabled" };
    Ok(see_other(format!("/admin/webhooks/{}?notice={code}", w.id)))
}

async fn enable(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    set_active(&app, &f, &id, true).await
}

async fn disable(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    set_active(&app, &f, &id, false).await
}

async fn recover(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let since = parse_utc("since", f.get("since"))
        .map_err(|e| ApiError::validation(vec![e]))?
        .ok_or_else(|| ApiError::invalid_field("since", "is required"))?;
    let r = deliveries_api::recover_failures(
        &app,
        &f.session.principal,
        endpoint_id(&id)?,
        RecoverInput { since, until: None },
    )
    .await?;
    Ok(see_other(format!("/admin/deliveries?webhook_id={id}&notice=recovered_{}", r.requeued.min(10_000))))
}

async fn delete(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    api::delete(&app, &f.session.principal, endpoint_id(&id)?).await?;
    Ok(see_other("/admin/webhooks?notice=webhook_deleted".into()))
}
