//! Hookline's data plane: accepts events, fans them out to the subscribed
//! endpoints, writes event + deliveries + outbox in one transaction, and
//! relays the outbox to RabbitMQ.

pub mod openapi;
pub mod relay;
pub mod routes;
pub mod writer;

use std::sync::Arc;

use actix_web::web;
use hookline_service_kit::kit::Kit;
use hookline_service_kit::ops::{Detail, Probes};
use hookline_service_kit::server::ServerSpec;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8002";

/// Mounts the ingest API's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::events::configure(cfg);
}

/// The outbox backlog, for `/ready`.
pub fn outbox_detail() -> Detail {
    Arc::new(|| {
        Box::pin(async {
            (
                "outbox".to_owned(),
                serde_json::json!({"lag_seconds": relay::OUTBOX_LAG.get(), "pending": relay::OUTBOX_PENDING.get()}),
            )
        })
    })
}

pub fn server_spec(kit: &Kit) -> ServerSpec {
    // Start the event writer on this (the main) runtime.
    writer::get(kit);
    let mut probes = Probes::for_kit(kit);
    probes.details.push(outbox_detail());
    ServerSpec { mounts: vec![configure], openapi: openapi::spec(), probes, index: index() }
}

pub fn index() -> serde_json::Value {
    serde_json::json!({
        "name": "Hookline ingest API",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready"}
    })
}

/// Runs the ingest API and its outbox relay until `kit.cancel` fires.
pub async fn run(kit: Arc<Kit>) -> anyhow::Result<()> {
    let addr = kit.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let relay = relay::spawn(kit.clone());
    let result = hookline_service_kit::server::serve(kit.clone(), server_spec(&kit), addr).await;
    kit.cancel.cancel();
    let _ = relay.await;
    result
}
