//! API keys: list, create (secret shown once), edit limits and allowed IPs,
//! rotate with a grace period, revoke.

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDateTime, Utc};
use hookline_domain::scope::{Role, Scope};
use hookline_service_kit::error::{ApiError, FieldError};
use maud::{html, Markup};

use super::layout::{
    csrf, notice, opt_time, page, page_with, reveal, status_badge, text_input, FormErrors, InputAttrs, Nav, Reveal,
};
use super::see_other;
use super::session::{AdminForm, AdminSession, Refusal};
use crate::routes::keys::{key_id, CreateKey, KeyListParams, RotateKey, UpdateKey};
use crate::usecases::keys as api;
use crate::views::KeyView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/keys", web::get().to(list))
        .route("/keys", web::post().to(create))
        .route("/keys/{id}", web::get().to(show))
        .route("/keys/{id}", web::post().to(update))
        .route("/keys/{id}/rotate", web::post().to(rotate))
        .route("/keys/{id}/revoke", web::post().to(revoke));
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    notice: Option<String>,
    cursor: Option<String>,
}

/// A `datetime-local` value, read as UTC.
pub fn parse_utc(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, FieldError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
        .map(|n| Some(n.and_utc()))
        .ok_or_else(|| FieldError { field: field.into(), message: format!("`{v}` is not a date and time") })
}

fn lines(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default().split(['\n', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn key_state(k: &KeyView) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|t| t <= Utc::now()) {
        "expired"
    } else {
        "active"
    }
}

/// What the create form showed, to show it again with its errors.
#[derive(Default)]
struct CreateValues {
    name: String,
    role: String,
    description: String,
    rate: String,
    ips: String,
    expires: String,
    scopes: Vec<String>,
}

async fn list(
    app: web::Data<ControlState>,
    s: AdminSession,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Refusal> {
    let body = list_body(&app, &s, &q, &CreateValues::default(), &FormErrors::default()).await?;
    Ok(page(&s, Nav::Keys, "API keys", body))
}

async fn list_body(
    app: &ControlState,
    s: &AdminSession,
    q: &ListQuery,
    values: &CreateValues,
    errors: &FormErrors,
) -> Result<Markup, ApiError> {
    let keys = api::list(
        app,
        &s.principal,
        &KeyListParams { role: None, revoked: None, limit: Some(100), cursor: q.cursor.clone() },
    )
    .await?;
    Ok(html! {
        (notice(q.notice.as_deref()))
        div.table-wrap {
            table {
                caption.sr-only { "API keys of this organisation" }
                thead { tr { th { "Name" } th { "Key" } th { "Role" } th { "Limit / h" } th { "Allowed IPs" } th { "Last used" } th { "State" } } }
                tbody {
                    @for k in &keys.data {
                        tr {
                            td { a href={ "/admin/keys/" (k.id) } { (k.name) } }
                            td { code { (k.prefix) } }
                            td { (k.role.as_str()) }
                            td.num { (k.rate_limit_per_hour) }
                            td { @if k.allowed_ips.is_empty() { span.muted { "any" } } @else { (k.allowed_ips.join(", ")) } }
                            td { (opt_time(k.last_used_at)) }
                            td { (status_badge(key_state(k))) }
                        }
                    }
                    @if keys.data.is_empty() { tr { td colspan="7" { "No keys yet." } } }
                }
            }
        }
        @if let Some(c) = &keys.next_cursor { p { a href={ "/admin/keys?cursor=" (c) } { "Older keys →" } } }
        @if s.can(Scope::KeysWrite) {
            section.card aria-labelledby="new-key" {
                h2 #new-key { "Create a key" }
                (errors.summary())
                form method="post" action="/admin/keys" {
                    (csrf(s))
                    (text_input("Name", "name", &values.name, errors, InputAttrs { required: true, ..Default::default() }))
                    div.field {
                        label for="role" { "Role" }
                        select id="role" name="role" {
                            @for r in [Role::ReadOnly, Role::ReadWrite, Role::Admin] {
                                option value=(r.as_str()) selected[values.role == r.as_str() || (values.role.is_empty() && r == Role::ReadWrite)] { (r.as_str()) }
                            }
                        }
                        small.hint { "read_only reads; read_write also sends events and manages webhooks; admin also manages keys and alerts." }
                        (errors.field("scopes"))
                    }
                    fieldset {
                        legend { "Scopes" }
                        small.hint { "Leave all unticked for every scope of the role; tick some to narrow the key." }
                        @for sc in Scope::ALL {
                            label.check { input type="checkbox" name="scopes" value=(sc.as_str()) checked[values.scopes.iter().any(|v| v == sc.as_str())]; " " code { (sc.as_str()) } }
                        }
                    }
                    (text_input("Description", "description", &values.description, errors, InputAttrs::default()))
                    (text_input("Requests per hour", "rate_limit_per_hour", &values.rate, errors, InputAttrs { kind: "number", inputmode: Some("numeric"), hint: Some("Empty: the default limit."), ..Default::default() }))
                    div.field {
                        label for="allowed_ips" { "Allowed IPs" }
                        textarea id="allowed_ips" name="allowed_ips" rows="2" placeholder="203.0.113.0/24" { (values.ips) }
                        small.hint { "CIDRs or addresses, one per line. Empty: any address." }
                        (errors.field("allowed_ips"))
                    }
                    (text_input("Expires at (UTC)", "expires_at", &values.expires, errors, InputAttrs { kind: "datetime-local", hint: Some("Empty: never."), ..Default::default() }))
                    button.primary type="submit" { "Create key" }
                }
            }
        }
    })
}

async fn create(app: web::Data<ControlState>, form: AdminForm) -> Result<HttpResponse, Refusal> {
    let s = &form.session;
    let values = CreateValues {
        name: form.get("name").unwrap_or_default().to_owned(),
        role: form.get("role").unwrap_or_default().to_owned(),
        description: form.get("description").unwrap_or_default().to_owned(),
        rate: form.get("rate_limit_per_hour").unwrap_or_default().to_owned(),
        ips: form.get("allowed_ips").unwrap_or_default().to_owned(),
        expires: form.get("expires_at").unwrap_or_default().to_owned(),
        scopes: form.all("scopes"),
    };
    let result = async {
        let mut errors = Vec::new();
        let mut scopes = Vec::new();
        for v in &values.scopes {
            match v.parse::<Scope>() {
                Ok(sc) => scopes.push(sc),
                Err(e) => errors.push(FieldError { field: "scopes".into(), message: e.to_string() }),
            }
        }
        let role = match values.role.parse::<Role>() {
            Ok(r) => Some(r),
            Err(_) => {
                errors.push(FieldError { field: "role".into(), message: "choose a role".into() });
                None
            }
        };
        let rate = match form.text("rate_limit_per_hour") {
            None => None,
            Some(v) => match v.parse::<i32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(FieldError {
                        field: "rate_limit_per_hour".into(),
                        message: "must be a whole number".into(),
                    });
                    None
                }
            },
        };
        let expires_at = parse_utc("expires_at", form.get("expires_at")).map_err(|e| errors.push(e)).ok().flatten();
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let body = CreateKey {
            name: values.name.clone(),
            role: role.expect("checked"),
            scopes: (!scopes.is_empty()).then_some(scopes),
            rate_limit_per_hour: rate,
            expires_at,
            allowed_ips: Some(lines(form.get("allowed_ips"))),
            description: form.text("description"),
        };
        api::create(&app, &s.principal, body).await
    }
    .await;
    match result {
        Ok(view) => Ok(secret_page(
            s,
            &view,
            "Key created",
            "This is the only time the key is shown. Copy it now and keep it somewhere safe.",
        )),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT => {
            let errors = FormErrors::from_api(&e);
            let body = list_body(&app, s, &ListQuery::default(), &values, &errors).await?;
            Ok(page_with(s, Nav::Keys, "API keys", e.status, body))
        }
        Err(e) => Err(e.into()),
    }
}

