//! Heals retries whose message was lost (a crash between claiming a retry
//! and publishing it): failed deliveries long past their next attempt are
//! queued again through the outbox.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

use crate::state::WorkerState;
use chrono::Utc;
use diesel_async::AsyncConnection;
use hookline_store::lanes::Publish;

/// How overdue a retry must be before it is presumed lost.
pub const OVERDUE: Duration = Duration::from_secs(300);
/// How long a lane whose head settled may wait for its worker to release it.
pub const LANE_IDLE: Duration = Duration::from_secs(30);

pub async fn sweep_once(state: &WorkerState) -> anyhow::Result<usize> {
    let mut conn = state.pool.get().await.context("database pool")?;
    let cutoff = Utc::now() - chrono::Duration::from_std(OVERDUE)?;
    let n = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            hookline_store::deliveries::forget_settled_retries(c).await?;
            let rows = hookline_store::deliveries::overdue(c, cutoff, 500).await?;
            let mut n = 0;
            for r in &rows {
                if hookline_store::deliveries::requeue(c, r, hookline_domain::status::OutboxReason::Retry).await? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
    if n > 0 {
        tracing::warn!(count = n, "re-queued retries that never came back");
    }
    // One lane per statement: a statement holding several lanes' locks could deadlock with ingest.
    let heads = hookline_store::lanes::settled_heads(&mut conn, None, LANE_IDLE, 500).await?;
    let mut released = 0;
    for head in heads {
        if hookline_store::lanes::release(&mut conn, head, Publish::Relay).await?.is_some() {
            released += 1;
        }
    }
    if released > 0 {
        tracing::warn!(count = released, "moved on ordered lanes whose settled head was not released");
    }
    let requeued = hookline_store::lanes::requeue_unpublished_heads(&mut conn, LANE_IDLE, 500).await?;
    if requeued > 0 {
        hookline_store::outbox::announce(&mut conn).await?;
        tracing::warn!(count = requeued, "queued ordered deliveries released but never published");
    }
    Ok(n)
}

pub fn spawn(state: Arc<WorkerState>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(e) = sweep_once(&state).await {
                tracing::warn!(error = format!("{e:#}"), "sweeping overdue retries failed");
            }
        }
    });
}
