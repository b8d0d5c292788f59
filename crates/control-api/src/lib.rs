//! Hookline's control plane: organisations, API keys, webhook endpoints,
//! event types, delivery history and replay, alerts, the audit log, and the
//! admin UI. `usecases` holds what each operation does (validation, the
//! transaction with its audit entries, cache invalidation); `routes`, `admin`
//! and `portal` only turn requests into calls of it. [`configure`] mounts
//! every route on an actix `ServiceConfig`, so `hookline run all` can serve
//! it beside the ingest API on one port.

pub mod admin;
pub mod audit;
pub mod openapi;
pub mod portal;
pub mod routes;
pub mod state;
pub mod usecases;
pub mod views;

use std::sync::Arc;

use actix_web::web;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::ops::Probes;
use hookline_service_kit::server::{Limits, Mount, ServerSpec};

pub use state::ControlState;

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

/// The routes with the state they extract.
pub fn mount(state: Arc<ControlState>) -> Mount {
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::from(state.clone())).app_data(web::Data::from(state.auth.clone()));
        configure(cfg);
    })
}

/// What this API serves, for [`hookline_service_kit::server::build`].
pub fn server_spec(c: &Connections, state: Arc<ControlState>) -> ServerSpec {
    ServerSpec {
        service: "control-api",
        probes: Probes::new(c).with_limiter(state.auth.limiter.clone()),
        mounts: vec![mount(state)],
        openapi: openapi::spec(),
        index: index(),
        limits: Limits::from_settings(&c.settings),
    }
}

/// What `GET /` answers.
pub fn index() -> serde_json::Value {
    serde_json::json!({
        "name": "Hookline control API",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready", "admin": "/admin"}
    })
}

/// Runs the control API alone until the process is cancelled.
pub async fn run(c: Connections) -> anyhow::Result<()> {
    let addr = c.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let auth = AuthState::build(&c);
    let state = ControlState::new(&c, auth.clone());
    let result =
        hookline_service_kit::server::serve(server_spec(&c, state), addr, c.settings.ops_listen, c.cancel.clone())
            .await;
    auth.flush_usage().await;
    result
}
