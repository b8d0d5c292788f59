//! Admin UI sign-in: server-side sessions, their cookie, and CSRF tokens.
//!
//! Signing in with an API key (role `admin`, or `read_only` for a view-only
//! session) creates a session row holding only a SHA-256 of a fresh random
//! token; the token itself goes to the browser in an HttpOnly, SameSite=Strict
//! cookie scoped to `/admin` (Secure over https). A new token is minted at
//! every sign-in, so a token planted before sign-in is worthless (no session
//! fixation). Each request re-reads the session and its key: revoking or
//! expiring the key ends the session at once, and a session idle for longer
//! than `HOOKLINE_ADMIN_SESSION_IDLE_SECS` is refused.
//!
//! Every state-changing request carries a CSRF token derived from the session
//! token (an HMAC, so it is never stored); [`AdminForm`] refuses a POST whose
//! token is missing or wrong before any handler runs.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use crate::state::ControlState;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, Utc};
use futures_util::StreamExt;
use hookline_domain::crypto::constant_time_eq;
use hookline_domain::id::{KeyId, OrgId};
use hookline_domain::scope::{Role, Scope};
use hookline_service_kit::auth::{client_ip, ip_allowed, Principal};
use hookline_service_kit::error::ApiError;
use hookline_store::keys::KeyRow;
use ring::rand::SecureRandom;

pub const SESSION_COOKIE: &str = "hookline_session";
pub const LOGIN_COOKIE: &str = "hookline_login";
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after sign-in whatever its activity.
pub const MAX_SESSION_HOURS: i64 = 12;
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"hookline-admin-session\0");
    ctx.update(token.as_bytes());
    ctx.finish().as_ref().to_vec()
}

fn csrf_for(token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, b"hookline-admin-csrf").as_ref())
}

fn secure(req: &HttpRequest) -> bool {
    kit_of(req).is_ok_and(|app| hookline_service_kit::auth::client_https(req, &app.settings.trusted_proxies))
}

/// A cookie for `/admin`: HttpOnly, SameSite=Strict, Secure over https.
pub fn cookie(req: &HttpRequest, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value).path("/admin").http_only(true).same_site(SameSite::Strict).secure(secure(req)).finish()
}

/// A cookie that makes the browser drop `name`.
pub fn removal(req: &HttpRequest, name: &'static str) -> Cookie<'static> {
    let mut c = cookie(req, name, String::new());
    c.make_removal();
    c
}

/// The signed-in caller of an admin page.
pub struct AdminSession {
    pub principal: Principal,
    pub key_name: String,
    token: String,
}

impl AdminSession {
    pub fn csrf(&self) -> String {
        csrf_for(&self.token)
    }

    pub fn can(&self, scope: Scope) -> bool {
        self.principal.scopes.contains(&scope)
    }

    pub fn org_id(&self) -> OrgId {
        self.principal.org_id
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    fn check_csrf(&self, presented: Option<&str>) -> Result<(), Refusal> {
        match presented {
            Some(t) if constant_time_eq(t.as_bytes(), self.csrf().as_bytes()) => Ok(()),
            _ => Err(Refusal::Csrf),
        }
    }

    /// Ends the session (sign-out).
    pub async fn end(&self, app: &ControlState) -> Result<(), ApiError> {
        let mut conn = app.conn().await?;
        hookline_store::sessions::delete(&mut conn, &token_hash(&self.token)).await?;
        Ok(())
    }
}

/// Why an admin request was not let through.
#[derive(Debug)]
pub enum Refusal {
    /// No valid session: sign in again.
    SignIn,
    /// A state-changing request without its CSRF token.
    Csrf,
    /// The form could not be read.
    BadForm(String),
    Api(ApiError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::SignIn => write!(f, "sign in first"),
            Refusal::Csrf => write!(f, "the form's CSRF token is missing or wrong; reload the page and try again"),
            Refusal::BadForm(m) => write!(f, "{m}"),
            Refusal::Api(e) => write!(f, "{}", e.detail.as_deref().unwrap_or(e.title)),
        }
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::SignIn => StatusCode::SEE_OTHER,
            Refusal::Csrf => StatusCode::FORBIDDEN,
            Refusal::BadForm(_) => StatusCode::BAD_REQUEST,
            Refusal::Api(e) => e.status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Refusal::SignIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/admin/login"))
                .insert_header(("HX-Redirect", "/admin/login"))
                .finish(),
            other => super::layout::error_page(other.status_code(), &other.to_string()),
        }
    }
}

