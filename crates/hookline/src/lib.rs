//! The pieces of the `hookline` binary that tests use too: the whole-platform
//! OpenAPI document and `run all`.

use std::sync::Arc;

use hookline_control_api::ControlState;
use hookline_delivery_worker::state::WorkerState;
use hookline_ingest_api::IngestState;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::ops::Probes;
use hookline_service_kit::server::{Limits, ServerSpec};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Both APIs' documents merged: what the gateway (or `run all`) serves.
pub fn platform_spec() -> utoipa::openapi::OpenApi {
    let mut spec = hookline_control_api::openapi::spec();
    spec.merge(hookline_ingest_api::openapi::spec());
    spec.info.title = "Hookline API".into();
    spec.info.description = Some(
        "Organisation-scoped API keys and signed, reliable webhooks for lead events.\n\n\
         Authenticate with `Authorization: Bearer sk_live_…` (or `X-API-Key`). Every authenticated \
         response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds) \
         and the IETF draft's `RateLimit-Policy` and `RateLimit`; past the limit the answer is 429 with \
         `Retry-After`. Errors are `application/problem+json` (RFC 9457) with a stable `type` per kind. \
         Lists answer `{\"data\": [...], \"next_cursor\": ...}` and take `limit` (1-200, default 50) and `cursor`."
            .into(),
    );
    spec.info.version = env!("CARGO_PKG_VERSION").into();
    spec
}

/// Both APIs on one server, as the gateway would route them, sharing one
/// key checker and rate limiter; the ingest state is handed back for its relay.
pub fn all_in_one(c: &Connections) -> (ServerSpec, Arc<IngestState>) {
    let auth = AuthState::build(c);
    let control = ControlState::new(c, auth.clone());
    let ingest = IngestState::new(c, auth.clone());
    let mut probes = Probes::new(c).with_limiter(auth.limiter.clone());
    probes.details.push(hookline_ingest_api::outbox_detail());
    let spec = ServerSpec {
        service: "all",
        mounts: vec![hookline_control_api::mount(control), hookline_ingest_api::mount(ingest.clone())],
        openapi: platform_spec(),
        probes,
        index: serde_json::json!({
            "name": "Hookline",
            "version": env!("CARGO_PKG_VERSION"),
            "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready", "admin": "/admin"}
        }),
        limits: Limits::from_settings(&c.settings),
    };
    (spec, ingest)
}

/// Every service in one process: both APIs on one port, the workers and the
/// alerting service beside them.
pub async fn run_all(c: Connections) -> anyhow::Result<()> {
    let addr = c.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let (spec, ingest) = all_in_one(&c);
    let auth = ingest.auth.clone();
    let relay = hookline_ingest_api::relay::spawn(ingest);
    let worker = hookline_delivery_worker::start(WorkerState::new(&c))?;
    let alerting = hookline_alerting::start(&c)?;
    let result = hookline_service_kit::server::serve(spec, addr, c.settings.ops_listen, c.cancel.clone()).await;
    c.cancel.cancel();
    let _ = tokio::join!(relay, worker, alerting);
    auth.flush_usage().await;
    result
}
