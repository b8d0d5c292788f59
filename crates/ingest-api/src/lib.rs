//! Hookline's data plane: accepts events, fans them out to the subscribed
//! endpoints, writes event + deliveries + outbox in one transaction, and
//! relays the outbox to RabbitMQ.

pub mod openapi;

use std::sync::Arc;

use actix_web::web;
use hookline_service_kit::kit::Kit;
use hookline_service_kit::ops::Probes;
use hookline_service_kit::server::ServerSpec;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8002";

/// Mounts the ingest API's routes.
pub fn configure(_cfg: &mut web::ServiceConfig) {}

pub fn server_spec(kit: &Kit) -> ServerSpec {
    ServerSpec { mounts: vec![configure], openapi: openapi::spec(), probes: Probes::for_kit(kit), index: index() }
}

pub fn index() -> serde_json::Value {
    serde_json::json!({
        "name": "Hookline ingest API",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready"}
    })
}

/// Runs the ingest API alone until `kit.cancel` fires.
pub async fn run(kit: Arc<Kit>) -> anyhow::Result<()> {
    let addr = kit.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    hookline_service_kit::server::serve(kit.clone(), server_spec(&kit), addr).await
}
