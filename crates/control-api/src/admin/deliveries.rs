//! Deliveries: a filtered list that updates itself, a detail view with the
//! payload and every attempt, retry; and dead letters, replayed or resolved.

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::error::ApiError;
use maud::{html, Markup};

use super::keys::parse_utc;
use super::layout::{csrf, html_response, notice, opt_time, page, status_badge, Nav};
use super::see_other;
use super::session::{AdminForm, AdminSession, Refusal};
use crate::routes::dead_letters::{dead_letter_id, DeadLetterParams, ReplayFilter};
use crate::routes::deliveries::{delivery_id, DeliveryParams};
use crate::usecases::dead_letters as dead_api;
use crate::usecases::deliveries as api;
use hookline_domain::status::DeliveryStatus;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/deliveries", web::get().to(list))
        .route("/deliveries/rows", web::get().to(rows))
        .route("/deliveries/{id}", web::get().to(show))
        .route("/deliveries/{id}/retry", web::post().to(retry))
        .route("/dead-letters", web::get().to(dead_letters))
        .route("/dead-letters/replay", web::post().to(replay_dead_letters))
        .route("/dead-letters/{id}/replay", web::post().to(replay_dead_letter))
        .route("/dead-letters/{id}/resolve", web::post().to(resolve_dead_letter));
}

/// The filters as typed; blank means "any".
#[derive(serde::Deserialize, Default, Clone)]
pub struct Filters {
    webhook_id: Option<String>,
    status: Option<String>,
    event: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

fn blank(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Filters {
    fn params(&self) -> Result<DeliveryParams, ApiError> {
        let since = parse_utc("since", self.since.as_deref()).map_err(|e| ApiError::validation(vec![e]))?;
        let until = parse_utc("until", self.until.as_deref()).map_err(|e| ApiError::validation(vec![e]))?;
        Ok(DeliveryParams {
            webhook_id: blank(&self.webhook_id),
            status: blank(&self.status),
            event: blank(&self.event),
            since,
            until,
            limit: Some(50),
            cursor: blank(&self.cursor),
        })
    }

    /// The query string that reproduces these filters (without the cursor).
    fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("webhook_id", &self.webhook_id),
            ("status", &self.status),
            ("event", &self.event),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = blank(v) {
                q.append_pair(k, &v);
            }
        }
        q.finish()
    }
}