fn secret_page(s: &AdminSession, k: &KeyView, title: &str, warning: &str) -> HttpResponse {
    let body = reveal(Reveal {
        warning,
        label: format!("Key for {}", k.name),
        secret: k.key.as_deref().unwrap_or_default(),
        done_href: format!("/admin/keys/{}", k.id),
        done_label: "Done: go to the key",
    });
    page(s, Nav::Keys, title, body)
}

async fn show(
    app: web::Data<ControlState>,
    s: AdminSession,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Refusal> {
    let k = api::get(&app, &s.principal, key_id(&id)?).await?;
    Ok(page(&s, Nav::Keys, &k.name.clone(), detail(&s, &k, None, &FormErrors::default(), q.notice.as_deref())))
}

fn detail(
    s: &AdminSession,
    k: &KeyView,
    edit: Option<&EditValues>,
    errors: &FormErrors,
    notice_code: Option<&str>,
) -> Markup {
    let values = edit.cloned().unwrap_or_else(|| EditValues {
        name: k.name.clone(),
        description: k.description.clone().unwrap_or_default(),
        rate: k.rate_limit_per_hour.to_string(),
        ips: k.allowed_ips.join("\n"),
        expires: k.expires_at.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default(),
    });
    let live = key_state(k) == "active";
    html! {
        (notice(notice_code))
        dl.facts {
            dt { "Id" } dd { code { (k.id) } }
            dt { "Key" } dd { code { (k.prefix) } }
            dt { "Role" } dd { (k.role.as_str()) }
            dt { "Scopes" } dd { @for sc in &k.scopes { span.badge.neutral { (sc.as_str()) } " " } }
            dt { "State" } dd { (status_badge(key_state(k))) }
            dt { "Created" } dd { (opt_time(Some(k.created_at))) }
            dt { "Last used" } dd { (opt_time(k.last_used_at)) }
            @if let Some(t) = k.previous_secret_expires_at { dt { "Previous secret works until" } dd { (opt_time(Some(t))) } }
        }
        @if live && s.can(Scope::KeysWrite) {
            section.card aria-labelledby="edit" {
                h2 #edit { "Limits and access" }
                (errors.summary())
                form method="post" action={ "/admin/keys/" (k.id) } {
                    (csrf(s))
                    (text_input("Name", "name", &values.name, errors, InputAttrs { required: true, ..Default::default() }))
                    (text_input("Description", "description", &values.description, errors, InputAttrs::default()))
                    (text_input("Requests per hour", "rate_limit_per_hour", &values.rate, errors, InputAttrs { kind: "number", required: true, inputmode: Some("numeric"), ..Default::default() }))
                    div.field {
                        label for="allowed_ips" { "Allowed IPs" }
                        textarea id="allowed_ips" name="allowed_ips" rows="3" { (values.ips) }
                        small.hint { "CIDRs or addresses, one per line. Empty: any address." }
                        (errors.field("allowed_ips"))
                    }
                    (text_input("Expires at (UTC)", "expires_at", &values.expires, errors, InputAttrs { kind: "datetime-local", hint: Some("Empty: never."), ..Default::default() }))
                    button.primary type="submit" { "Save" }
                }
            }
            section.card aria-labelledby="rotate" {
                h2 #rotate { "Rotate the secret" }
                form method="post" action={ "/admin/keys/" (k.id) "/rotate" } data-confirm="Rotate this key's secret?" {
                    (csrf(s))
                    div.field {
                        label for="grace" { "The old secret keeps working for" }
                        select id="grace" name="grace_period_seconds" {
                            option value="0" { "no time: stop it now" }
                            option value="3600" selected { "1 hour" }
                            option value="86400" { "1 day" }
                            option value="604800" { "7 days" }
                        }
                    }
                    button type="submit" { "Rotate" }
                }
            }
            section.card.danger aria-labelledby="revoke" {
                h2 #revoke { "Revoke" }
                p { "Requests with this key are refused on every instance within a second. This cannot be undone." }
                form method="post" action={ "/admin/keys/" (k.id) "/revoke" } data-confirm={ "Revoke the key “" (k.name) "”? This cannot be undone." } {
                    (csrf(s))
                    button.danger type="submit" { "Revoke key" }
                }
            }
        }
    }
}

#[derive(Clone)]
struct EditValues {
    name: String,
    description: String,
    rate: String,
    ips: String,
    expires: String,
}

async fn update(app: web::Data<ControlState>, form: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let s = &form.session;
    let values = EditValues {
        name: form.get("name").unwrap_or_default().to_owned(),
        description: form.get("description").unwrap_or_default().to_owned(),
        rate: form.get("rate_limit_per_hour").unwrap_or_default().to_owned(),
        ips: form.get("allowed_ips").unwrap_or_default().to_owned(),
        expires: form.get("expires_at").unwrap_or_default().to_owned(),
    };
    let result = async {
        let mut errors = Vec::new();
        let rate = match values.rate.trim().parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors
                    .push(FieldError { field: "rate_limit_per_hour".into(), message: "must be a whole number".into() });
                None
            }
        };
        let expires = parse_utc("expires_at", Some(&values.expires)).map_err(|e| errors.push(e)).ok().flatten();
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let body = UpdateKey {
            name: Some(values.name.clone()),
            description: Some(form.text("description")),
            rate_limit_per_hour: rate,
            allowed_ips: Some(lines(Some(&values.ips))),
            expires_at: Some(expires),
        };
        api::update(&app, &s.principal, key_id(&id)?, body).await
    }
    .await;
    match result {
        Ok(k) => Ok(see_other(format!("/admin/keys/{}?notice=key_updated", k.id))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let k = api::get(&app, &s.principal, key_id(&id)?).await?;
            let body = detail(s, &k, Some(&values), &FormErrors::from_api(&e), None);
            Ok(page_with(s, Nav::Keys, &k.name.clone(), e.status, body))
        }
        Err(e) => Err(e.into()),
    }
}

