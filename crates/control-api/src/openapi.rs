//! The control API's OpenAPI document.

use utoipa::OpenApi;

use crate::routes;
use crate::views;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline control API",
        description = "Organisations, API keys, webhook endpoints, event types, deliveries, dead letters, alerts and the audit log.\n\nEvery authenticated response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds) and the IETF draft's `RateLimit-Policy` and `RateLimit`; past the limit the answer is 429 with `Retry-After`. Errors are `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::orgs::create_org,
        routes::orgs::get_org,
        routes::orgs::update_org,
        routes::analytics::analytics,
        routes::keys::create_key,
        routes::keys::list_keys,
        routes::keys::get_key,
        routes::keys::update_key,
        routes::keys::revoke_key,
        routes::keys::rotate_key,
        routes::keys::key_usage,
        routes::me::me,
        routes::audit::list_audit,
        routes::webhooks::create_webhook,
        routes::webhooks::list_webhooks,
        routes::webhooks::get_webhook,
        routes::webhooks::replace_webhook,
        routes::webhooks::update_webhook,
        routes::webhooks::delete_webhook,
        routes::webhooks::rotate_secret,
        routes::filter_preview::filter_preview,
        routes::pull::pull_events,
        routes::backfill::create_backfill,
        routes::backfill::get_backfill,
        routes::deliveries::list_deliveries,
        routes::deliveries::get_delivery,
        routes::deliveries::retry_delivery,
        routes::deliveries::recover,
        routes::deliveries::send_test,
        routes::deliveries::stats,
        routes::dead_letters::list_dead_letters,
        routes::dead_letters::get_dead_letter,
        routes::dead_letters::replay_dead_letter,
        routes::dead_letters::resolve_dead_letter,
        routes::dead_letters::replay_matching,
        routes::portal_sessions::create_portal_session,
        routes::erasures::create_erasure,
        routes::portal_sessions::list_portal_sessions,
        routes::portal_sessions::revoke_portal_session,
        routes::alerts::list_alerts,
        routes::alerts::get_alert,
        routes::alerts::acknowledge,
        routes::alerts::get_settings,
        routes::alerts::put_settings,
        routes::event_types::create_event_type,
        routes::event_types::list_event_types,
        routes::event_types::get_event_type,
        routes::event_types::delete_event_type,
    ),
    components(schemas(
        hookline_service_kit::error::Problem,
        hookline_service_kit::error::FieldError,
        views::KeyView,
        views::OrgCreated,
        views::AuditView,
        routes::webhooks::WebhookView,
        routes::event_types::EventTypeView,
        routes::deliveries::DeliveryView,
        routes::deliveries::DeliveryDetail,
    )),
    security(("api_key" = []), ("api_key_header" = [])),
    tags(
        (name = "Organisations", description = "Operator-only tenant management"),
        (name = "API keys", description = "Organisation-scoped keys with roles, scopes, limits, rotation and revocation"),
        (name = "Webhooks", description = "Endpoints that receive signed deliveries, their secrets, history and replay"),
        (name = "Deliveries", description = "Delivery history, attempts, retry, recovery and test events"),
        (name = "Dead letters", description = "Deliveries that spent their retries: list, replay one or many, resolve"),
        (name = "Portal", description = "Short-lived links to an embeddable portal where an organisation's customers manage their own endpoints"),
        (name = "Erasure", description = "Erase what Hookline keeps about one lead (personal data)"),
        (name = "Analytics", description = "An organisation's delivery numbers over a window, from rollups"),
        (name = "Alerts", description = "Failure alerts, their acknowledgement, and the thresholds and channels that drive them"),
        (name = "Event types", description = "The built-in lead events and an organisation's own types"),
        (name = "Audit log", description = "Every change, who made it and from where"),
    )
)]
pub struct ControlApiDoc;

pub fn spec() -> utoipa::openapi::OpenApi {
    hookline_service_kit::docs::add_security(ControlApiDoc::openapi())
}
