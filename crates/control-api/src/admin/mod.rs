//! The admin UI at `/admin`: everything the API does, in a browser.
//!
//! Pages are rendered on the server and call the same use cases as the
//! JSON API (`usecases::*`) with the session's principal, so scopes,
//! validation, quotas and the audit log apply unchanged. htmx (vendored, served from
//! here) refreshes the live regions when the event stream at `/admin/stream`
//! reports new deliveries or attempts. No page loads anything from another
//! origin, and the Content-Security-Policy says so.

mod alerts;
mod audit;
mod chart;
mod dashboard;
mod deliveries;
mod keys;
pub mod layout;
pub mod live;
pub mod session;
mod webhooks;

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use self::layout::{bare, notice};
use self::session::{login_csrf_ok, random_token, read_form, AdminForm, Refusal, LOGIN_COOKIE};
use crate::state::ControlState;

/// Mounts `/admin` and everything under it.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(
                DefaultHeaders::new()
                    .add((
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("", web::get().to(dashboard::show))
            .route("/", web::get().to(dashboard::show))
            .route("/dashboard/live", web::get().to(dashboard::live_region))
            .route("/login", web::get().to(login_form))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/assets/{name}", web::get().to(asset))
            .route("/stream", web::get().to(live::stream))
            .configure(keys::configure)
            .configure(webhooks::configure)
            .configure(deliveries::configure)
            .configure(alerts::configure)
            .route("/audit", web::get().to(audit::list))
            .default_service(web::to(|| async { layout::error_page(StatusCode::NOT_FOUND, "There is no such page.") })),
    );
}

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const APP_JS: &[u8] = include_bytes!("../../assets/app.js");
const CSS: &[u8] = include_bytes!("../../assets/admin.css");

async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, kind) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "admin.css" => (CSS, "text/css; charset=utf-8"),
        _ => return layout::error_page(StatusCode::NOT_FOUND, "There is no such file."),
    };
    HttpResponse::Ok().content_type(kind).insert_header((header::CACHE_CONTROL, "public, max-age=3600")).body(body)
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    notice: Option<String>,
}

fn login_page(req: &HttpRequest, status: StatusCode, error: Option<&str>, notice_code: Option<&str>) -> HttpResponse {
    let nonce = random_token();
    let mut res = bare(
        "Sign in",
        status,
        html! {
            (notice(notice_code))
            @if let Some(e) = error {
                p.notice.error role="alert" { (e) }
            }
            form.card method="post" action="/admin/login" {
                input type="hidden" name="csrf_token" value=(nonce);
                div.field {
                    label for="api_key" { "API key" }
                    input id="api_key" name="api_key" type="password" required autocomplete="off"
                        placeholder="sk_live_…" autofocus;
                    small.hint { "A key of role admin, or read_only for a view-only session. It is not kept in the browser." }
                }
                button.primary type="submit" { "Sign in" }
            }
        },
    );
    let _ = res.add_cookie(&session::cookie(req, LOGIN_COOKIE, nonce));
    res
}

async fn login_form(req: HttpRequest, q: web::Query<LoginQuery>) -> HttpResponse {
    login_page(&req, StatusCode::OK, None, q.notice.as_deref())
}

async fn login(
    app: web::Data<ControlState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, Refusal> {
    let fields = read_form(&mut payload).await?;
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if !login_csrf_ok(&req, get("csrf_token")) {
        return Ok(login_page(
            &req,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or was not sent from this site; please try again."),
            None,
        ));
    }
    let raw = get("api_key").unwrap_or_default();
    if raw.trim().is_empty() {
        return Ok(login_page(&req, StatusCode::UNPROCESSABLE_ENTITY, Some("Enter an API key."), None));
    }
    match session::sign_in(&app, &req, raw).await {
        Ok(cookie) => {
            let mut res = HttpResponse::SeeOther().insert_header((header::LOCATION, "/admin")).finish();
            let _ = res.add_cookie(&cookie);
            let _ = res.add_cookie(&session::removal(&req, LOGIN_COOKIE));
            Ok(res)
        }
        Err(message) => Ok(login_page(&req, StatusCode::UNAUTHORIZED, Some(&message), None)),
    }
}

async fn logout(app: web::Data<ControlState>, req: HttpRequest, form: AdminForm) -> Result<HttpResponse, Refusal> {
    form.session.end(&app).await?;
    let mut res = HttpResponse::SeeOther().insert_header((header::LOCATION, "/admin/login?notice=signed_out")).finish();
    let _ = res.add_cookie(&session::removal(&req, session::SESSION_COOKIE));
    Ok(res)
}

/// A redirect after a successful POST (post/redirect/get).
pub(crate) fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}
