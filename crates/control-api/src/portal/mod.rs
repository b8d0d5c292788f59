//! The embeddable portal at `/portal/{token}`: an organisation's customers
//! manage their own endpoints inside the host product, in an iframe.
//!
//! The link's token is the only credential (no cookie, so nothing third-party
//! for the browser to block and nothing another site can ride on). Pages are
//! rendered on the server without scripts and call the same operations as the
//! JSON API with the session's principal; a session limited to some
//! endpoints answers 404 for every other id. Framing is allowed only from the
//! organisation's `portal_origins`.

mod pages;

use std::future::Future;
use std::pin::Pin;

use crate::state::ControlState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use chrono::Utc;
use hookline_domain::id::EndpointId;
use hookline_domain::scope::{Role, Scope};
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;
use hookline_store::orgs::Org;
use hookline_store::portal::PortalSessionRow;
use maud::{html, Markup, DOCTYPE};
use ring::rand::SecureRandom;

/// What a portal link may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Manage,
    View,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manage" => Some(Self::Manage),
            "view" => Some(Self::View),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manage => "manage",
            Self::View => "view",
        }
    }

    /// The scopes the link acts with; the key that makes it must hold them all.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Self::Manage => &[Scope::WebhooksRead, Scope::DeliveriesRead, Scope::WebhooksWrite, Scope::DeliveriesRetry],
            Self::View => &[Scope::WebhooksRead, Scope::DeliveriesRead],
        }
    }

    pub fn role(self) -> Role {
        match self {
            Self::Manage => Role::ReadWrite,
            Self::View => Role::ReadOnly,
        }
    }
}

const TOKEN_PREFIX: &str = "pst_";

/// A new link token and the hash that is stored.
pub fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("system random source failed");
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

/// Where links point: `HOOKLINE_PUBLIC_URL`, else the request's scheme and host.
pub fn public_base(app: &ControlState, req: &HttpRequest) -> String {
    match &app.settings.public_url {
        Some(u) => u.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// An origin that may frame the portal, as CSP writes it: `scheme://host[:port]`.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let bad =
        || format!("`{}` is not an origin like https://app.example.com", text.chars().take(100).collect::<String>());
    let url = url::Url::parse(text.trim()).map_err(|_| bad())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

/// `#rrggbb`.
pub fn is_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// An https logo URL, and its origin for `img-src`.
pub fn parse_logo(text: &str) -> Option<(url::Url, String)> {
    let url = url::Url::parse(text).ok()?;
    if url.scheme() != "https" || url.host_str().is_none() || text.len() > 2000 || !url.username().is_empty() {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    Some((url, origin))
}

/// An open portal session: who it acts as and what it may see.
pub struct Portal {
    pub token: String,
    pub session: PortalSessionRow,
    pub principal: Principal,
    pub mode: Mode,
    pub org: Org,
}

impl Portal {
    /// `/portal/{token}` followed by `rest`.
    pub fn href(&self, rest: &str) -> String {
        format!("/portal/{}{rest}", self.token)
    }

    pub fn manages(&self) -> bool {
        self.mode == Mode::Manage
    }

    /// Whether the link covers every endpoint (and may create new ones).
    pub fn unrestricted(&self) -> bool {
        self.session.webhook_ids.is_none()
    }

    /// Refuses (404, as for another organisation's id) an endpoint the link does not cover.
    pub fn covers(&self, id: &str) -> Result<(), ApiError> {
        let Some(allowed) = &self.session.webhook_ids else { return Ok(()) };
        match EndpointId::parse(id) {
            Ok(e) if allowed.contains(&e.as_uuid()) => Ok(()),
            _ => Err(ApiError::not_found("webhook endpoint")),
        }
    }

    pub fn require_manage(&self) -> Result<(), ApiError> {
        if self.manages() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this portal link is for viewing only"))
        }
    }

    /// A page of this portal, with the organisation's framing and theme.
    pub fn page(&self, title: &str, status: StatusCode, body: Markup) -> HttpResponse {
        let logo = self.org.portal_logo_url.as_deref().and_then(parse_logo);
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (title) " · Webhooks" }
                    link rel="stylesheet" href="/portal/assets/portal.css";
                    link rel="stylesheet" href=(self.href("/theme.css"));
                }
                body.portal {
                    header.top {
                        @if let Some((url, _)) = &logo { img.logo src=(url.as_str()) alt=""; }
                        span.brand { "Webhooks" }
                        nav aria-label="Portal" {
                            ul {
                                li { a href=(self.href("")) { "Endpoints" } }
                                li { a href=(self.href("/event-types")) { "Event types" } }
                            }
                        }
                        span.who { span.badge.role data-testid="mode" { (self.mode.as_str()) } }
                    }
                    main #main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        };
        let mut res = HttpResponse::build(status).content_type("text/html; charset=utf-8").body(markup.into_string());
        secure(&mut res, &self.org.portal_origins, logo.as_ref().map(|(_, o)| o.as_str()));
        res
    }

    /// The page for a failed operation.
    pub fn fail(&self, e: ApiError) -> HttpResponse {
        let p = e.problem();
        let message = p.detail.unwrap_or(p.title);
        self.page(
            e.status.canonical_reason().unwrap_or("Error"),
            e.status,
            html! {
                p.notice.error role="alert" data-testid="error" { (message) }
                p { a href=(self.href("")) { "Back to the endpoints" } }
            },
        )
    }

    /// The page of `result`, or the page of its error.
    pub fn respond(&self, result: Result<HttpResponse, ApiError>) -> HttpResponse {
        result.unwrap_or_else(|e| self.fail(e))
    }
}

/// The portal's security headers: framing only from `origins`, nothing
/// loaded from elsewhere but the logo, no referrer (the link is the credential).
fn secure(res: &mut HttpResponse, origins: &[String], logo_origin: Option<&str>) {
    let ancestors = if origins.is_empty() { "'none'".to_owned() } else { origins.join(" ") };
    let img = match logo_origin {
        Some(o) => format!("'self' data: {o}"),
        None => "'self' data:".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src {img}; form-action 'self'; frame-ancestors {ancestors}; base-uri 'none'"
    );
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_str(&csp).expect("CSP is header-safe"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
}

/// A link that opens nothing: unknown, expired or revoked.
#[derive(Debug)]
pub struct Closed {
    status: StatusCode,
    message: &'static str,
    origins: Vec<String>,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

impl ResponseError for Closed {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "Link closed" }
                    link rel="stylesheet" href="/portal/assets/portal.css";
                }
                body.portal.bare { main #main { h1 { "This link is closed" } p.notice.error role="alert" data-testid="error" { (self.message) } } }
            }
        };
        let mut res =
            HttpResponse::build(self.status).content_type("text/html; charset=utf-8").body(markup.into_string());
        secure(&mut res, &self.origins, None);
        res
    }
}

