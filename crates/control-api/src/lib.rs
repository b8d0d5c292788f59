//! Hookline's control plane: organisations, API keys, webhook endpoints,
//! event types, delivery history and replay, alerts, the audit log, and the
//! admin UI. [`configure`] mounts every route on an actix `ServiceConfig`, so
//! `hookline run all` can serve it beside the ingest API on one port.

pub mod admin;
pub mod audit;
pub mod openapi;
pub mod portal;
pub mod routes;
pub mod views;

use std::sync::Arc;

use actix_web::web;
use hookline_service_kit::kit::Kit;
use hookline_service_kit::ops::Probes;
use hookline_service_kit::server::ServerSpec;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8001";

/// Mounts the control API's routes (not `/health` and friends, which the
/// caller mounts once per server).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::orgs::configure(cfg);
    routes::keys::configure(cfg);
    routes::me::configure(cfg);
    routes::audit::configure(cfg);
    routes::alerts::configure(cfg);
    routes::analytics::configure(cfg);
    routes::deliveries::configure(cfg);
    routes::dead_letters::configure(cfg);
    routes::portal_sessions::configure(cfg);
    routes::erasures::configure(cfg);
    routes::filter_preview::configure(cfg);
    routes::pull::configure(cfg);
    routes::backfill::configure(cfg);
    routes::webhooks::configure(cfg);
    routes::event_types::configure(cfg);
    admin::configure(cfg);
    portal::configure(cfg);
}

/// What this API serves, for [`hookline_service_kit::server::build`].
pub fn server_spec(kit: &Kit) -> ServerSpec {
    ServerSpec { mounts: vec![configure], openapi: openapi::spec(), probes: Probes::for_kit(kit), index: index() }
}

/// What `GET /` answers.
pub fn index() -> serde_json::Value {
    serde_json::json!({
        "name": "Hookline control API",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready", "admin": "/admin"}
    })
}

/// Runs the control API alone until `kit.cancel` fires.
pub async fn run(kit: Arc<Kit>) -> anyhow::Result<()> {
    let addr = kit.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    hookline_service_kit::server::serve(kit.clone(), server_spec(&kit), addr).await
}
