//! The outbox relay: publishes outbox rows to RabbitMQ with publisher
//! confirms, then marks them published. The new deliveries of one event
//! go out as one message (a `DeliveryBatch`), whatever the fan-out.
//!
//! New events' deliveries are published by the event writer right after
//! their commit (see [`crate::writer`]); their rows become due here only if
//! that did not happen in time. Everything else written to the outbox
//! (manual retries and replays, operational events) is published here as
//! soon as its commit is announced on Postgres' `LISTEN`/`NOTIFY` channel,
//! whichever process wrote it, or at the next poll.
//!
//! Each pass locks a batch of the oldest due rows with `FOR UPDATE SKIP
//! LOCKED` (so relays in several ingest instances never take the same
//! rows), publishes them, waits for every confirm, marks them and commits,
//! all on one connection in one transaction. If the process dies or the
//! broker refuses anything, the transaction rolls back and the next pass
//! publishes the rows again: at least once, never lost. Duplicates carry the
//! same delivery id and attempt number, and the worker collapses them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::state::IngestState;
use anyhow::Context;
use chrono::Utc;
use diesel_async::AsyncConnection;
use futures_util::future::join_all;
use hookline_broker::messages::{DeliveryBatch, DeliveryTask, TaskReason, MESSAGE_VERSION};
use hookline_broker::publisher::Broker;
use hookline_domain::id::{DeliveryId, EndpointId, EventId, OrgId};
use hookline_domain::status::OutboxReason;
use hookline_domain::trace::TraceParent;
use hookline_store::outbox::Pending;
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use tracing::Instrument;

pub static OUTBOX_LAG: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("hookline_outbox_lag_seconds", "Age of the oldest unpublished outbox row, in seconds.")
        .expect("metric registers")
});
pub static OUTBOX_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("hookline_outbox_pending", "Unpublished outbox rows.").expect("metric registers")
});
pub static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "webhook_events_published_total",
        "Delivery messages published to the broker, by event type.",
        &["event_type"]
    )
    .expect("metric registers")
});

/// Registers the relay's metrics.
pub fn init_metrics() {
    LazyLock::force(&OUTBOX_LAG);
    LazyLock::force(&OUTBOX_PENDING);
    for t in hookline_domain::event::BUILTIN_SCHEMAS.iter().map(|(n, _)| *n) {
        PUBLISHED.with_label_values(&[t]);
    }
    PUBLISHED.with_label_values(&["custom"]);
}

fn reason(r: OutboxReason) -> TaskReason {
    match r {
        OutboxReason::Fresh => TaskReason::Fresh,
        OutboxReason::Manual => TaskReason::Manual,
        OutboxReason::Retry => TaskReason::Retry,
    }
}

fn task_of(r: &Pending) -> DeliveryTask {
    DeliveryTask {
        version: MESSAGE_VERSION,
        delivery_id: DeliveryId::from_uuid(r.delivery_id).to_string(),
        org_id: OrgId::from_uuid(r.org_id).to_string(),
        endpoint_id: EndpointId::from_uuid(r.endpoint_id).to_string(),
        event_id: EventId::from_uuid(r.event_id).to_string(),
        event_type: r.event_type.clone(),
        attempt: r.attempt.max(1) as u32,
        first_enqueued_at_ms: r.created_at.timestamp_millis(),
        reason: reason(r.reason) as i32,
        parked: 0,
        // The message's header carries the trace, shared by an event's deliveries.
        traceparent: String::new(),
    }
}

/// The deliveries one message carries: the fresh deliveries of one event
/// (written by one request, so one trace) travel together; anything else alone.
fn messages(rows: &[Pending]) -> Vec<Vec<&Pending>> {
    let mut groups: Vec<Vec<&Pending>> = Vec::new();
    let mut of_event: std::collections::HashMap<uuid::Uuid, usize> = std::collections::HashMap::new();
    for r in rows {
        if r.reason != OutboxReason::Fresh || r.attempt > 1 {
            groups.push(vec![r]);
            continue;
        }
        match of_event.get(&r.event_id) {
            Some(&i) if groups[i][0].traceparent == r.traceparent => groups[i].push(r),
            _ => {
                of_event.insert(r.event_id, groups.len());
                groups.push(vec![r]);
            }
        }
    }
    groups
}

/// Publishes the deliveries of outbox rows, with confirms, all at once: one
/// message per event for fresh deliveries (a `DeliveryBatch` when it has
/// several), one per delivery otherwise. Fails if the broker refused or did
/// not confirm any.
pub async fn publish(broker: &Broker, rows: &[Pending]) -> anyhow::Result<()> {
    let results = join_all(messages(rows).into_iter().map(|group| {
        let first = group[0];
        // Each message continues the trace of the request that wrote its rows.
        let parent = first.traceparent.as_deref().and_then(TraceParent::parse);
        let span = tracing::info_span!(
            "relay.publish",
            delivery_id = %DeliveryId::from_uuid(first.delivery_id),
            deliveries = group.len(),
            trace_id = tracing::field::Empty
        );
        if let Some(p) = &parent {
            span.record("trace_id", p.trace_id_hex());
            hookline_service_kit::telemetry::attach_parent(&span, p);
        }
        let traceparent = first.traceparent.as_deref();
        async move {
            if let [one] = group.as_slice() {
                broker.publish_task(&task_of(one), traceparent).await
            } else {
                let batch =
                    DeliveryBatch { version: MESSAGE_VERSION, tasks: group.iter().map(|r| task_of(r)).collect() };
                broker.publish_batch(&batch, traceparent).await
            }
        }
        .instrument(span)
    }))
    .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e.context("publishing to RabbitMQ"));
    }
    for r in rows {
        PUBLISHED.with_label_values(&[hookline_domain::event::metric_label(&r.event_type)]).inc();
    }
    Ok(())
}

