//! The dashboard: the last 24 hours at a glance, endpoint health and open
//! alerts, refreshed live.

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::PageParams;
use maud::{html, Markup};

use super::chart;
use super::layout::{html_response, millis, opt_time, page, percent, status_badge, Nav};
use super::session::{AdminSession, Refusal};
use super::webhooks::health;
use crate::routes::alerts::AlertParams;
use crate::usecases::alerts as alerts_api;
use crate::usecases::analytics;
use crate::usecases::webhooks as webhooks_api;

pub async fn show(app: web::Data<ControlState>, s: AdminSession) -> Result<HttpResponse, Refusal> {
    let body = region(&app, &s).await?;
    Ok(page(&s, Nav::Dashboard, "Dashboard", body))
}

pub async fn live_region(app: web::Data<ControlState>, s: AdminSession) -> Result<HttpResponse, Refusal> {
    Ok(html_response(StatusCode::OK, region(&app, &s).await?))
}

async fn region(app: &ControlState, s: &AdminSession) -> Result<Markup, ApiError> {
    s.principal.require(Scope::DeliveriesRead)?;
    let a = analytics::compute(app, s.org_id().as_uuid(), "24h").await?;
    let hooks = webhooks_api::list(app, &s.principal, &PageParams { limit: Some(100), cursor: None }).await?;
    let ids: Vec<uuid::Uuid> = hooks.data.iter().map(|w| w.id.as_uuid()).collect();
    let by_id = hookline_store::deliveries::endpoints_health(&mut *app.conn().await?, &ids).await?;
    let health_rows: Vec<(i32, Option<chrono::DateTime<chrono::Utc>>)> = ids
        .iter()
        .map(|id| by_id.get(id).map(|h| (h.consecutive_failures, h.last_success_at)).unwrap_or((0, None)))
        .collect();
    let open = if s.can(Scope::AlertsRead) {
        let p = AlertParams { state: Some("open".into()), rule: None, webhook_id: None, limit: Some(10), cursor: None };
        Some(alerts_api::list(app, &s.principal, &p).await?)
    } else {
        None
    };
    let t = &a.totals.figures;
    Ok(html! {
        div #dashboard hx-get="/admin/dashboard/live" hx-trigger="live from:body" hx-swap="outerHTML" {
            section aria-labelledby="last24" {
                h2 #last24 { "Last 24 hours" }
                div.tiles {
                    div.tile { span.label { "Deliveries" } span.value data-testid="deliveries-24h" { (a.totals.deliveries) } }
                    div.tile { span.label { "Success rate" } span.value { (percent(t.success_rate)) } }
                    div.tile { span.label { "p50 latency" } span.value { (millis(t.p50_latency_ms)) } }
                    div.tile { span.label { "p95 latency" } span.value { (millis(t.p95_latency_ms)) } }
                    div.tile { span.label { "Failed attempts" } span.value { (t.failed) } }
                    div.tile { span.label { "Dead letters" } span.value { a href="/admin/dead-letters" { (t.dead_letters) } } }
                }
                figure.chart {
                    (chart::deliveries(&a.series))
                    figcaption { "Successful and failed attempts per hour" }
                }
            }
            section aria-labelledby="health" {
                h2 #health { "Endpoint health" }
                div.table-wrap {
                    table {
                        thead { tr { th { "Webhook" } th { "Health" } th { "Failures in a row" } th { "Last success" } } }
                        tbody {
                            @for (w, (fails, last_ok)) in hooks.data.iter().zip(&health_rows) {
                                tr {
                                    td { a href={ "/admin/webhooks/" (w.id) } { (w.url_label()) } }
                                    td { (status_badge(health(w, *fails))) }
                                    td.num { (fails) }
                                    td { (opt_time(*last_ok)) }
                                }
                            }
                            @if hooks.data.is_empty() { tr { td colspan="4" { "No webhooks yet. " a href="/admin/webhooks/new" { "Add one" } } } }
                        }
                    }
                }
            }
            @if let Some(open) = open {
                section aria-labelledby="open-alerts" {
                    h2 #open-alerts { "Open alerts" }
                    @if open.data.is_empty() { p.muted { "None." } }
                    ul.alerts {
                        @for al in &open.data {
                            li { (status_badge(&al.state)) " " strong { (al.rule) } " " (al.message) " · " (opt_time(Some(al.last_seen_at))) }
                        }
                    }
                    p { a href="/admin/alerts" { "All alerts →" } }
                }
            }
        }
    })
}
