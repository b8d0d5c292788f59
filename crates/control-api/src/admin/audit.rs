//! The audit log: who changed what, newest first.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use maud::html;

use super::layout::{opt_time, page, Nav};
use super::session::{AdminSession, Refusal};
use crate::routes::audit::AuditParams;
use crate::usecases::audit as api;

#[derive(serde::Deserialize, Default)]
pub struct Query {
    action: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    app: web::Data<ControlState>,
    s: AdminSession,
    q: web::Query<Query>,
) -> Result<HttpResponse, Refusal> {
    let action = q.action.clone().filter(|a| !a.trim().is_empty());
    let params = AuditParams {
        action: action.clone(),
        target_id: None,
        actor_key_id: None,
        limit: Some(50),
        cursor: q.cursor.clone(),
    };
    let entries = api::list(&app, &s.principal, &params).await?;
    let next = entries.next_cursor.as_ref().map(|c| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(a) = &action {
            q.append_pair("action", a);
        }
        q.append_pair("cursor", c);
        format!("/admin/audit?{}", q.finish())
    });
    let body = html! {
        form.filters method="get" action="/admin/audit" role="search" {
            div.field { label for="f-action" { "Action" } input id="f-action" name="action" value=(action.clone().unwrap_or_default()) placeholder="key.revoked"; }
            div.field { button type="submit" { "Filter" } }
        }
        div.table-wrap {
            table {
                caption.sr-only { "Audit log, newest first" }
                thead { tr { th { "When" } th { "Action" } th { "Target" } th { "By key" } th { "From" } th { "Details" } } }
                tbody {
                    @for e in &entries.data {
                        tr {
                            td { (opt_time(Some(e.created_at))) }
                            td { code { (e.action) } }
                            td { (e.target_type) " " code { (e.target_id) } }
                            td { @if let Some(k) = e.actor_key_id { a href={ "/admin/keys/" (k) } { code { (k) } } } @else { "operator" } }
                            td { (e.source_ip.clone().unwrap_or_default()) }
                            td { code.details { (e.details.to_string()) } }
                        }
                    }
                    @if entries.data.is_empty() { tr { td colspan="6" { "No entries." } } }
                }
            }
        }
        @if let Some(n) = next { p { a href=(n) { "Older entries →" } } }
    };
    Ok(page(&s, Nav::Audit, "Audit log", body))
}
