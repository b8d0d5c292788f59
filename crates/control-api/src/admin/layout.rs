//! The page shell and small pieces every admin page shares. Everything is
//! rendered with maud, which escapes every interpolated value: tenant data
//! (lead names, URLs, descriptions) always reaches the browser as text.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use hookline_service_kit::error::{ApiError, FieldError};
use maud::{html, Markup, DOCTYPE};

use super::session::{AdminSession, CSRF_FIELD};

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Deliveries,
    DeadLetters,
    Webhooks,
    Keys,
    Alerts,
    Audit,
}

const NAV: [(Nav, &str, &str); 7] = [
    (Nav::Dashboard, "/admin", "Dashboard"),
    (Nav::Deliveries, "/admin/deliveries", "Deliveries"),
    (Nav::DeadLetters, "/admin/dead-letters", "Dead letters"),
    (Nav::Webhooks, "/admin/webhooks", "Webhooks"),
    (Nav::Keys, "/admin/keys", "API keys"),
    (Nav::Alerts, "/admin/alerts", "Alerts"),
    (Nav::Audit, "/admin/audit", "Audit log"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · Hookline" }
            link rel="stylesheet" href="/admin/assets/admin.css";
            script src="/admin/assets/htmx.min.js" defer {}
            script src="/admin/assets/app.js" defer {}
        }
    }
}

/// A full page for a signed-in session. Its live regions (elements with
/// `hx-trigger="live from:body"`) refresh when `/admin/stream` reports a change.
pub fn page(s: &AdminSession, nav: Nav, title: &str, body: Markup) -> HttpResponse {
    page_with(s, nav, title, StatusCode::OK, body)
}

pub fn page_with(s: &AdminSession, nav: Nav, title: &str, status: StatusCode, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-live-stream="/admin/stream" {
                meta name="csrf-token" content=(s.csrf());
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/admin" { "Hookline" }
                    nav aria-label="Main" {
                        ul {
                            @for (n, href, label) in NAV {
                                li { a href=(href) aria-current=[(n == nav).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span { (s.key_name) }
                        " "
                        span.badge.role { (s.role().as_str()) }
                        form method="post" action="/admin/logout" {
                            (csrf(s))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if !s.can(hookline_domain::scope::Scope::KeysWrite) {
                        p.notice.info role="status" { "View-only session: changes are not available with a read_only key." }
                    }
                    (body)
                }
            }
        }
    };
    html_response(status, markup)
}

/// A page outside a session (sign-in, errors).
pub fn bare(title: &str, status: StatusCode, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main {
                    p.brand { "Hookline" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(status, markup)
}

pub fn html_response(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(markup.into_string())
}

pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    bare(
        title,
        status,
        html! {
            p.notice.error role="alert" { (message) }
            p { a href="/admin" { "Back to the dashboard" } }
        },
    )
}

/// A secret shown once (a new key or signing secret), with a copy button.
pub struct Reveal<'a> {
    pub warning: &'a str,
    pub label: String,
    pub secret: &'a str,
    pub done_href: String,
    pub done_label: &'a str,
}

pub fn reveal(r: Reveal<'_>) -> Markup {
    html! {
        div.notice.warn role="alert" { p { strong { (r.warning) } } }
        div.secret {
            label for="secret" { (r.label) }
            code #secret data-testid="secret" { (r.secret) }
            button type="button" data-copy="secret" { "Copy" }
        }
        p { a href=(r.done_href) { (r.done_label) } }
    }
}

/// The hidden CSRF field of every form.
pub fn csrf(s: &AdminSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(s.csrf()); }
}

pub fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

pub fn status_badge(status: &str) -> Markup {
    let class = match status {
        "delivered" | "active" | "healthy" | "resolved" | "normal" => "ok",
        "failed" | "failing" | "open" | "throttled" => "warn",
        "dead_letter" | "disabled" | "revoked" | "expired" | "paused" => "bad",
        _ => "neutral",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "—".into())
}

pub fn millis(ms: Option<f64>) -> String {
    ms.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "—".into())
}

/// Messages shown after a redirect (`?notice=`); unknown codes show nothing.
pub fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or_default() {
        "key_updated" => "The key was saved.",
        "key_revoked" => "The key was revoked. Requests with it are refused from now on.",
        "webhook_saved" => "The webhook was saved.",
        "webhook_enabled" => "The webhook was enabled.",
        "webhook_disabled" => "The webhook was disabled.",
        "webhook_deleted" => "The webhook was deleted.",
        "test_sent" => "A test event was queued.",
        "retried" => "A new attempt was queued.",
        "resolved" => "The dead letter was marked resolved.",
        "acknowledged" => "The alert was acknowledged.",
        "settings_saved" => "The alert settings were saved.",
        "signed_out" => "You are signed out.",
        other => {
            if let Some(n) = other.strip_prefix("replayed_").and_then(|n| n.parse::<u32>().ok()) {
                return html! { p.notice.ok role="status" { (n) " dead letters were queued again." } };
            }
            match other.strip_prefix("recovered_").and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => return html! { p.notice.ok role="status" { (n) " failed deliveries were queued again." } },
                None => return html! {},
            }
        }
    };
    html! { p.notice.ok role="status" { (text) } }
}

/// What went wrong with a form: a summary and, per field, its messages.
#[derive(Default)]
pub struct FormErrors {
    pub summary: Option<String>,
    pub fields: Vec<FieldError>,
}

impl FormErrors {
    pub fn from_api(e: &ApiError) -> Self {
        let p = e.problem();
        Self { summary: Some(p.detail.unwrap_or(p.title)), fields: p.errors.unwrap_or_default() }
    }

    pub fn status(&self) -> StatusCode {
        if self.summary.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        }
    }

    pub fn summary(&self) -> Markup {
        html! {
            @if let Some(s) = &self.summary {
                div.notice.error role="alert" {
                    p { (s) }
                }
            }
        }
    }

    /// The messages of `field` and of its sub-fields (`allowed_ips[2]`).
    pub fn field(&self, field: &str) -> Markup {
        let hits: Vec<&FieldError> = self
            .fields
            .iter()
            .filter(|e| {
                e.field == field
                    || e.field.starts_with(&format!("{field}["))
                    || e.field.starts_with(&format!("{field}."))
            })
            .collect();
        html! {
            @for e in hits {
                span.field-error id={ "err-" (field) } { (e.message) }
            }
        }
    }
}

/// A labelled text input.
pub fn text_input(label: &str, name: &str, value: &str, errors: &FormErrors, attrs: InputAttrs) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(attrs.kind) value=(value) required[attrs.required]
                placeholder=[attrs.placeholder] inputmode=[attrs.inputmode] autocomplete="off";
            @if let Some(h) = attrs.hint { small.hint { (h) } }
            (errors.field(name))
        }
    }
}

pub struct InputAttrs {
    pub kind: &'static str,
    pub required: bool,
    pub placeholder: Option<&'static str>,
    pub inputmode: Option<&'static str>,
    pub hint: Option<&'static str>,
}

impl Default for InputAttrs {
    fn default() -> Self {
        Self { kind: "text", required: false, placeholder: None, inputmode: None, hint: None }
    }
}
