//! `/api/v1/event-types`: the built-in types and an organisation's own.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::event::{EventType, PayloadSchema, BUILTIN_SCHEMAS};
use hookline_domain::id::EventTypeId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::caches::Topic;
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_store::event_types::EventTypeRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/event-types", web::post().to(create_event_type))
        .route("/api/v1/event-types", web::get().to(list_event_types))
        .route("/api/v1/event-types/{name}", web::get().to(get_event_type))
        .route("/api/v1/event-types/{name}", web::delete().to(delete_event_type));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "lead.assigned",
    "description": "A lead was assigned to a sales rep",
    "schema": {"type": "object", "required": ["id", "assignee"], "properties": {"id": {"type": "string"}, "assignee": {"type": "string"}}}
}))]
pub struct CreateEventType {
    /// Lowercase letters, digits, `_` and `.`, starting with a letter.
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema (2020-12) for the event's `data`.
    pub schema: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeView {
    /// Null for built-in types.
    pub id: Option<EventTypeId>,
    pub name: String,
    pub description: Option<String>,
    pub builtin: bool,
    pub schema: serde_json::Value,
    pub created_at: Option<DateTime<Utc>>,
}

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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventTypeView>,
    pub next_cursor: Option<String>,
}

/// Register a custom event type
#[utoipa::path(
    post, path = "/api/v1/event-types", tag = "Event types",
    request_body = CreateEventType,
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 201, description = "Created", body = EventTypeView),
        (status = 409, description = "The name is taken (or built in)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or schema", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_event_type(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<CreateEventType>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let body = body.into_inner();
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
    let principal = auth.0.clone();
    let mut conn = app.conn().await?;
    let result = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            let row = hookline_store::event_types::insert(c, &row).await?;
            audit::record(
                c,
                principal.org_id,
                Actor::Key(&principal),
                "event_type.created",
                "event_type",
                &row.name,
                json!({}),
            )
            .await?;
            Ok(row)
        })
        .await;
    let row = match result {
        Ok(r) => r,
        Err(e) if hookline_store::db::is_unique_violation(&e, None) => {
            return Err(ApiError::conflict(
                "event_type_exists",
                format!("an event type named `{name}` already exists"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    app.caches.invalidate(Topic::EventTypes(principal.org_id.as_uuid())).await;
    Ok(HttpResponse::Created().json(custom_view(row)))
}

/// List the built-in and custom event types
#[utoipa::path(
    get, path = "/api/v1/event-types", tag = "Event types",
    security(("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "Every event type, built-in first", body = EventTypeList))
)]
pub async fn list_event_types(app: web::Data<ControlState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(EventTypeList { data: list(&app, &auth).await?, next_cursor: None }))
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

/// Get an event type and its schema
#[utoipa::path(
    get, path = "/api/v1/event-types/{name}", tag = "Event types",
    params(("name" = String, Path)),
    security(("api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "The event type", body = EventTypeView),
        (status = 404, description = "No such event type", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event_type(
    app: web::Data<ControlState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    if let Some(b) = builtin_views().into_iter().find(|b| b.name == *name) {
        return Ok(HttpResponse::Ok().json(b));
    }
    let mut conn = app.conn().await?;
    let row = hookline_store::event_types::get_by_name(&mut conn, auth.org_id.as_uuid(), &name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(HttpResponse::Ok().json(custom_view(row)))
}

/// Delete a custom event type
///
/// Events of this type are no longer accepted; endpoints keep their subscription lists.
#[utoipa::path(
    delete, path = "/api/v1/event-types/{name}", tag = "Event types",
    params(("name" = String, Path)),
    security(("api_key" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such custom event type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Built-in types cannot be deleted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_event_type(
    app: web::Data<ControlState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    if BUILTIN_SCHEMAS.iter().any(|(n, _)| *n == name.as_str()) {
        return Err(ApiError::conflict("builtin_event_type", "built-in event types cannot be deleted"));
    }
    let principal = auth.0.clone();
    let name = name.into_inner();
    let mut conn = app.conn().await?;
    conn.transaction::<_, ApiError, _>(async |c| {
        if !hookline_store::event_types::delete(c, principal.org_id.as_uuid(), &name).await? {
            return Err(ApiError::not_found("event type"));
        }
        audit::record(
            c,
            principal.org_id,
            Actor::Key(&principal),
            "event_type.deleted",
            "event_type",
            &name,
            json!({}),
        )
        .await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate(Topic::EventTypes(principal.org_id.as_uuid())).await;
    Ok(HttpResponse::NoContent().finish())
}