impl From<ApiError> for Closed {
    fn from(_: ApiError) -> Self {
        Closed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The portal is unavailable just now; try again shortly.",
            origins: Vec::new(),
        }
    }
}

impl From<diesel::result::Error> for Closed {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::from_db(e).into()
    }
}

impl FromRequest for Portal {
    type Error = Closed;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let app = req
                .app_data::<web::Data<ControlState>>()
                .cloned()
                .ok_or_else(|| Closed::from(ApiError::internal("ControlState missing")))?;
            let token = req.match_info().get("token").unwrap_or_default().to_owned();
            let closed = |origins: Vec<String>| Closed {
                status: StatusCode::UNAUTHORIZED,
                message: "This portal link has expired or was revoked. Ask for a new one where you opened it.",
                origins,
            };
            if !token.starts_with(TOKEN_PREFIX) || token.len() > 100 {
                return Err(closed(Vec::new()));
            }
            let mut conn = app.conn().await?;
            let Some(session) = hookline_store::portal::by_token(&mut conn, &token_hash(&token)).await? else {
                return Err(closed(Vec::new()));
            };
            let Some(org) = hookline_store::orgs::get(&mut conn, session.org_id).await? else {
                return Err(closed(Vec::new()));
            };
            if session.revoked_at.is_some() || session.expires_at <= Utc::now() {
                return Err(closed(org.portal_origins));
            }
            let ip = hookline_service_kit::auth::client_ip(&req, &app.settings.trusted_proxies);
            let principal = crate::usecases::portal_sessions::principal_for(&session, ip);
            let mode = Mode::parse(&session.mode).unwrap_or(Mode::View);
            Ok(Portal { token, session, principal, mode, org })
        })
    }
}

/// Mounts `/portal`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/portal").route("/assets/portal.css", web::get().to(stylesheet)).configure(pages::configure),
    );
}

const ADMIN_CSS: &str = include_str!("../../assets/admin.css");
const PORTAL_CSS: &str = include_str!("../../assets/portal.css");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(format!("{ADMIN_CSS}\n{PORTAL_CSS}"))
}

/// The organisation's theme: CSS variables only.
pub fn theme_css(org: &Org) -> String {
    match org.portal_accent_color.as_deref().filter(|c| is_colour(c)) {
        Some(c) => format!(":root {{ --accent: {c}; }}\n"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_plain_scheme_host_port() {
        assert_eq!(parse_origin("https://crm.example.com").unwrap(), "https://crm.example.com");
        assert_eq!(parse_origin("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        for bad in ["crm.example.com", "https://crm.example.com/app", "ftp://x.example", "https://u:p@x.example", "*"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn colours_and_logos() {
        assert!(is_colour("#2450c8") && !is_colour("red") && !is_colour("#2450c8; x"));
        assert!(parse_logo("https://cdn.example.com/l.png").is_some());
        assert!(parse_logo("http://cdn.example.com/l.png").is_none());
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_eq!(ha, token_hash(&a));
        assert_ne!(ha, a.as_bytes());
    }
}
