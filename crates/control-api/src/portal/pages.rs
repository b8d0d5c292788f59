//! The portal's pages: endpoints, their deliveries and attempts, the event catalogue.

use crate::state::ControlState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::PageParams;
use maud::{html, Markup};

use super::{theme_css, Portal};
use crate::admin::layout::{opt_time, status_badge, time, FormErrors};
use crate::admin::session::read_form;
use crate::routes::dead_letters::ReplayFilter;
use crate::routes::deliveries::{delivery_id, DeliveryParams, TestResult, TestSent};
use crate::routes::webhooks::{endpoint_id as parse_endpoint, RotateSecret, WebhookInput, WebhookPatch, WebhookView};
use crate::usecases::dead_letters;
use crate::usecases::deliveries;
use crate::usecases::event_types;
use crate::usecases::webhooks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/{token}", web::get().to(home))
        .route("/{token}/theme.css", web::get().to(theme))
        .route("/{token}/event-types", web::get().to(catalogue))
        .route("/{token}/endpoints", web::post().to(create))
        .route("/{token}/endpoints/new", web::get().to(new_form))
        .route("/{token}/endpoints/{id}", web::get().to(show))
        .route("/{token}/endpoints/{id}", web::post().to(save))
        .route("/{token}/endpoints/{id}/rotate-secret", web::post().to(rotate))
        .route("/{token}/endpoints/{id}/enable", web::post().to(enable))
        .route("/{token}/endpoints/{id}/disable", web::post().to(disable))
        .route("/{token}/endpoints/{id}/test", web::post().to(test))
        .route("/{token}/endpoints/{id}/replay", web::post().to(replay))
        .route("/{token}/deliveries/{id}", web::get().to(delivery))
        .route("/{token}/deliveries/{id}/retry", web::post().to(retry));
}

#[derive(serde::Deserialize)]
struct Notice {
    notice: Option<String>,
}

fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or_default() {
        "saved" => "The endpoint was saved.",
        "enabled" => "The endpoint was enabled.",
        "disabled" => "The endpoint was disabled.",
        "retried" => "A new attempt was queued.",
        other => match other.strip_prefix("replayed_").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => {
                return html! { p.notice.ok role="status" { (n) " dead-lettered deliveries were queued again." } }
            }
            None => return html! {},
        },
    };
    html! { p.notice.ok role="status" { (text) } }
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

async fn theme(p: Portal) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(theme_css(&p.org))
}

/// The link's endpoints (all of the organisation's, or the ones it names).
async fn endpoints(app: &ControlState, p: &Portal) -> Result<Vec<WebhookView>, ApiError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = webhooks::list(app, &p.principal, &PageParams { limit: Some(200), cursor }).await?;
        all.extend(page.data.into_iter().filter(|w| p.covers(&w.id.to_string()).is_ok()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
}

fn health(w: &WebhookView) -> &'static str {
    if w.is_active {
        "active"
    } else {
        "disabled"
    }
}