/// One pass: publishes up to one batch of rows. Returns how many rows it took.
pub async fn relay_once(state: &IngestState) -> anyhow::Result<usize> {
    let mut conn = state.pool.get().await.context("database pool")?;
    let batch = state.settings.outbox_batch_size;
    let broker = state.broker.clone();
    conn.transaction::<_, anyhow::Error, _>(async |c| {
        let claimed = hookline_store::outbox::claim(c, batch).await.context("claiming outbox rows")?;
        if claimed.ids.is_empty() {
            return Ok(0);
        }
        publish(&broker, &claimed.deliveries).await?;
        hookline_store::outbox::mark_published(c, &claimed.ids).await.context("marking outbox rows published")?;
        Ok(claimed.ids.len())
    })
    .await
}

async fn measure(state: &IngestState) {
    let Ok(mut conn) = state.pool.get().await else { return };
    if let Ok((pending, oldest)) = hookline_store::outbox::backlog(&mut conn).await {
        OUTBOX_LAG.set(oldest.map(|t| (Utc::now() - t).num_seconds().max(0)).unwrap_or(0));
        OUTBOX_PENDING.set(pending);
    }
}

/// Starts a pass whenever any process announces outbox rows (Postgres
/// `LISTEN` on [`hookline_store::outbox::CHANNEL`]), reconnecting as needed.
fn spawn_listener(state: Arc<IngestState>, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let url = state.settings.database_url.expose().to_owned();
        while !state.cancel.is_cancelled() {
            if let Err(e) = listen(&url, &state.cancel, &wake).await {
                tracing::debug!(error = format!("{e:#}"), "outbox notifications interrupted; reconnecting");
            }
            tokio::select! {
                _ = state.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

async fn listen(
    url: &str,
    cancel: &tokio_util::sync::CancellationToken,
    wake: &tokio::sync::Notify,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    use futures_util::StreamExt;
    let mut conn = hookline_store::db::connect(url).await?;
    diesel::sql_query(format!("LISTEN {}", hookline_store::outbox::CHANNEL)).execute(&mut conn).await?;
    // Anything announced before listening is found by this pass.
    wake.notify_one();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            n = notifications.next() => match n {
                Some(Ok(_)) => wake.notify_one(),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the notification connection closed"),
            }
        }
    }
}

/// Runs the relay until `state.cancel` fires; a notification of new outbox
/// rows, from any process, starts a pass at once.
pub fn spawn(state: Arc<IngestState>) -> tokio::task::JoinHandle<()> {
    init_metrics();
    let wake = Arc::new(tokio::sync::Notify::new());
    spawn_listener(state.clone(), wake.clone());
    spawn_backfills(state.clone());
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut last_measure = std::time::Instant::now() - Duration::from_secs(10);
        loop {
            if state.cancel.is_cancelled() {
                return;
            }
            let result = relay_once(&state).await;
            if last_measure.elapsed() >= Duration::from_secs(1) {
                measure(&state).await;
                last_measure = std::time::Instant::now();
            }
            match result {
                Ok(n) if n as i64 >= state.settings.outbox_batch_size => {
                    backoff = Duration::from_millis(250);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        _ = state.cancel.cancelled() => return,
                        _ = wake.notified() => {}
                        // The fallback for a missed notification (a relay
                        // reconnecting) and for rows left to the event writer.
                        _ = tokio::time::sleep(state.settings.outbox_poll) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay pass failed; will retry"
                    );
                    // Wake-ups do not cut a backoff short: a down broker is not hammered.
                    tokio::select! {
                        _ = state.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

/// Deliveries of a backfill that may wait for their first attempt at once
/// (so at most this many are queued per step), and the pause between steps:
/// a backfill goes at its endpoint's pace, and live events never queue
/// behind a flood of old ones.
const BACKFILL_BATCH: i64 = 32;
const BACKFILL_PAUSE: Duration = Duration::from_millis(50);
/// How often an idle runner looks for a backfill to advance.
const BACKFILL_IDLE: Duration = Duration::from_secs(1);

/// Advances running backfills, one step at a time (every instance may run
/// this: a step claims its backfill with SKIP LOCKED, and progress is saved
/// per step, so a backfill resumes wherever an instance stopped).
pub fn spawn_backfills(state: Arc<IngestState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stepped = async {
                let mut conn = state.pool.get().await.context("database pool")?;
                conn.transaction::<_, diesel::result::Error, _>(async |c| {
                    hookline_store::backfill::step(c, BACKFILL_BATCH).await
                })
                .await
                .context("advancing a backfill")
            }
            .await;
            let pause = match stepped {
                Ok(Some(_)) => BACKFILL_PAUSE,
                Ok(None) => BACKFILL_IDLE,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "a backfill step failed; trying again shortly");
                    BACKFILL_IDLE
                }
            };
            tokio::select! {
                _ = state.cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    })
}
