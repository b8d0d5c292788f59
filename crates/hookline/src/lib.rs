//! The pieces of the `hookline` binary that tests use too: the whole-platform
//! OpenAPI document and `run all`.

use std::sync::Arc;

use hookline_service_kit::kit::Kit;
use hookline_service_kit::ops::Probes;
use hookline_service_kit::server::ServerSpec;

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

/// Both APIs on one server, as the gateway would route them.
pub fn all_in_one_spec(kit: &Kit) -> ServerSpec {
    // Start the event writer on this (the main) runtime.
    hookline_ingest_api::writer::get(kit);
    let mut probes = Probes::for_kit(kit);
    probes.details.push(hookline_ingest_api::outbox_detail());
    ServerSpec {
        mounts: vec![hookline_control_api::configure, hookline_ingest_api::configure],
        openapi: platform_spec(),
        probes,
        index: serde_json::json!({
            "name": "Hookline",
            "version": env!("CARGO_PKG_VERSION"),
            "links": {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health", "ready": "/ready", "admin": "/admin"}
        }),
    }
}

/// Every service in one process: both APIs on one port, the workers and the
/// alerting service beside them.
pub async fn run_all(kit: Arc<Kit>) -> anyhow::Result<()> {
    let addr = kit.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let relay = hookline_ingest_api::relay::spawn(kit.clone());
    let worker = hookline_delivery_worker::start(kit.clone())?;
    let alerting = hookline_alerting::start(kit.clone())?;
    let result = hookline_service_kit::server::serve(kit.clone(), all_in_one_spec(&kit), addr).await;
    kit.cancel.cancel();
    let _ = tokio::join!(relay, worker, alerting);
    result
}
