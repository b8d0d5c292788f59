//! `/api/v1/event-types`: the built-in types and an organisation's own.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use hookline_domain::id::EventTypeId;
use hookline_service_kit::auth::Auth;
use hookline_service_kit::error::{ApiError, Problem};
use serde::{Deserialize, Serialize};

use crate::state::ControlState;
use crate::usecases::event_types;

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
    Ok(HttpResponse::Created().json(event_types::create(&app, &auth, body.into_inner()).await?))
}

/// List the built-in and custom event types
#[utoipa::path(
    get, path = "/api/v1/event-types", tag = "Event types",
    security(("api_key" = ["webhooks:read"])),
    responses((status = 200, description = "Every event type, built-in first", body = EventTypeList))
)]
pub async fn list_event_types(app: web::Data<ControlState>, auth: Auth) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(EventTypeList { data: event_types::list(&app, &auth).await?, next_cursor: None }))
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
    Ok(HttpResponse::Ok().json(event_types::get(&app, &auth, &name).await?))
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
    event_types::delete(&app, &auth, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}