impl From<diesel::result::Error> for Refusal {
    fn from(e: diesel::result::Error) -> Self {
        Refusal::Api(ApiError::from_db(e))
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

fn kit_of(req: &HttpRequest) -> Result<web::Data<ControlState>, Refusal> {
    req.app_data::<web::Data<ControlState>>()
        .cloned()
        .ok_or_else(|| Refusal::Api(ApiError::internal("ControlState missing")))
}

/// The key's principal, when the key may still be used from this address.
fn principal_of(row: &KeyRow, ip: Option<std::net::IpAddr>) -> Option<Principal> {
    let now = Utc::now();
    if row.revoked_at.is_some() || row.expires_at.is_some_and(|t| t <= now) {
        return None;
    }
    let role: Role = row.role.parse().ok()?;
    if !matches!(role, Role::Admin | Role::ReadOnly) {
        return None;
    }
    let nets: Vec<ipnet::IpNet> = row.allowed_ips.iter().filter_map(|s| s.parse().ok()).collect();
    if !ip_allowed(&nets, ip) {
        return None;
    }
    let scopes: BTreeSet<Scope> = row.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    Some(Principal {
        key_id: KeyId::from_uuid(row.id),
        org_id: OrgId::from_uuid(row.org_id),
        role,
        scopes,
        rate_limit_per_hour: row.rate_limit_per_hour.max(1) as u32,
        org_events_per_minute: None,
        org_strict_event_types: true,
        expires_at: row.expires_at,
        allowed_ips: nets,
        client_ip: ip,
    })
}

async fn load(req: &HttpRequest) -> Result<AdminSession, Refusal> {
    let app = kit_of(req)?;
    let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|v| !v.is_empty());
    let Some(token) = token else { return Err(Refusal::SignIn) };
    let idle = Duration::seconds(app.settings.admin_session_idle_secs as i64);
    let hash = token_hash(&token);
    let mut conn = app.conn().await?;
    let Some(row) = hookline_store::sessions::touch(&mut conn, &hash, idle).await? else {
        return Err(Refusal::SignIn);
    };
    let ip = client_ip(req, &app.settings.trusted_proxies);
    let Some(principal) = principal_of(&row, ip) else {
        hookline_store::sessions::delete(&mut conn, &hash).await?;
        return Err(Refusal::SignIn);
    };
    Ok(AdminSession { principal, key_name: row.name, token })
}

impl FromRequest for AdminSession {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { load(&req).await })
    }
}

/// A POSTed form from a signed-in session whose CSRF token matched. The
/// fields keep their order and repetitions (checkbox groups).
pub struct AdminForm {
    pub session: AdminSession,
    pub fields: Vec<(String, String)>,
}

impl AdminForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The trimmed value, `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Reads an urlencoded body of at most 64 KiB.
pub async fn read_form<S, E>(payload: &mut S) -> Result<Vec<(String, String)>, Refusal>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Refusal::BadForm(format!("could not read the form: {e}")))?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(Refusal::BadForm("the form is larger than 64 KiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

impl FromRequest for AdminForm {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let session = load(&req).await?;
            let fields = read_form(&mut payload).await?;
            let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let presented = fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.clone()).or(header);
            session.check_csrf(presented.as_deref())?;
            Ok(AdminForm { session, fields })
        })
    }
}

/// Signs a key in: checks it like the API does, then opens a session.
/// Answers the cookie to set, or why the key was refused.
pub async fn sign_in(app: &ControlState, req: &HttpRequest, raw: &str) -> Result<Cookie<'static>, String> {
    let ip = client_ip(req, &app.settings.trusted_proxies);
    let principal = app.auth.authenticator.authenticate(raw.trim(), ip).await.map_err(|e| match e.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
            e.detail.unwrap_or_else(|| "this API key cannot sign in".into())
        }
        _ => "signing in is not possible right now; try again shortly".into(),
    })?;
    if !matches!(principal.role, Role::Admin | Role::ReadOnly) {
        return Err("sign in with a key of role admin, or read_only for a view-only session".into());
    }
    let token = random_token();
    let now = Utc::now();
    let row = hookline_store::sessions::SessionRow {
        token_hash: token_hash(&token),
        org_id: principal.org_id.as_uuid(),
        key_id: principal.key_id.as_uuid(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::hours(MAX_SESSION_HOURS),
    };
    let result: Result<(), ApiError> = async {
        let mut conn = app.conn().await?;
        let actor = crate::audit::Actor::Key(&principal);
        crate::usecases::change(&mut conn, &app.caches, actor, async |c, trail| {
            hookline_store::sessions::insert(c, &row).await?;
            trail.audit(principal.org_id, "admin.signed_in", "key", principal.key_id, serde_json::json!({}));
            Ok(())
        })
        .await
    }
    .await;
    result.map_err(|_| "signing in is not possible right now; try again shortly".to_owned())?;
    Ok(cookie(req, SESSION_COOKIE, token))
}

/// Whether the login form's token matches its cookie.
pub fn login_csrf_ok(req: &HttpRequest, presented: Option<&str>) -> bool {
    let Some(expected) = req.cookie(LOGIN_COOKIE) else { return false };
    presented.is_some_and(|p| !p.is_empty() && constant_time_eq(p.as_bytes(), expected.value().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_never_equal_the_session_token() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_ne!(csrf_for(&a), csrf_for(&b));
        assert_ne!(csrf_for(&a), a);
        assert_eq!(csrf_for(&a), csrf_for(&a));
        assert_ne!(token_hash(&a), a.as_bytes());
    }
}
