//! Event types: the built-in ones and an organisation's own, with their schemas.

use chrono::Utc;
use hookline_domain::event::{EventType, PayloadSchema, BUILTIN_SCHEMAS};
use hookline_domain::id::EventTypeId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::caches::Topic;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_store::event_types::EventTypeRow;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::event_types::{CreateEventType, EventTypeView};
use crate::state::ControlState;

fn builtin_views() -> Vec<EventTypeView> {
    BUILTIN_SCHEMAS
        .iter()
        .map(|(name, text)| {
            let schema: serde_json::Value = serde_json::from_str(text).expect("built-in schema is JSON");
            EventTypeView {
                id: None,
                name: (*name).to_owned(),
                description: schema["description"].as_str().map(str::to_owned),
                builtin: true,
                schema,
                created_at: None,
            }
        })
        .collect()
}

fn custom_view(r: EventTypeRow) -> EventTypeView {
    EventTypeView {
        id: Some(EventTypeId::from_uuid(r.id)),
        name: r.name,
        description: r.description,
        builtin: false,
        schema: r.schema,
        created_at: Some(r.created_at),
    }
}

/// Registers a custom event type; its name must be free and not built in.
pub async fn create(app: &ControlState, auth: &Principal, body: CreateEventType) -> Result<EventTypeView, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let mut errors = Vec::new();
    let name = match EventType::parse(&body.name) {
        Ok(n) => Some(n),
        Err(e) => {
            errors.push(FieldError { field: "name".into(), message: e.to_string() });
            None
        }
    };
    if let Err(m) = PayloadSchema::compile(&body.schema) {
        errors.push(FieldError { field: "schema".into(), message: m });
    }
    if body.description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        errors.push(FieldError { field: "description".into(), message: "must be at most 1000 characters".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let name = name.expect("validated");
    if name.is_builtin() {
        return Err(ApiError::conflict("event_type_exists", format!("`{name}` is a built-in event type")));
    }
    let row = EventTypeRow {
        id: EventTypeId::new().as_uuid(),
        org_id: auth.org_id.as_uuid(),
        name: name.to_string(),
        description: body.description,
        schema: body.schema,
        created_at: Utc::now(),
    };
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let row = hookline_store::event_types::insert(c, &row).await.map_err(|e| {
            if hookline_store::db::is_unique_violation(&e, None) {
                ApiError::conflict("event_type_exists", format!("an event type named `{name}` already exists"))
            } else {
                e.into()
            }
        })?;
        trail
            .audit(auth.org_id, "event_type.created", "event_type", &row.name, json!({}))
            .invalidate(Topic::EventTypes(auth.org_id.as_uuid()));
        Ok(row)
    })
    .await?;
    Ok(custom_view(row))
}

/// The built-in types, then the organisation's own.
pub async fn list(app: &ControlState, auth: &Principal) -> Result<Vec<EventTypeView>, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    let mut conn = app.conn().await?;
    let mut data = builtin_views();
    data.extend(
        hookline_store::event_types::list(&mut conn, auth.org_id.as_uuid()).await?.into_iter().map(custom_view),
    );
    Ok(data)
}

pub async fn get(app: &ControlState, auth: &Principal, name: &str) -> Result<EventTypeView, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    if let Some(b) = builtin_views().into_iter().find(|b| b.name == name) {
        return Ok(b);
    }
    let mut conn = app.conn().await?;
    let row = hookline_store::event_types::get_by_name(&mut conn, auth.org_id.as_uuid(), name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(custom_view(row))
}

/// Deletes a custom type: events of it are refused from now on, and
/// endpoints keep their subscription lists.
pub async fn delete(app: &ControlState, auth: &Principal, name: &str) -> Result<(), ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    if BUILTIN_SCHEMAS.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::conflict("builtin_event_type", "built-in event types cannot be deleted"));
    }
    let mut conn = app.conn().await?;
    change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        if !hookline_store::event_types::delete(c, auth.org_id.as_uuid(), name).await? {
            return Err(ApiError::not_found("event type"));
        }
        trail
            .audit(auth.org_id, "event_type.deleted", "event_type", name, json!({}))
            .invalidate(Topic::EventTypes(auth.org_id.as_uuid()));
        Ok(())
    })
    .await
}
