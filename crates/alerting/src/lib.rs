//! Hookline's alerting service: consumes delivery outcomes and dead letters,
//! evaluates the failure rules, opens and resolves alerts, and notifies.

use std::sync::Arc;

use hookline_service_kit::kit::Kit;
use hookline_service_kit::ops::{serve_ops, Probes};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9102";

/// Runs the alerting service until `kit.cancel` fires.
pub async fn run(kit: Arc<Kit>) -> anyhow::Result<()> {
    let addr = kit.settings.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e} (set HOOKLINE_LISTEN)"))?;
    tracing::info!(%addr, "alerting health and metrics listening");
    let ops = serve_ops(Probes::for_kit(&kit), listener, kit.cancel.clone())?;
    kit.cancel.cancelled().await;
    let _ = ops.await;
    Ok(())
}
