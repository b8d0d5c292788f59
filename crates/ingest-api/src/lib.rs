//! Hookline's data plane: accepts events, fans them out to the subscribed
//! endpoints, writes event + deliveries + outbox in one transaction, and
//! relays the outbox to RabbitMQ.

pub mod openapi;
pub mod relay;
pub mod routes;
pub mod state;
pub mod writer;

use std::sync::Arc;

use actix_web::web;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::ops::{Detail, Probes};
use hookline_service_kit::server::{Limits, Mount, ServerSpec};

pub use state::IngestState;

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

/// The routes with the state they extract.
pub fn mount(state: Arc<IngestState>) -> Mount {
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::from(state.clone())).app_data(web::Data::from(state.auth.clone()));
        configure(cfg);
    })
}

pub fn server_spec(c: &Connections, state: Arc<IngestState>) -> ServerSpec {
    let mut probes = Probes::new(c).with_limiter(state.auth.limiter.clone());
    probes.details.push(outbox_detail());
    ServerSpec {
        service: "ingest-api",
        mounts: vec![mount(state)],
        openapi: openapi::spec(),
        probes,
        index: index(),
        limits: Limits::from_settings(&c.settings),
    }
}

pub fn index() -> serde_json::Value {
    serde_json::json!({
        "name": "Hookline ingest API",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready"}
    })
}

/// Runs the ingest API and its outbox relay until the process is cancelled.
pub async fn run(c: Connections) -> anyhow::Result<()> {
    let addr = c.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let auth = AuthState::build(&c);
    let state = IngestState::new(&c, auth.clone());
    let relay = relay::spawn(state.clone());
    let result =
        hookline_service_kit::server::serve(server_spec(&c, state), addr, c.settings.ops_listen, c.cancel.clone())
            .await;
    c.cancel.cancel();
    let _ = relay.await;
    auth.flush_usage().await;
    result
}
