//! Heals retries whose message was lost (a crash between claiming a retry
//! and publishing it): failed deliveries long past their next attempt are
//! queued again through the outbox.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use hookline_service_kit::kit::Kit;

/// How overdue a retry must be before it is presumed lost.
pub const OVERDUE: Duration = Duration::from_secs(300);

pub async fn sweep_once(kit: &Kit) -> anyhow::Result<usize> {
    let mut conn = kit.pool.get().await.context("database pool")?;
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

pub fn spawn(kit: Arc<Kit>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = kit.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(e) = sweep_once(&kit).await {
                tracing::warn!(error = format!("{e:#}"), "sweeping overdue retries failed");
            }
        }
    });
}
