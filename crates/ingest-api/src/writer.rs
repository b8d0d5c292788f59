//! Group commit for accepted events, and publishing right after it.
//!
//! Concurrent requests hand their events to a few writer tasks (see
//! `hookline_service_kit::batch`); each writes what has queued in one
//! statement (one round trip and one fsync for the lot) and answers every
//! request once it has committed. It then publishes the new deliveries to
//! RabbitMQ itself, with confirms, and marks their events' outbox rows published:
//! no relay pass sits between commit and delivery. Those rows are due for
//! the relay only after [`RELAY_GRACE`], so if this process dies or the
//! broker refuses before the rows are marked, the relay publishes them then:
//! at least once, never lost (the worker collapses a duplicate). Marking is
//! bookkeeping nobody waits for, so the marks of publishes close together
//! share one statement.

use anyhow::Context as _;
use hookline_service_kit::batch::BatchFailed;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookline_broker::publisher::Broker;
use hookline_service_kit::batch::Batcher;
use hookline_store::db::PgPool;
use hookline_store::events::{NewEvent, Written};
use hookline_store::outbox::Pending;

/// Events per shared transaction, at most.
pub const EVENT_BATCH: usize = 128;
/// Transactions in flight at once: while one commits, the next gathers.
pub const EVENT_WRITERS: usize = 2;
/// How long the relay leaves a written row to this process's own publish.
pub const RELAY_GRACE: Duration = Duration::from_secs(5);
/// How long published rows wait for others to be marked with them: far
/// inside [`RELAY_GRACE`].
pub const MARK_LINGER: Duration = Duration::from_millis(20);

/// Marks published outbox rows, the rows of several publishes at a time.
type Marker = Batcher<Vec<i64>, ()>;

fn marker(pool: PgPool) -> Marker {
    Marker::spawn_lingering(1, EVENT_BATCH, MARK_LINGER, move |batches: Vec<Vec<i64>>| {
        let pool = pool.clone();
        async move {
            let n = batches.len();
            let ids: Vec<i64> = batches.into_iter().flatten().collect();
            let marked = async {
                let mut conn = pool.get().await.context("database pool")?;
                hookline_store::outbox::mark_published(&mut conn, &ids).await.map_err(anyhow::Error::from)
            }
            .await;
            if let Err(e) = marked {
                // Published but not marked: the relay publishes them again once due,
                // and the worker recognises the copies.
                tracing::warn!(error = format!("{e:#}"), "marking published outbox rows failed");
            }
            vec![(); n]
        }
    })
}

/// Writes accepted events in shared transactions: each event comes back
/// with its delivery count, or is handed back to be written alone (its
/// idempotency key is taken, or the batch failed).
pub type EventWriter = Batcher<NewEvent, Result<usize, NewEvent>>;

/// Starts the writer tasks on the current runtime.
pub fn spawn(pool: PgPool, broker: Arc<Broker>) -> EventWriter {
    let marker = Arc::new(marker(pool.clone()));
    EventWriter::spawn(EVENT_WRITERS, EVENT_BATCH, move |batch: Vec<NewEvent>| {
        let pool = pool.clone();
        let broker = broker.clone();
        let marker = marker.clone();
        async move {
            let n = batch.len();
            match write(&pool, &batch).await {
                Ok((written, to_publish, to_kick)) => {
                    if !to_publish.is_empty() {
                        tokio::spawn(publish(marker, broker.clone(), to_publish));
                    }
                    if !to_kick.is_empty() {
                        // Off the writer's path: its callers are answered at commit.
                        tokio::spawn(async move { hookline_service_kit::lanes::kick(&broker, &pool, &to_kick).await });
                    }
                    batch
                        .into_iter()
                        .zip(written)
                        .map(|(event, w)| match w {
                            Written::Stored(deliveries) => Ok(deliveries),
                            Written::KeyTaken => Err(event),
                        })
                        .collect()
                }
                Err(error) => {
                    tracing::warn!(
                        error = error.report(),
                        events = n,
                        "a batch of events failed; each is retried alone"
                    );
                    batch.into_iter().map(Err).collect()
                }
            }
        }
    })
}

type WriteResult = (Vec<Written>, Vec<Pending>, Vec<(uuid::Uuid, String)>);

async fn write(pool: &PgPool, batch: &[NewEvent]) -> Result<WriteResult, BatchFailed> {
    let mut conn = pool.get().await.map_err(|e| BatchFailed::new("database pool", e))?;
    let relay_from = Utc::now() + chrono::Duration::from_std(RELAY_GRACE).expect("small");
    hookline_store::hot::fan_out::fan_out_many(&mut conn, batch, relay_from)
        .await
        .map_err(|e| BatchFailed::new("writing a batch of events", e))
}

/// Publishes committed deliveries and marks their rows; on any failure the
/// relay takes the rows once they are due.
async fn publish(marker: Arc<Marker>, broker: Arc<Broker>, rows: Vec<Pending>) {
    if let Err(e) = crate::relay::publish(&broker, &rows).await {
        tracing::warn!(error = format!("{e:#}"), "publishing new deliveries failed; the outbox relay will retry");
        return;
    }
    // An event's deliveries share one outbox row.
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    ids.dedup();
    marker.submit(ids).await;
}