async fn home(app: web::Data<ControlState>, p: Portal, q: web::Query<Notice>) -> HttpResponse {
    let result = async {
        let hooks = endpoints(&app, &p).await?;
        Ok(p.page(
            "Endpoints",
            StatusCode::OK,
            html! {
                (notice(q.notice.as_deref()))
                @if p.manages() && p.unrestricted() {
                    p { a.button.primary href=(p.href("/endpoints/new")) { "Add an endpoint" } }
                }
                @if hooks.is_empty() {
                    p.muted { "No endpoints yet." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr { th { "URL" } th { "Status" } th { "Events" } th { "Created" } } }
                            tbody {
                                @for w in &hooks {
                                    tr {
                                        td { a href=(p.href(&format!("/endpoints/{}", w.id))) { code { (w.url_label()) } } }
                                        td { (status_badge(health(w))) }
                                        td { (w.events.join(", ")) }
                                        td { (time(w.created_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ))
    }
    .await;
    p.respond(result)
}

/// The form's values, as sent or as stored.
struct Values {
    url: String,
    description: String,
    events: Vec<String>,
    signature_format: String,
}

impl Values {
    fn of(w: &WebhookView) -> Self {
        Self {
            url: w.url.clone().unwrap_or_default(),
            description: w.description.clone().unwrap_or_default(),
            events: w.events.clone(),
            signature_format: w.signature_format.clone(),
        }
    }

    fn read(fields: &[(String, String)]) -> Self {
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
        Self {
            url: get("url").trim().to_owned(),
            description: get("description"),
            events: fields.iter().filter(|(k, _)| k == "events").map(|(_, v)| v.clone()).collect(),
            signature_format: get("signature_format"),
        }
    }

    fn description(&self) -> Option<String> {
        Some(self.description.trim().to_owned()).filter(|d| !d.is_empty())
    }

    fn format(&self) -> Option<String> {
        Some(self.signature_format.clone()).filter(|f| !f.is_empty())
    }
}

async fn form(
    app: &ControlState,
    p: &Portal,
    action: String,
    v: &Values,
    errors: &FormErrors,
    submit: &str,
) -> Result<Markup, ApiError> {
    let types = event_types::list(app, &p.principal).await?;
    let mut names: Vec<String> = vec!["*".into()];
    names.extend(types.into_iter().map(|t| t.name));
    Ok(html! {
        (errors.summary())
        form.card method="post" action=(action) {
            div.field {
                label for="url" { "URL" }
                input id="url" name="url" type="url" value=(v.url) required placeholder="https://example.com/webhooks" autocomplete="off";
                (errors.field("url"))
            }
            div.field {
                label for="description" { "Description" }
                input id="description" name="description" type="text" value=(v.description) autocomplete="off";
                (errors.field("description"))
            }
            fieldset.field {
                legend { "Events" }
                div.checks {
                    @for name in &names {
                        label {
                            input type="checkbox" name="events" value=(name) checked[v.events.contains(name)];
                            @if name == "*" { "every event" } @else { code { (name) } }
                        }
                    }
                }
                (errors.field("events"))
            }
            div.field {
                label for="signature_format" { "Signatures" }
                select id="signature_format" name="signature_format" {
                    option value="hex" selected[v.signature_format == "hex" || v.signature_format.is_empty()] { "HMAC, hex (X-Webhook-Signature)" }
                    option value="sha256_prefixed" selected[v.signature_format == "sha256_prefixed"] { "HMAC, sha256=<hex>" }
                    option value="ed25519" selected[v.signature_format == "ed25519"] { "Ed25519 (verify with a public key)" }
                }
                (errors.field("signature_format"))
            }
            div { button.primary type="submit" { (submit) } }
        }
    })
}

async fn new_form(app: web::Data<ControlState>, p: Portal) -> HttpResponse {
    let result = async {
        creatable(&p)?;
        let v = Values {
            url: String::new(),
            description: String::new(),
            events: vec!["*".into()],
            signature_format: "hex".into(),
        };
        let body = form(&app, &p, p.href("/endpoints"), &v, &FormErrors::default(), "Add the endpoint").await?;
        Ok(p.page("Add an endpoint", StatusCode::OK, body))
    }
    .await;
    p.respond(result)
}

fn creatable(p: &Portal) -> Result<(), ApiError> {
    p.require_manage()?;
    if !p.unrestricted() {
        return Err(ApiError::forbidden("this portal link is for some endpoints only and cannot add others"));
    }
    Ok(())
}

async fn create(app: web::Data<ControlState>, p: Portal, mut payload: web::Payload) -> HttpResponse {
    let result = async {
        creatable(&p)?;
        let fields = read_form(&mut payload).await.map_err(|e| ApiError::invalid_field("form", e.to_string()))?;
        let v = Values::read(&fields);
        let input = WebhookInput {
            url: Some(v.url.clone()),
            description: v.description(),
            events: v.events.clone(),
            max_retries: None,
            timeout: None,
            retry_policy: None,
            headers: None,
            is_active: Some(true),
            rate_limit_per_second: None,
            signature_format: v.format(),
            filter: None,
            mode: None,
            ordering: None,
        };
        match webhooks::create(&app, &p.principal, input).await {
            Ok(w) => endpoint_page(&app, &p, w, Extras::default(), StatusCode::CREATED).await,
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                let errors = FormErrors::from_api(&e);
                let body = form(&app, &p, p.href("/endpoints"), &v, &errors, "Add the endpoint").await?;
                Ok(p.page("Add an endpoint", errors.status(), body))
            }
            Err(e) => Err(e),
        }
    }
    .await;
    p.respond(result)
}

/// What an endpoint's page shows beside the endpoint.
#[derive(Default)]
struct Extras<'a> {
    /// The answer to a test just sent (`Err`: queued, no answer yet).
    tested: Option<Result<TestResult, TestSent>>,
    /// The settings form as sent, with what was wrong.
    edit: Option<(Values, FormErrors)>,
    notice: Option<&'a str>,
}

/// An endpoint with its settings, actions and recent deliveries; its secret
/// when it was just made or rotated.
async fn endpoint_page(
    app: &ControlState,
    p: &Portal,
    w: WebhookView,
    x: Extras<'_>,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let Extras { tested, edit, notice: code } = x;
    let id = w.id.to_string();
    let params = DeliveryParams {
        webhook_id: Some(id.clone()),
        status: None,
        event: None,
        since: None,
        until: None,
        limit: Some(50),
        cursor: None,
    };
    let log = deliveries::list(app, &p.principal, &params).await?;
    let (values, errors) = edit.unwrap_or_else(|| (Values::of(&w), FormErrors::default()));
    let edit_form = if p.manages() {
        Some(form(app, p, p.href(&format!("/endpoints/{id}")), &values, &errors, "Save").await?)
    } else {
        None
    };
    let secret = w.secret.clone();
    let body = html! {
        (notice(code))
        @if let Some(s) = &secret {
            div.notice.warn role="alert" { p { strong { "Copy the signing secret now: it is not shown again." } } }
            div.secret { label for="secret" { "Signing secret" } code #secret data-testid="secret" { (s) } }
        }
        @match &tested {
            Some(Ok(t)) => {
                div.card data-testid="test-result" {
                    h2 { "Test result" }
                    p {
                        @if t.succeeded { (status_badge("delivered")) } @else { (status_badge("failed")) }
                        " "
                        @match t.status_code { Some(c) => { "HTTP " (c) }, None => { "no answer" } }
                        " in " (t.latency_ms) " ms"
                    }
                    @if let Some(e) = &t.error { p { "Error: " (e) } }
                    @if let Some(b) = &t.response_excerpt { pre { (b) } }
                }
            },
            Some(Err(_)) => { p.notice.info role="status" data-testid="test-result" { "A test event was queued; its attempt will appear below." } },
            None => {},
        }
        dl.facts {
            dt { "URL" } dd { code { (w.url_label()) } }
            dt { "Status" } dd { (status_badge(health(&w))) @if let Some(r) = &w.disabled_reason { " " span.muted { (r) } } }
            dt { "Events" } dd { (w.events.join(", ")) }
            dt { "Signatures" } dd { (w.signature_format) }
            @if let Some(k) = &w.public_key { dt { "Ed25519 public key" } dd { code data-testid="public-key" { (k) } } }
        }
        @if p.manages() {
            div.actions {
                form method="post" action=(p.href(&format!("/endpoints/{id}/test"))) { button.primary type="submit" { "Send a test event" } }
                form method="post" action=(p.href(&format!("/endpoints/{id}/rotate-secret"))) { button type="submit" { "Rotate the secret" } }
                @if w.is_active {
                    form method="post" action=(p.href(&format!("/endpoints/{id}/disable"))) { button.danger type="submit" { "Disable" } }
                } @else {
                    form method="post" action=(p.href(&format!("/endpoints/{id}/enable"))) { button type="submit" { "Enable" } }
                }
                form method="post" action=(p.href(&format!("/endpoints/{id}/replay"))) { button type="submit" { "Replay dead letters" } }
            }
        }
        h2 { "Recent deliveries" }
        @if log.data.is_empty() {
            p.muted { "Nothing delivered yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Created" } } }
                    tbody {
                        @for d in &log.data {
                            tr {
                                td { a href=(p.href(&format!("/deliveries/{}", d.id))) { code { (d.event) } } }
                                td { (status_badge(&d.status)) }
                                td.num { (d.attempts) }
                                td { @match d.last_status_code { Some(c) => { (c) }, None => { span.muted { "—" } } } }
                                td { (time(d.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(f) = edit_form { h2 { "Settings" } (f) }
    };
    let title = w.description.clone().unwrap_or_else(|| "Endpoint".into());
    Ok(p.page(&title, status, body))
}

async fn show(
    app: web::Data<ControlState>,
    p: Portal,
    path: web::Path<(String, String)>,
    q: web::Query<Notice>,
) -> HttpResponse {
    let id = path.into_inner().1;
    let result = async {
        p.covers(&id)?;
        let w = webhooks::get(&app, &p.principal, parse_endpoint(&id)?).await?;
        endpoint_page(&app, &p, w, Extras { notice: q.notice.as_deref(), ..Default::default() }, StatusCode::OK).await
    }
    .await;
    p.respond(result)
}

/// The endpoint id of a portal path, checked against the link.
fn endpoint_id(p: &Portal, path: web::Path<(String, String)>) -> Result<String, ApiError> {
    let id = path.into_inner().1;
    p.covers(&id)?;
    p.require_manage()?;
    Ok(id)
}

async fn save(
    app: web::Data<ControlState>,
    p: Portal,
    path: web::Path<(String, String)>,
    mut payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let id = endpoint_id(&p, path)?;
        let fields = read_form(&mut payload).await.map_err(|e| ApiError::invalid_field("form", e.to_string()))?;
        let v = Values::read(&fields);
        let patch = WebhookPatch {
            url: Some(v.url.clone()),
            description: Some(v.description()),
            events: Some(v.events.clone()),
            signature_format: v.format(),
            ..Default::default()
        };
        match webhooks::update(&app, &p.principal, parse_endpoint(&id)?, patch).await {
            Ok(_) => Ok(see_other(p.href(&format!("/endpoints/{id}?notice=saved")))),
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                let w = webhooks::get(&app, &p.principal, parse_endpoint(&id)?).await?;
                let errors = FormErrors::from_api(&e);
                let status = errors.status();
                endpoint_page(&app, &p, w, Extras { edit: Some((v, errors)), ..Default::default() }, status).await
            }
            Err(e) => Err(e),
        }
    }
    .await;
    p.respond(result)
}

async fn rotate(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let result = async {
        let id = endpoint_id(&p, path)?;
        let w = webhooks::rotate(&app, &p.principal, parse_endpoint(&id)?, RotateSecret::default()).await?;
        endpoint_page(&app, &p, w, Extras::default(), StatusCode::OK).await
    }
    .await;
    p.respond(result)
}

async fn set_active(
    app: &ControlState,
    p: &Portal,
    path: web::Path<(String, String)>,
    active: bool,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(p, path)?;
    let patch = WebhookPatch { is_active: Some(active), ..Default::default() };
    webhooks::update(app, &p.principal, parse_endpoint(&id)?, patch).await?;
    let notice = if active { "enabled" } else { "disabled" };
    Ok(see_other(p.href(&format!("/endpoints/{id}?notice={notice}"))))
}

async fn enable(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let result = set_active(&app, &p, path, true).await;
    p.respond(result)
}

async fn disable(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let result = set_active(&app, &p, path, false).await;
    p.respond(result)
}

async fn test(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let result = async {
        let id = endpoint_id(&p, path)?;
        let (sent, answer) = deliveries::test_and_wait(&app, &p.principal, parse_endpoint(&id)?).await?;
        let w = webhooks::get(&app, &p.principal, parse_endpoint(&id)?).await?;
        let tested = match answer {
            Some(a) => Ok(a),
            None => Err(sent),
        };
        endpoint_page(&app, &p, w, Extras { tested: Some(tested), ..Default::default() }, StatusCode::OK).await
    }
    .await;
    p.respond(result)
}

async fn replay(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let result = async {
        let id = endpoint_id(&p, path)?;
        let filter = ReplayFilter { webhook_id: Some(id.clone()), ..Default::default() };
        let done = dead_letters::replay_all(&app, &p.principal, filter).await?;
        Ok(see_other(p.href(&format!("/endpoints/{id}?notice=replayed_{}", done.replayed))))
    }
    .await;
    p.respond(result)
}

async fn delivery(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let id = path.into_inner().1;
    let result = async {
        let d = deliveries::get(&app, &p.principal, delivery_id(&id)?).await?;
        if p.covers(&d.delivery.webhook_id.to_string()).is_err() {
            return Err(ApiError::not_found("delivery"));
        }
        let endpoint = p.href(&format!("/endpoints/{}", d.delivery.webhook_id));
        let retryable = p.manages() && matches!(d.delivery.status.as_str(), "failed" | "dead_letter");
        let payload = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
        let body = html! {
            p { a href=(endpoint) { "Back to the endpoint" } }
            dl.facts {
                dt { "Event" } dd { code { (d.delivery.event) } }
                dt { "Status" } dd { (status_badge(&d.delivery.status)) }
                dt { "Attempts" } dd { (d.delivery.attempts) }
                dt { "Next attempt" } dd { (opt_time(d.delivery.next_attempt_at)) }
            }
            @if retryable {
                form method="post" action=(p.href(&format!("/deliveries/{id}/retry"))) { button.primary type="submit" { "Retry now" } }
            }
            h2 { "Payload" }
            pre { (payload) }
            h2 { "Attempts" }
            @for a in &d.attempt_log {
                div.card data-testid="attempt" {
                    h3 { "Attempt " (a.attempt) " · " @if a.succeeded { (status_badge("delivered")) } @else { (status_badge("failed")) } }
                    p {
                        @match a.status_code { Some(c) => { "HTTP " (c) }, None => { "no answer" } }
                        " in " (a.latency_ms) " ms, " (time(a.created_at))
                    }
                    @if let Some(e) = &a.error { p { "Error: " (e) } }
                    @if let Some(b) = &a.response_body { h3 { "Response" } pre { (b) } }
                }
            }
        };
        Ok(p.page("Delivery", StatusCode::OK, body))
    }
    .await;
    p.respond(result)
}

async fn retry(app: web::Data<ControlState>, p: Portal, path: web::Path<(String, String)>) -> HttpResponse {
    let id = path.into_inner().1;
    let result = async {
        p.require_manage()?;
        let d = deliveries::get(&app, &p.principal, delivery_id(&id)?).await?;
        p.covers(&d.delivery.webhook_id.to_string()).map_err(|_| ApiError::not_found("delivery"))?;
        deliveries::retry(&app, &p.principal, delivery_id(&id)?).await?;
        Ok(see_other(p.href(&format!("/endpoints/{}?notice=retried", d.delivery.webhook_id))))
    }
    .await;
    p.respond(result)
}

async fn catalogue(app: web::Data<ControlState>, p: Portal) -> HttpResponse {
    let result = async {
        let types = event_types::list(&app, &p.principal).await?;
        let body = html! {
            p.muted { "Every delivery is a JSON document " code { "{\"event\", \"timestamp\", \"data\"}" } "; " code { "data" } " follows the event type's schema." }
            @for t in &types {
                section.card {
                    h2 { code { (t.name) } }
                    @if let Some(d) = &t.description { p { (d) } }
                    pre.schema { (serde_json::to_string_pretty(&t.schema).unwrap_or_default()) }
                }
            }
        };
        Ok(p.page("Event types", StatusCode::OK, body))
    }
    .await;
    p.respond(result)
}
