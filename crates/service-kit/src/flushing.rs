//! In-memory counters that are written to Postgres every few seconds
//! (API key usage, analytics rollups) share one flushing loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookline_store::db::PgPool;
use tokio_util::sync::CancellationToken;

pub trait Flush: Send + Sync + 'static {
    /// Names what is flushed, for the log line when a flush fails.
    const WHAT: &'static str;

    /// Writes what has accumulated; keeps it for the next flush on failure.
    fn flush(&self, pool: &PgPool) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Flushes `every` until `cancel`, then once more on the way out.
pub fn spawn_flusher<T: Flush>(this: Arc<T>, pool: PgPool, every: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let stop = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(every) => false,
            };
            if let Err(e) = this.flush(&pool).await {
                tracing::warn!(error = format!("{e:#}"), "flushing {} failed; will retry", T::WHAT);
            }
            if stop {
                return;
            }
        }
    });
}
