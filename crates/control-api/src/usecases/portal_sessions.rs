//! Portal links: short-lived sessions that open the portal for one
//! organisation, or some of its endpoints, with no other credential.

use chrono::{Duration, Utc};
use hookline_domain::id::{EndpointId, PortalSessionId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::portal::PortalSessionRow;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::portal::{self, Mode};
use crate::routes::portal_sessions::{CreatePortalSession, PortalSessionView, DEFAULT_TTL_SECS, MAX_TTL_SECS};
use crate::state::ControlState;

const MIN_TTL_SECS: i64 = 60;

const MAX_WEBHOOKS: usize = 100;

/// Issues a link for the mode's scopes, which the caller must hold.
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
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let mut unknown = Vec::new();
        for (i, id) in &ids {
            if hookline_store::endpoints::get(c, auth.org_id, EndpointId::from_uuid(*id)).await?.is_none() {
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
            org_id: auth.org_id.as_uuid(),
            token_hash: hash,
            mode: mode.as_str().to_owned(),
            webhook_ids,
            created_by_key_id: Some(auth.key_id.as_uuid()),
            created_at: now,
            expires_at: now + Duration::seconds(ttl),
            revoked_at: None,
        };
        let row = hookline_store::portal::insert(c, &row).await?;
        trail.audit(
            auth.org_id,
            "portal_session.created",
            "portal_session",
            PortalSessionId::from_uuid(row.id),
            json!({"mode": row.mode, "webhook_ids": body.webhook_ids, "expires_at": row.expires_at}),
        );
        Ok(row)
    })
    .await?;
    Ok(PortalSessionView::of(row, Some(format!("{base}/portal/{token}"))))
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

pub async fn list(
    app: &ControlState,
    auth: &Principal,
    q: &PageParams,
) -> Result<ListResponse<PortalSessionView>, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let (limit, before) = q.resolve()?;
    let mut conn = app.conn().await?;
    let page = hookline_store::portal::list(&mut conn, auth.org_id.as_uuid(), before, limit).await?;
    let last = page.items.last().map(|r| r.id);
    let data = page.items.into_iter().map(|r| PortalSessionView::of(r, None)).collect();
    Ok(ListResponse::new(data, page.has_more, last))
}

/// Ends the link at once, in every open page.
pub async fn revoke(app: &ControlState, auth: &Principal, id: PortalSessionId) -> Result<(), ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let mut conn = app.conn().await?;
    change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        hookline_store::portal::revoke(c, auth.org_id, id).await?.ok_or_else(|| ApiError::not_found("portal link"))?;
        trail.audit(auth.org_id, "portal_session.revoked", "portal_session", id, json!({}));
        Ok(())
    })
    .await
}
