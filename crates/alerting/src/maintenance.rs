//! Scheduled work, on one alerting instance at a time (a Postgres advisory
//! lock held on a dedicated connection): retention in bounded batches, the
//! time-based auto-disable rule, and platform-level warnings.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use hookline_service_kit::caches::Topic;

use crate::metrics::RETENTION_DELETED;
use crate::{rules, Alerting};

const LOCK_ID: i64 = 7_243_010;
const BATCH: i64 = 5_000;
/// Expired or revoked keys keep their hash this long, then it is scrubbed.
pub const KEY_SCRUB_DAYS: i32 = 30;

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// What one maintenance pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub deliveries: usize,
    pub events: usize,
    pub key_hashes: usize,
    pub endpoint_secrets: usize,
    pub bookkeeping: usize,
}

/// Runs one pass if no other instance is; None when another holds the lock.
pub async fn run_once(a: &Alerting) -> anyhow::Result<Option<Removed>> {
    let url = a.state.settings.database_url.expose().clone();
    let mut lock_conn = hookline_store::db::connect(&url).await?;
    let l: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<diesel::sql_types::BigInt, _>(LOCK_ID)
        .get_result(&mut lock_conn)
        .await?;
    if !l.locked {
        return Ok(None);
    }
    let result = pass(a).await;
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(LOCK_ID)
        .execute(&mut lock_conn)
        .await;
    result.map(Some)
}

async fn pass(a: &Alerting) -> anyhow::Result<Removed> {
    let pool = &a.state.pool;
    let mut removed = Removed::default();
    // Retention, a batch at a time so no transaction holds many locks for long.
    loop {
        let mut c = pool.get().await.context("database pool")?;
        let n = hookline_store::retention::delete_old_deliveries(&mut c, BATCH).await?;
        removed.deliveries += n;
        if (n as i64) < BATCH || a.state.cancel.is_cancelled() {
            break;
        }
    }
    loop {
        let mut c = pool.get().await.context("database pool")?;
        let n = hookline_store::retention::delete_old_events(&mut c, BATCH).await?;
        removed.events += n;
        if (n as i64) < BATCH || a.state.cancel.is_cancelled() {
            break;
        }
    }
    {
        let mut c = pool.get().await.context("database pool")?;
        removed.key_hashes = hookline_store::retention::scrub_dead_key_hashes(&mut c, KEY_SCRUB_DAYS).await?;
        removed.endpoint_secrets =
            hookline_store::retention::scrub_deleted_endpoint_secrets(&mut c, KEY_SCRUB_DAYS).await?;
        removed.bookkeeping = hookline_store::retention::prune_bookkeeping(&mut c, 7).await?;
        let idle = chrono::Duration::seconds(a.state.settings.admin_session_idle_secs as i64);
        removed.bookkeeping += hookline_store::sessions::prune(&mut c, idle).await?;
        removed.bookkeeping += hookline_store::portal::delete_ended(&mut c).await?;
    }
    for (kind, n) in [
        ("deliveries", removed.deliveries),
        ("events", removed.events),
        ("key_hashes", removed.key_hashes),
        ("endpoint_secrets", removed.endpoint_secrets),
        ("bookkeeping", removed.bookkeeping),
    ] {
        RETENTION_DELETED.with_label_values(&[kind]).inc_by(n as u64);
    }
    if removed != Removed::default() {
        tracing::info!(?removed, "retention pass");
    }
    // Scrubbed keys expired or were revoked long ago: cached copies refuse themselves.

    // Endpoints failing for too long without any outcome arriving to trigger the rule.
    let stale = {
        let mut c = pool.get().await.context("database pool")?;
        hookline_store::alerts::stale_failing(&mut c).await?
    };
    for st in stale {
        let mut c = pool.get().await.context("database pool")?;
        let mut j = rules::Judging::default();
        let settings = c
            .transaction::<_, diesel::result::Error, _>(async |c| {
                let s = j.settings(c, st.org_id).await?;
                let reason = format!("no successful delivery for {} hours", st.hours);
                rules::disable(c, &mut j, &s, st.org_id, st.endpoint_id, &reason, false).await?;
                j.finish(c).await?;
                Ok(s)
            })
            .await?;
        a.state.caches.invalidate(Topic::Endpoint { org: st.org_id, id: st.endpoint_id }).await;
        a.notifier.dispatch(&a.state, &settings, std::mem::take(&mut j.notices)).await;
    }
    Ok(removed)
}

/// Platform-level thresholds, for operators rather than tenants: logged as
/// warnings (the same conditions are Prometheus alert rules in deploy/prometheus).
pub const DLQ_WARN: u32 = 100;
pub const OUTBOX_LAG_WARN_SECS: i64 = 60;

async fn watch_platform(a: &Alerting) {
    if let Ok(ch) = a.state.broker.channel().await {
        let opts = hookline_broker::lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        if let Ok(q) = ch.queue_declare(hookline_broker::topology::QUEUE_DEAD.into(), opts, Default::default()).await {
            if q.message_count() > DLQ_WARN {
                tracing::warn!(
                    alert = "dead_letter_queue_depth",
                    depth = q.message_count(),
                    threshold = DLQ_WARN,
                    "the dead-letter queue is deep"
                );
            }
        }
    }
    if let Ok(mut c) = a.state.pool.get().await {
        if let Ok((pending, Some(oldest))) = hookline_store::outbox::backlog(&mut c).await {
            let lag = (chrono::Utc::now() - oldest).num_seconds();
            if lag > OUTBOX_LAG_WARN_SECS {
                tracing::warn!(
                    alert = "outbox_lag",
                    lag_seconds = lag,
                    pending,
                    threshold = OUTBOX_LAG_WARN_SECS,
                    "the outbox relay is behind"
                );
            }
        }
    }
}

pub fn spawn(a: Arc<Alerting>) -> tokio::task::JoinHandle<()> {
    let counter = a.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(mut c) = counter.state.pool.get().await {
                if let Ok(n) = hookline_store::dead_letters::unresolved(&mut c).await {
                    crate::metrics::DLQ_SIZE.set(n);
                }
            }
            tokio::select! {
                _ = counter.state.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            }
        }
    });
    let watcher = a.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = watcher.state.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            watch_platform(&watcher).await;
        }
    });
    tokio::spawn(async move {
        let every = Duration::from_secs(a.state.settings.maintenance_interval_secs);
        loop {
            tokio::select! {
                _ = a.state.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = run_once(&a).await {
                tracing::warn!(error = format!("{e:#}"), "maintenance pass failed");
            }
        }
    })
}