/// The table body, which refreshes itself when the event stream reports a change.
async fn table(app: &ControlState, s: &AdminSession, f: &Filters) -> Result<Markup, ApiError> {
    let page = api::list(app, &s.principal, &f.params()?).await?;
    let live = f.cursor.is_none();
    let src = format!("/admin/deliveries/rows?{}", f.query());
    Ok(html! {
        div #deliveries.table-wrap
            hx-get=[live.then_some(&src)] hx-trigger=[live.then_some("live from:body")] hx-swap="outerHTML" aria-live="polite" {
            table {
                caption.sr-only { "Deliveries, newest first" }
                thead { tr { th { "Created" } th { "Event" } th { "Webhook" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Next attempt" } } }
                tbody {
                    @for d in &page.data {
                        tr data-delivery=(d.id) {
                            td { a href={ "/admin/deliveries/" (d.id) } { (opt_time(Some(d.created_at))) } }
                            td { code { (d.event) } }
                            td { a href={ "/admin/webhooks/" (d.webhook_id) } { code { (d.webhook_id) } } }
                            td { (status_badge(&d.status)) }
                            td.num { (d.attempts) }
                            td {
                                @if let Some(c) = d.last_status_code { (c) " " }
                                @if let Some(e) = &d.last_error { span.muted { (e) } }
                            }
                            td { (opt_time(d.next_attempt_at)) }
                        }
                    }
                    @if page.data.is_empty() { tr { td colspan="7" { "No deliveries match." } } }
                }
            }
            @if let Some(c) = &page.next_cursor {
                p { a href={ "/admin/deliveries?" (f.query()) "&cursor=" (c) } { "Older deliveries →" } }
            }
        }
    })
}

fn filter_form(f: &Filters) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filters method="get" action="/admin/deliveries" role="search" {
            div.field { label for="f-webhook" { "Webhook id" } input id="f-webhook" name="webhook_id" value=(v(&f.webhook_id)) placeholder="ep_…"; }
            div.field {
                label for="f-status" { "Status" }
                select id="f-status" name="status" {
                    option value="" { "any" }
                    @for st in DeliveryStatus::ALL.map(DeliveryStatus::as_str) { option value=(st) selected[f.status.as_deref() == Some(st)] { (st) } }
                }
            }
            div.field { label for="f-event" { "Event type" } input id="f-event" name="event" value=(v(&f.event)) placeholder="new_lead"; }
            div.field { label for="f-since" { "Since (UTC)" } input id="f-since" name="since" type="datetime-local" value=(v(&f.since)); }
            div.field { label for="f-until" { "Until (UTC)" } input id="f-until" name="until" type="datetime-local" value=(v(&f.until)); }
            div.field { button type="submit" { "Filter" } }
        }
    }
}

async fn list(app: web::Data<ControlState>, s: AdminSession, f: web::Query<Filters>) -> Result<HttpResponse, Refusal> {
    let f = f.into_inner();
    let body = match table(&app, &s, &f).await {
        Ok(t) => html! { (notice(f.notice.as_deref())) (filter_form(&f)) (t) },
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let msg = e.problem().detail.unwrap_or_default();
            html! { (filter_form(&f)) p.notice.error role="alert" { "Check the filters: " (msg) } }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(page(&s, Nav::Deliveries, "Deliveries", body))
}

#[derive(serde::Deserialize, Default)]
struct DeadLetterQuery {
    webhook_id: Option<String>,
    event: Option<String>,
    /// `open` (default), `resolved` or `all`.
    show: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

/// Dead letters: open ones by default, each with replay and resolve, and a
/// replay of every open one the filters match.
async fn dead_letters(
    app: web::Data<ControlState>,
    s: AdminSession,
    q: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, Refusal> {
    let show = blank(&q.show).unwrap_or_else(|| "open".into());
    let resolved = match show.as_str() {
        "resolved" => Some(true),
        "all" => None,
        _ => Some(false),
    };
    let params = DeadLetterParams {
        webhook_id: blank(&q.webhook_id),
        event: blank(&q.event),
        since: None,
        until: None,
        resolved,
        limit: Some(50),
        cursor: blank(&q.cursor),
    };
    let writable = s.can(Scope::DeliveriesRetry);
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let listed = dead_api::list(&app, &s.principal, &params).await;
    let body = html! {
        (notice(q.notice.as_deref()))
        form.filters method="get" action="/admin/dead-letters" role="search" {
            div.field { label for="f-webhook" { "Webhook id" } input id="f-webhook" name="webhook_id" value=(v(&q.webhook_id)) placeholder="ep_…"; }
            div.field { label for="f-event" { "Event type" } input id="f-event" name="event" value=(v(&q.event)) placeholder="new_lead"; }
            div.field {
                label for="f-show" { "Show" }
                select id="f-show" name="show" {
                    @for (value, label) in [("open", "open"), ("resolved", "resolved"), ("all", "all")] {
                        option value=(value) selected[show == value] { (label) }
                    }
                }
            }
            div.field { button type="submit" { "Filter" } }
        }
        @if writable && show != "resolved" {
            form method="post" action="/admin/dead-letters/replay" {
                (csrf(&s))
                @if let Some(w) = blank(&q.webhook_id) { input type="hidden" name="webhook_id" value=(w); }
                @if let Some(e) = blank(&q.event) { input type="hidden" name="event" value=(e); }
                button.primary type="submit" { "Replay every open one shown by these filters" }
            }
        }
        @match &listed {
            Err(e) => { p.notice.error role="alert" { "Check the filters: " (e.problem().detail.unwrap_or_default()) } },
            Ok(page) => {
                div.table-wrap {
                    table {
                        caption.sr-only { "Dead letters, newest first" }
                        thead { tr { th { "Dead-lettered" } th { "Event" } th { "Webhook" } th { "Attempts" } th { "Last answer" } th { "State" } @if writable { th { "" } } } }
                        tbody {
                            @for d in &page.data {
                                tr data-dead-letter=(d.delivery_id) {
                                    td { a href={ "/admin/deliveries/" (d.delivery_id) } { (opt_time(Some(d.dead_lettered_at))) } }
                                    td { code { (d.event) } }
                                    td { a href={ "/admin/webhooks/" (d.webhook_id) } { code { (d.webhook_id) } } }
                                    td.num { (d.attempts) }
                                    td {
                                        @if let Some(c) = d.last_status_code { (c) " " }
                                        @if let Some(e) = &d.last_error { span.muted { (e) } }
                                    }
                                    td { @if d.resolved { (status_badge("resolved")) } @else { (status_badge("open")) } }
                                    @if writable {
                                        td.actions {
                                            form method="post" action={ "/admin/dead-letters/" (d.delivery_id) "/replay" } { (csrf(&s)) button type="submit" { "Replay" } }
                                            @if !d.resolved {
                                                form method="post" action={ "/admin/dead-letters/" (d.delivery_id) "/resolve" } { (csrf(&s)) button type="submit" { "Resolve" } }
                                            }
                                        }
                                    }
                                }
                            }
                            @if page.data.is_empty() { tr { td colspan="7" { "No dead letters match." } } }
                        }
                    }
                    @if let Some(c) = &page.next_cursor {
                        p { a href={ "/admin/dead-letters?show=" (show) "&cursor=" (c) } { "Older dead letters →" } }
                    }
                }
            },
        }
    };
    Ok(page(&s, Nav::DeadLetters, "Dead letters", body))
}

async fn replay_dead_letter(
    app: web::Data<ControlState>,
    id: web::Path<String>,
    f: AdminForm,
) -> Result<HttpResponse, Refusal> {
    dead_api::replay(&app, &f.session.principal, dead_letter_id(&id)?).await?;
    Ok(see_other("/admin/dead-letters?notice=retried".into()))
}

async fn resolve_dead_letter(
    app: web::Data<ControlState>,
    id: web::Path<String>,
    f: AdminForm,
) -> Result<HttpResponse, Refusal> {
    dead_api::resolve(&app, &f.session.principal, dead_letter_id(&id)?).await?;
    Ok(see_other("/admin/dead-letters?notice=resolved".into()))
}

async fn replay_dead_letters(app: web::Data<ControlState>, f: AdminForm) -> Result<HttpResponse, Refusal> {
    let filter = ReplayFilter { webhook_id: f.text("webhook_id"), event: f.text("event"), ..Default::default() };
    let done = dead_api::replay_all(&app, &f.session.principal, filter).await?;
    Ok(see_other(format!("/admin/dead-letters?notice=replayed_{}", done.replayed)))
}

async fn rows(app: web::Data<ControlState>, s: AdminSession, f: web::Query<Filters>) -> Result<HttpResponse, Refusal> {
    Ok(html_response(StatusCode::OK, table(&app, &s, &f).await?))
}

async fn show(
    app: web::Data<ControlState>,
    s: AdminSession,
    id: web::Path<String>,
    q: web::Query<Filters>,
) -> Result<HttpResponse, Refusal> {
    let body = detail(&app, &s, &id, q.notice.as_deref()).await?;
    Ok(page(&s, Nav::Deliveries, "Delivery", body))
}

async fn detail(app: &ControlState, s: &AdminSession, id: &str, notice_code: Option<&str>) -> Result<Markup, ApiError> {
    let d = api::get(app, &s.principal, delivery_id(id)?).await?;
    let payload = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    let retryable = DeliveryStatus::parse(&d.delivery.status).is_some_and(DeliveryStatus::retryable);
    Ok(html! {
        (notice(notice_code))
        div #delivery hx-get={ "/admin/deliveries/" (d.delivery.id) "?fragment=1" } hx-trigger="live from:body" hx-select="#delivery" hx-swap="outerHTML" {
            dl.facts {
                dt { "Id" } dd { code { (d.delivery.id) } }
                dt { "Event" } dd { code { (d.delivery.event) } " " span.muted { (d.delivery.event_id) } }
                dt { "Webhook" } dd { a href={ "/admin/webhooks/" (d.delivery.webhook_id) } { code { (d.delivery.webhook_id) } } }
                dt { "Status" } dd data-testid="delivery-status" { (status_badge(&d.delivery.status)) }
                dt { "Attempts" } dd { (d.delivery.attempts) }
                dt { "Created" } dd { (opt_time(Some(d.delivery.created_at))) }
                dt { "Delivered" } dd { (opt_time(d.delivery.delivered_at)) }
                dt { "Next attempt" } dd { (opt_time(d.delivery.next_attempt_at)) }
            }
            @if retryable && s.can(Scope::DeliveriesRetry) {
                form method="post" action={ "/admin/deliveries/" (d.delivery.id) "/retry" } {
                    (csrf(s)) button.primary type="submit" { "Retry now" }
                }
            }
            section.card aria-labelledby="payload" {
                h2 #payload { "Payload" }
                pre.payload { code { (payload) } }
            }
            section aria-labelledby="attempts" {
                h2 #attempts { "Attempts" }
                @if d.attempt_log.is_empty() { p.muted { "No attempt yet." } }
                @for a in d.attempt_log.iter().rev() {
                    details.attempt open[a.attempt as usize == d.attempt_log.len()] {
                        summary {
                            "Attempt " (a.attempt) " · "
                            (status_badge(if a.succeeded { "delivered" } else { "failed" }))
                            " · " @if let Some(c) = a.status_code { "HTTP " (c) } @else { (a.error_class.clone().unwrap_or_default()) }
                            " · " (a.latency_ms) " ms · " (opt_time(Some(a.created_at)))
                        }
                        @if let Some(e) = &a.error { p.notice.error { (e) } }
                        h3 { "Request headers" }
                        pre { code { (serde_json::to_string_pretty(&a.request_headers).unwrap_or_default()) } }
                        @if let Some(h) = &a.response_headers {
                            h3 { "Response headers" }
                            pre { code { (serde_json::to_string_pretty(h).unwrap_or_default()) } }
                        }
                        @if let Some(b) = &a.response_body {
                            h3 { "Response body (first 4 KiB)" }
                            pre { code { (b) } }
                        }
                    }
                }
            }
        }
    })
}

async fn retry(app: web::Data<ControlState>, f: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let d = api::retry(&app, &f.session.principal, delivery_id(&id)?).await?;
    Ok(see_other(format!("/admin/deliveries/{}?notice=retried", d.id)))
}
