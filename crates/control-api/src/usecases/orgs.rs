//! Organisations: created, limited and read by the operator.

use diesel_async::AsyncPgConnection;
use hookline_domain::api_key::KeyPepper;
use hookline_domain::id::OrgId;
use hookline_domain::scope::Role;
use hookline_service_kit::caches::{Caches, Topic};
use hookline_service_kit::error::ApiError;

use super::change;
use super::keys::{insert_key, NewKeySpec};
use crate::audit::Actor;
use crate::routes::orgs::{OrgView, UpdateOrg};
use crate::views::OrgCreated;

/// Applies quota changes (the API's PATCH and `hookline org set-quota`).
pub async fn update(
    conn: &mut AsyncPgConnection,
    caches: &Caches,
    id: OrgId,
    body: UpdateOrg,
    actor_ip: Option<std::net::IpAddr>,
) -> Result<OrgView, ApiError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, v: Option<i32>, lo: i32, hi: i32| {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            errors.push(hookline_service_kit::error::FieldError {
                field: field.into(),
                message: format!("must be between {lo} and {hi}"),
            });
        }
    };
    check("events_per_minute", body.events_per_minute.flatten(), 1, 100_000_000);
    check("max_endpoints", body.max_endpoints, 0, 100_000);
    check("max_keys", body.max_keys, 0, 100_000);
    check("retention_days", body.retention_days, 1, 3650);
    check(
        "max_key_rate_limit_per_hour",
        body.max_key_rate_limit_per_hour.flatten(),
        1,
        super::keys::MAX_RATE_LIMIT_PER_HOUR,
    );
    check("default_key_lifetime_days", body.default_key_lifetime_days.flatten(), 1, 3650);
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200) {
        errors.push(hookline_service_kit::error::FieldError {
            field: "name".into(),
            message: "must be 1 to 200 characters".into(),
        });
    }
    let portal_origins = match &body.portal_origins {
        Some(list) if list.len() > 20 => {
            errors.push(field_error("portal_origins", "at most 20 origins".into()));
            None
        }
        Some(list) => {
            let mut origins = Vec::with_capacity(list.len());
            for (i, o) in list.iter().enumerate() {
                match crate::portal::parse_origin(o) {
                    Ok(o) => origins.push(o),
                    Err(m) => errors.push(field_error(&format!("portal_origins[{i}]"), m)),
                }
            }
            Some(origins)
        }
        None => None,
    };
    if let Some(Some(c)) = &body.portal_accent_color {
        if !crate::portal::is_colour(c) {
            errors.push(field_error("portal_accent_color", "must be a colour like #2450c8".into()));
        }
    }
    if let Some(Some(u)) = &body.portal_logo_url {
        if crate::portal::parse_logo(u).is_none() {
            errors.push(field_error("portal_logo_url", "must be an https URL of at most 2000 characters".into()));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let changes = hookline_store::orgs::OrgChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        events_per_minute: body.events_per_minute,
        max_endpoints: body.max_endpoints,
        max_keys: body.max_keys,
        retention_days: body.retention_days,
        max_key_rate_limit_per_hour: body.max_key_rate_limit_per_hour,
        strict_event_types: body.strict_event_types,
        default_key_lifetime_days: body.default_key_lifetime_days,
        portal_origins,
        portal_accent_color: body.portal_accent_color,
        portal_logo_url: body.portal_logo_url,
        updated_at: None,
    };
    let details = serde_json::json!({
        "events_per_minute": changes.events_per_minute, "max_endpoints": changes.max_endpoints,
        "max_keys": changes.max_keys, "retention_days": changes.retention_days,
        "max_key_rate_limit_per_hour": changes.max_key_rate_limit_per_hour,
        "strict_event_types": changes.strict_event_types,
        "default_key_lifetime_days": changes.default_key_lifetime_days,
        "portal_origins": changes.portal_origins, "portal_accent_color": changes.portal_accent_color,
        "portal_logo_url": changes.portal_logo_url,
    });
    let org = change(conn, caches, Actor::Operator(actor_ip), async |c, trail| {
        let org = hookline_store::orgs::update(c, id.as_uuid(), changes)
            .await?
            .ok_or_else(|| ApiError::not_found("organisation"))?;
        // Keys carry their organisation's quota in the cache.
        trail.audit(id, "org.updated", "org", id, details).invalidate(Topic::Keys(id.as_uuid()));
        Ok(org)
    })
    .await?;
    Ok(org.into())
}

fn field_error(field: &str, message: String) -> hookline_service_kit::error::FieldError {
    hookline_service_kit::error::FieldError { field: field.into(), message }
}

/// Creates an organisation and its first admin key in one transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    caches: &Caches,
    pepper: &KeyPepper,
    default_limit: i32,
    name: &str,
    actor_ip: Option<std::net::IpAddr>,
) -> Result<OrgCreated, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid_field("name", "must be 1 to 200 characters"));
    }
    change(conn, caches, Actor::Operator(actor_ip), async |c, trail| {
        let org = hookline_store::orgs::insert(c, OrgId::new().as_uuid(), name).await?;
        let org_id = OrgId::from_uuid(org.id);
        let spec = NewKeySpec {
            name: "Admin key".into(),
            description: Some("Created with the organisation".into()),
            role: Role::Admin,
            scopes: Role::Admin.scopes(),
            rate_limit_per_hour: default_limit,
            allowed_ips: Vec::new(),
            expires_at: None,
        };
        let key = insert_key(c, pepper, org_id, None, spec).await?;
        trail.audit(org_id, "org.created", "org", org_id, serde_json::json!({"name": name})).audit(
            org_id,
            "key.created",
            "key",
            key.id,
            serde_json::json!({"role": "admin"}),
        );
        Ok(OrgCreated { id: org_id, name: org.name, created_at: org.created_at, api_key: key })
    })
    .await
}

/// An organisation and its quotas.
pub async fn get(conn: &mut AsyncPgConnection, id: OrgId) -> Result<OrgView, ApiError> {
    let org =
        hookline_store::orgs::get(conn, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("organisation"))?;
    Ok(org.into())
}
