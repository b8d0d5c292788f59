//! Heals retries whose message was lost (a crash between claiming a retry
//! and publishing it): failed deliveries long past their next attempt are
//! queued again through the outbox. Ordered lanes are looked at more often:
//! a worker takes a lane's next delivery on itself, with no broker message
//! to come back should it stop, and the lane waits on it.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

use crate::state::WorkerState;
use chrono::Utc;
use diesel_async::AsyncConnection;
use hookline_domain::status::OutboxReason;
use hookline_store::lanes::Publish;

/// How overdue a retry must be before it is presumed lost.
pub const OVERDUE: Duration = Duration::from_secs(300);
/// How often the lanes are looked at.
pub const LANE_SWEEP: Duration = Duration::from_secs(5);
/// How long a lane whose head settled may wait for its worker to release it.
pub const LANE_IDLE: Duration = Duration::from_secs(5);
/// How much longer than its endpoint's timeout a lane's head may go
/// unattempted, or its retry overdue, before its worker is presumed gone.
pub const LANE_SLACK: Duration = Duration::from_secs(10);

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
    Ok(n)
}

/// Moves on lanes whose head was left behind by a worker that stopped:
/// settled and not released, released and never attempted, or failed with
/// its retry never published. Returns how many lanes it moved.
pub async fn sweep_lanes(state: &WorkerState) -> anyhow::Result<usize> {
    let mut conn = state.pool.get().await.context("database pool")?;
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
    let requeued = hookline_store::lanes::requeue_unpublished_heads(&mut conn, LANE_SLACK, 500).await?;
    if requeued > 0 {
        hookline_store::outbox::announce(&mut conn).await?;
        tracing::warn!(count = requeued, "queued ordered deliveries released but never sent");
    }
    let lost = hookline_store::lanes::heads_with_lost_retries(&mut conn, LANE_SLACK, 500).await?;
    let retried = hookline_store::deliveries::requeue_many(&mut conn, &lost, OutboxReason::Retry).await?;
    if retried > 0 {
        tracing::warn!(count = retried, "queued again the retries of ordered deliveries that never came back");
    }
    Ok(released + requeued + retried)
}

/// Starts both sweeps, each on its own period, until the state is cancelled.
pub fn spawn(state: Arc<WorkerState>) {
    tokio::spawn(every(
        state.clone(),
        Duration::from_secs(60),
        "overdue retries",
        |s| async move { sweep_once(&s).await },
    ));
    tokio::spawn(every(state, LANE_SWEEP, "ordered lanes", |s| async move { sweep_lanes(&s).await }));
}

async fn every<F, Fut>(state: Arc<WorkerState>, period: Duration, what: &'static str, sweep: F)
where
    F: Fn(Arc<WorkerState>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if let Err(e) = sweep(state.clone()).await {
            tracing::warn!(error = format!("{e:#}"), "sweeping {what} failed");
        }
    }
}
