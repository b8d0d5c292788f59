//! Portal sessions: short-lived links that open the embeddable portal for
//! one organisation (or some of its endpoints), with no other credential.

use crate::state::ControlState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::id::{EndpointId, PortalSessionId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::portal::PortalSessionRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::portal::{self, Mode};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/portal-sessions", web::post().to(create_portal_session))
        .route("/api/v1/portal-sessions", web::get().to(list_portal_sessions))
        .route("/api/v1/portal-sessions/{id}", web::delete().to(revoke_portal_session));
}

/// The default and the longest life of a portal link, in seconds.
pub const DEFAULT_TTL_SECS: i64 = 3600;
pub const MAX_TTL_SECS: i64 = 86_400;
const MIN_TTL_SECS: i64 = 60;
const MAX_WEBHOOKS: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    /// Only these endpoints (`ep_…`); omitted, every endpoint of the organisation (and creating new ones).
    pub webhook_ids: Option<Vec<String>>,
    /// `manage` (default: create, edit, rotate secrets, disable, retry, replay, send tests) or `view` (read only).
    #[schema(example = "manage")]
    pub mode: Option<String>,
    /// 60 to 86400 (default 3600).
    #[schema(example = 3600, minimum = 60, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

/// A portal link. `url` is shown at creation only: it is the credential.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalSessionView {
    pub id: PortalSessionId,
    /// Open it, or put it in an iframe on one of the organisation's `portal_origins`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub mode: String,
    /// Null: every endpoint.
    pub webhook_ids: Option<Vec<EndpointId>>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl PortalSessionView {
    fn of(row: PortalSessionRow, url: Option<String>) -> Self {
        Self {
            id: PortalSessionId::from_uuid(row.id),
            url,
            mode: row.mode,
            webhook_ids: row.webhook_ids.map(|ids| ids.into_iter().map(EndpointId::from_uuid).collect()),
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        }
    }
}

/// Create a portal link
///
/// The answer's `url` opens the portal for this organisation, with no other
/// credential, until `expires_at` or revocation. A link can do no more than
/// the key that made it: `view` needs `webhooks:read` and `deliveries:read`,
/// `manage` also `webhooks:write` and `deliveries:retry`.
#[utoipa::path(
    post, path = "/api/v1/portal-sessions", tag = "Portal",
    request_body = CreatePortalSession,
    security(("api_key" = ["webhooks:read", "deliveries:read"])),
    responses(
        (status = 201, description = "Created; `url` is shown this once", body = PortalSessionView),
        (status = 403, description = "The key lacks a scope the mode needs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (mode, ttl_seconds, an unknown webhook id)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_portal_session(
    app: web::Data<ControlState>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<CreatePortalSession>,
) -> Result<HttpResponse, ApiError> {
    let base = portal::public_base(&app, &req);
    let view = create(&app, &auth, body.into_inner(), &base).await?;
    Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(view))
}