async fn rotate(app: web::Data<ControlState>, form: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let grace = form
        .text("grace_period_seconds")
        .map(|v| {
            v.parse::<i64>().map_err(|_| ApiError::invalid_field("grace_period_seconds", "must be a whole number"))
        })
        .transpose()?;
    let k = api::rotate(&app, &form.session.principal, key_id(&id)?, RotateKey { grace_period_seconds: grace }).await?;
    Ok(secret_page(&form.session, &k, "Key rotated", "This is the only time the new secret is shown. Copy it now."))
}

async fn revoke(app: web::Data<ControlState>, form: AdminForm, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    api::revoke(&app, &form.session.principal, key_id(&id)?).await?;
    Ok(see_other("/admin/keys?notice=key_revoked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_datetimes_are_read_as_utc() {
        let t = parse_utc("x", Some("2030-01-02T03:04")).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2030-01-02T03:04:00+00:00");
        assert!(parse_utc("x", Some("")).unwrap().is_none());
        assert_eq!(parse_utc("x", Some("tomorrow")).unwrap_err().field, "x");
    }

    #[test]
    fn ip_lists_split_on_lines_and_commas() {
        assert_eq!(lines(Some("10.0.0.1\n 10.0.0.2, ::1\n\n")), vec!["10.0.0.1", "10.0.0.2", "::1"]);
    }
}
