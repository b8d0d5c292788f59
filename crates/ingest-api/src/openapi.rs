//! The ingest API's OpenAPI document.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline ingest API",
        description = "Accepts lead events and hands them to the delivery workers. An event is acknowledged (202) only once it and its deliveries are committed.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::events::ingest_new_lead,
        crate::routes::events::ingest_lead_update,
        crate::routes::events::ingest_event,
        crate::routes::events::list_events,
        crate::routes::events::get_event,
    ),
    components(schemas(
        hookline_service_kit::error::Problem,
        hookline_service_kit::error::FieldError,
        crate::routes::events::Accepted,
        crate::routes::events::Lead,
        crate::routes::events::LeadUpdate,
        crate::routes::events::EventInput,
        crate::routes::events::EventView,
        crate::routes::events::EventDetail,
        crate::routes::events::EventDelivery,
    )),
    security(("api_key" = []), ("api_key_header" = [])),
    tags((name = "Events", description = "Lead events and custom events"))
)]
pub struct IngestApiDoc;

pub fn spec() -> utoipa::openapi::OpenApi {
    hookline_service_kit::docs::add_security(IngestApiDoc::openapi())
}