pub async fn create(
    app: &ControlState,
    auth: &Principal,
    body: CreatePortalSession,
    base: &str,
) -> Result<PortalSessionView, ApiError> {
    let mut errors = Vec::new();
    let mode = match body.mode.as_deref() {
        None => Some(Mode::Manage),
        Some(m) => Mode::parse(m).or_else(|| {
            errors.push(FieldError { field: "mode".into(), message: "must be manage or view".into() });
            None
        }),
    };
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
        errors.push(FieldError {
            field: "ttl_seconds".into(),
            message: format!("must be between {MIN_TTL_SECS} and {MAX_TTL_SECS}"),
        });
    }
    let mut ids = Vec::new();
    if let Some(list) = &body.webhook_ids {
        if list.is_empty() || list.len() > MAX_WEBHOOKS {
            errors.push(FieldError {
                field: "webhook_ids".into(),
                message: format!("must name 1 to {MAX_WEBHOOKS} endpoints, or be left out for all"),
            });
        }
        for (i, w) in list.iter().enumerate() {
            match EndpointId::parse(w) {
                Ok(id) => ids.push((i, id.as_uuid())),
                Err(e) => errors.push(FieldError { field: format!("webhook_ids[{i}]"), message: e.to_string() }),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mode = mode.expect("validated");
    for scope in mode.scopes() {
        auth.require(*scope)?;
    }
    let (token, hash) = portal::new_token();
    let now = Utc::now();
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, ApiError, _>(async |c| {
            let mut unknown = Vec::new();
            for (i, id) in &ids {
                if hookline_store::endpoints::get(c, principal.org_id.as_uuid(), *id).await?.is_none() {
                    unknown.push(FieldError {
                        field: format!("webhook_ids[{i}]"),
                        message: "no such webhook endpoint".into(),
                    });
                }
            }
            if !unknown.is_empty() {
                return Err(ApiError::validation(unknown));
            }
            let mut webhook_ids: Option<Vec<uuid::Uuid>> =
                body.webhook_ids.as_ref().map(|_| ids.iter().map(|(_, id)| *id).collect());
            if let Some(w) = webhook_ids.as_mut() {
                w.sort();
                w.dedup();
            }
            let row = PortalSessionRow {
                id: PortalSessionId::new().as_uuid(),
                org_id: principal.org_id.as_uuid(),
                token_hash: hash,
                mode: mode.as_str().to_owned(),
                webhook_ids,
                created_by_key_id: Some(principal.key_id.as_uuid()),
                created_at: now,
                expires_at: now + Duration::seconds(ttl),
                revoked_at: None,
            };
            let row = hookline_store::portal::insert(c, &row).await?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "portal_session.created",
                "portal_session",
                &PortalSessionId::from_uuid(row.id).to_string(),
                json!({"mode": row.mode, "webhook_ids": body.webhook_ids, "expires_at": row.expires_at}),
            )
            .await?;
            Ok(row)
        })
        .await?;
    Ok(PortalSessionView::of(row, Some(format!("{base}/portal/{token}"))))
}

/// List portal links, newest first
#[utoipa::path(
    get, path = "/api/v1/portal-sessions", tag = "Portal",
    params(PageParams),
    security(("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "A page of portal links (without their URLs)", body = ListResponse<PortalSessionView>))
)]
pub async fn list_portal_sessions(
    app: web::Data<ControlState>,
    auth: Auth,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let (limit, before) = q.resolve()?;
    let mut conn = app.conn().await?;
    let page = hookline_store::portal::list(&mut conn, auth.org_id.as_uuid(), before, limit).await?;
    let last = page.items.last().map(|r| r.id);
    let data = page.items.into_iter().map(|r| PortalSessionView::of(r, None)).collect();
    Ok(HttpResponse::Ok().json(ListResponse::new(data, page.has_more, last)))
}

/// Revoke a portal link
///
/// The link stops working at once, in every open page.
#[utoipa::path(
    delete, path = "/api/v1/portal-sessions/{id}", tag = "Portal",
    params(("id" = String, Path, description = "ps_… id")),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such portal link", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_portal_session(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let id = PortalSessionId::parse(&id).map_err(|_| ApiError::not_found("portal link"))?;
    let principal = auth.clone();
    let mut conn = app.conn().await?;
    conn.transaction::<_, ApiError, _>(async |c| {
        hookline_store::portal::revoke(c, principal.org_id.as_uuid(), id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("portal link"))?;
        audit::record(
            c,
            principal.org_id,
            Actor::Key(&principal),
            "portal_session.revoked",
            "portal_session",
            &id.to_string(),
            json!({}),
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The principal a portal session acts as: the organisation, the mode's scopes.
pub fn principal_for(row: &PortalSessionRow, client_ip: Option<std::net::IpAddr>) -> Principal {
    let mode = Mode::parse(&row.mode).unwrap_or(Mode::View);
    Principal {
        key_id: hookline_domain::id::KeyId::from_uuid(row.created_by_key_id.unwrap_or_default()),
        org_id: hookline_domain::id::OrgId::from_uuid(row.org_id),
        role: mode.role(),
        scopes: mode.scopes().iter().copied().collect(),
        rate_limit_per_hour: u32::MAX,
        org_events_per_minute: None,
        org_strict_event_types: true,
        expires_at: Some(row.expires_at),
        allowed_ips: Vec::new(),
        client_ip,
    }
}
