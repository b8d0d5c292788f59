//! One task in, one disposition out.
//!
//! Every attempt is recorded before the message is acknowledged, and every
//! retry is published (with a confirm) before the attempt's message is
//! acknowledged, so a crash at any point leads to a redelivery, never a
//! loss. The attempt number in the message and the delivery's
//! `attempt_count` / `scheduled_attempt` let a redelivered or duplicated
//! message recognise work already done.

use anyhow::Context as _;
use hookline_domain::signing::SignatureFormat;
use hookline_domain::status::DeliveryStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::AsyncConnection;
use hookline_broker::messages::{DeliveryOutcome, DeliveryTask, OutcomeKind, TaskReason, MESSAGE_VERSION};
use hookline_domain::event::webhook_body;
use hookline_domain::id::{AttemptId, DeliveryId, EndpointId};
use hookline_domain::retry::{NextStep, RetryPolicy};
use hookline_domain::signing::sign_delivery;
use hookline_domain::trace::TraceParent;
use hookline_service_kit::secrets;
use hookline_store::deliveries::{AttemptOutcome, AttemptRow, DeliveryRow};
use hookline_store::endpoints::EndpointRow;
use hookline_store::lanes::Publish;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::successes::Offer;
use crate::{metrics, Recorded, Worker};
use hookline_service_kit::outbound::{post, Response};

/// What to do with the broker message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done (delivered, retry scheduled, parked, cancelled, or a duplicate).
    Ack,
    /// Reject without requeue: the work queue's DLX takes it to the dead-letter queue.
    DeadLetter,
    /// Put it back: a dependency failed and nothing was decided.
    Requeue,
}

/// How long a message waits when its endpoint is at its concurrency cap,
/// or its organisation at its share, the first time; it doubles with each
/// parking of the same attempt.
pub const PARK_DELAY: Duration = Duration::from_millis(1000);
/// The first wait instead for an endpoint at its cap that answers fast or
/// has not answered yet: what holds it there is most likely a burst (the
/// first of a new endpoint, or after a pause), whose requests free their
/// slots within milliseconds.
pub const QUICK_PARK_DELAY: Duration = Duration::from_millis(250);
/// The longest a parked message waits before it looks for a slot again.
pub const MAX_PARK_DELAY: Duration = Duration::from_secs(32);

/// How long an attempt parked `times` times before waits now. An endpoint
/// that stays at its cap (it hangs, or is slow under load) frees slots far
/// more slowly than deliveries to it arrive; parking its backlog for a fixed
/// second would send all of it round the broker (and read it from the
/// database) every second, a churn that grows with the backlog.
pub fn park_delay(times: u32, first: Duration) -> Duration {
    first.saturating_mul(1u32 << times.min(16)).min(MAX_PARK_DELAY)
}
pub const USER_AGENT: &str = concat!("Hookline/", env!("CARGO_PKG_VERSION"));

/// Handles one `DeliveryTask` message.
pub async fn process_one(w: &Arc<Worker>, payload: &[u8], redelivered: bool, traceparent: Option<&str>) -> Disposition {
    match hookline_broker::messages::read_task(payload) {
        Ok(task) => process_task(w, &task, redelivered, traceparent).await,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable delivery message; dead-lettering it for inspection");
            Disposition::DeadLetter
        }
    }
}

/// Handles one task, whether it came alone or in a batch.
pub async fn process_task(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    redelivered: bool,
    traceparent: Option<&str>,
) -> Disposition {
    // A retry or parked task carries the trace it continues; otherwise the message does.
    let trace = TraceParent::parse(&task.traceparent)
        .or_else(|| traceparent.and_then(TraceParent::parse))
        .unwrap_or_else(TraceParent::root);
    let span = tracing::info_span!(
        "delivery",
        delivery_id = %task.delivery_id,
        org_id = %task.org_id,
        attempt = task.attempt,
        redelivered,
        trace_id = %trace.trace_id_hex()
    );
    hookline_service_kit::telemetry::attach_parent(&span, &trace);
    match step(w, task, redelivered, &trace).instrument(span).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(delivery_id = %task.delivery_id, error = format!("{e:#}"), "delivery step failed; requeueing the message");
            Disposition::Requeue
        }
    }
}

async fn load_endpoint(w: &Worker, id: uuid::Uuid) -> anyhow::Result<Option<Arc<EndpointRow>>> {
    let caches = &w.state.caches;
    if caches.active() {
        if let Some(e) = caches.endpoints.get(&id) {
            return Ok(Some(e));
        }
    }
    let mut conn = w.state.pool.get().await.context("database pool")?;
    let row = hookline_store::endpoints::get_any(&mut conn, id).await?.map(Arc::new);
    if let (Some(r), true) = (&row, caches.active()) {
        caches.endpoints.insert(id, r.clone());
    }
    Ok(row)
}

fn policy(ep: &EndpointRow) -> RetryPolicy {
    RetryPolicy {
        max_retries: ep.max_retries.max(0) as u32,
        initial_delay_ms: ep.initial_delay_ms.max(1) as u64,
        multiplier: ep.multiplier,
        max_delay_ms: ep.max_delay_ms.max(1) as u64,
    }
}

async fn step(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    redelivered: bool,
    trace: &TraceParent,
) -> anyhow::Result<Disposition> {
    let delivery_id = DeliveryId::parse(&task.delivery_id)?.as_uuid();
    let attempt = task.attempt.max(1) as i32;
    // Read together with the deliveries of concurrent messages.
    let loaded =
        w.loader.submit(delivery_id).await.ok_or_else(|| anyhow::anyhow!("the delivery loader has stopped"))?;
    let Some(loaded) = loaded? else {
        return Ok(Disposition::Ack);
    };
    let (delivery, event) = &*loaded;
    let Some(endpoint) = load_endpoint(w, delivery.endpoint_id).await? else {
        return Ok(Disposition::Ack);
    };

    if attempt <= delivery.attempt_count
        || matches!(delivery.status, DeliveryStatus::Delivered | DeliveryStatus::Cancelled)
    {
        return already_done(w, task, redelivered, delivery, &endpoint, trace).await;
    }
    if delivery.status == DeliveryStatus::DeadLetter {
        // A stale copy of a message whose delivery was dead-lettered after it.
        release_lane(w, delivery).await?;
        return Ok(Disposition::Ack);
    }
    if delivery.status == DeliveryStatus::Blocked {
        // It waits in its lane, which queues it when its turn comes.
        return Ok(Disposition::Ack);
    }
    if endpoint.deleted_at.is_some() || !endpoint.is_active {
        let mut conn = w.state.pool.get().await.context("database pool")?;
        hookline_store::deliveries::set_status(&mut conn, delivery.id, DeliveryStatus::Cancelled).await?;
        drop(conn);
        release_lane(w, delivery).await?;
        publish_outcome(w, task, delivery, OutcomeKind::Cancelled, None).await;
        return Ok(Disposition::Ack);
    }

    // Neither one slow endpoint nor one tenant may hold the worker's slots:
    // over either share, park. The endpoint's comes first, so that what its
    // cap would park never takes a place in the tenant's share.
    let Some(_slot) = w.endpoint_slot(endpoint.id).await else {
        metrics::PARKED.with_label_values(&["concurrency"]).inc();
        let again = DeliveryTask { parked: task.parked.saturating_add(1), ..task.clone() };
        let fast_or_new = w.latency_baseline(endpoint.id).is_none_or(|ms| ms <= crate::FAST_ENDPOINT_MS);
        let first = if fast_or_new { QUICK_PARK_DELAY } else { PARK_DELAY };
        return park(w, &again, park_delay(task.parked, first), trace).await;
    };
    let Some(_org_slot) = w.org_slot(endpoint.org_id) else {
        metrics::PARKED.with_label_values(&["org"]).inc();
        let again = DeliveryTask { parked: task.parked.saturating_add(1), ..task.clone() };
        return park(w, &again, park_delay(task.parked, PARK_DELAY), trace).await;
    };
    let rps = endpoint.rate_limit_per_second;
    let gate = match w.flow.gate(endpoint.id, rps).await {
        Ok(g) => g,
        // Without Redis the configured limit holds per process.
        Err(_) => match rps.map(|r| w.endpoint_rate_check(endpoint.id, r)) {
            Some(Err(wait)) => crate::flow::Gate::Wait(wait),
            _ => crate::flow::Gate::Go,
        },
    };
    if let crate::flow::Gate::Wait(wait) = gate {
        metrics::PARKED.with_label_values(&["rate"]).inc();
        // Round up to 250 ms steps so parking uses few distinct delay queues.
        let ms = wait.as_millis().max(1).div_ceil(250) * 250;
        return park(w, task, Duration::from_millis(ms as u64), trace).await;
    }

    let body = webhook_body(&event.event_type, event.occurred_at, &event.data);
    let now = Utc::now();
    let master = &w.state.master_key;
    let current = secrets::open_secret(master, endpoint.id, &endpoint.secret_ciphertext)?;
    let previous = match (&endpoint.previous_secret_ciphertext, endpoint.previous_secret_expires_at) {
        (Some(c), Some(until)) if until > now => Some(secrets::open_secret(master, endpoint.id, c)?),
        _ => None,
    };
    let msg_id = task.delivery_id.clone();
    let ts = now.timestamp();
    let format = SignatureFormat::parse(&endpoint.signature_format).unwrap_or_default();
    let mut sigs = sign_delivery(&current, previous.as_ref(), &msg_id, ts, &body);
    if let (SignatureFormat::Ed25519, Some(sealed)) = (format, &endpoint.signing_key_ciphertext) {
        sigs.standard = secrets::open_signing_key(master, endpoint.id, sealed)?.sign_standard(&msg_id, ts, &body);
    }
    let mut headers = HeaderMap::new();
    for (k, v) in secrets::open_headers(master, endpoint.id, &endpoint.headers)? {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
            headers.insert(k, v);
        }
    }
    let hv = |s: &str| HeaderValue::from_str(s).expect("header-safe value");
    headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(reqwest::header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert("x-webhook-signature", hv(&format.header(&sigs.legacy)));
    headers.insert("x-webhook-event", hv(&event.event_type));
    headers.insert("x-webhook-delivery-id", hv(&msg_id));
    headers.insert("x-webhook-timestamp", hv(&ts.to_string()));
    headers.insert("x-webhook-attempt", hv(&attempt.to_string()));
    headers.insert("webhook-id", hv(&msg_id));
    headers.insert("webhook-timestamp", hv(&ts.to_string()));
    headers.insert("webhook-signature", hv(&sigs.standard));
    // The receiver continues the trace that began at the ingest request.
    headers.insert("traceparent", hv(&trace.child().to_string()));
    let request_headers = recorded_headers(&headers);

    let url = url::Url::parse(&endpoint.url)?;
    let timeout = Duration::from_secs(endpoint.timeout_seconds.clamp(1, 60) as u64);
    let response = post(&w.client, &url, headers, body, timeout, w.state.settings.allow_private_targets).await;
    drop(_slot);
    drop(_org_slot);
    let baseline = w.latency_baseline(endpoint.id);
    w.observe_latency(endpoint.id, response.latency);
    if let Err(e) =
        w.flow.observe(endpoint.id, rps, response.status, response.retry_after, response.latency, baseline).await
    {
        tracing::debug!(error = %e, "flow control could not record the answer");
    }
    finish(w, task, delivery, &endpoint, attempt, response, request_headers, trace).await
}

/// The request headers kept with the attempt, signatures shortened.
fn recorded_headers(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in headers {
        let name = k.as_str();
        let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
        let kept = if name.contains("signature") {
            value.split(' ').map(|s| format!("{}…", &s[..s.len().min(12)])).collect::<Vec<_>>().join(" ")
        } else if name.starts_with("x-webhook-")
            || name.starts_with("webhook-")
            || name == "content-type"
            || name == "user-agent"
        {
            value
        } else {
            // Custom headers may carry credentials: record only that they were sent.
            "<custom>".to_owned()
        };
        map.insert(name.to_owned(), serde_json::Value::String(kept));
    }
    serde_json::Value::Object(map)
}

async fn finish(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    delivery: &DeliveryRow,
    endpoint: &EndpointRow,
    attempt: i32,
    response: Response,
    request_headers: serde_json::Value,
    trace: &TraceParent,
) -> anyhow::Result<Disposition> {
    let now = Utc::now();
    let gone = response.status == Some(410);
    let (next, outcome) = decide(&response, attempt as u32, &policy(endpoint), now);
    let row = AttemptRow {
        id: AttemptId::new().as_uuid(),
        org_id: delivery.org_id,
        delivery_id: delivery.id,
        endpoint_id: endpoint.id,
        attempt_number: attempt,
        succeeded: response.succeeded(),
        status_code: response.status.map(i32::from),
        error_class: response.error_class.map(str::to_owned),
        error_message: response.error.clone(),
        latency_ms: response.latency.as_millis().min(i32::MAX as u128) as i32,
        request_headers,
        response_headers: response.status.map(|_| serde_json::Value::Object(response.headers.clone())),
        response_body: response.body.clone(),
        created_at: now,
    };
    // Whether alerting must hear of this attempt: every failure does; a
    // success only where it may resolve or open something.
    let recorded = if gone {
        let mut conn = w.state.pool.get().await.context("database pool")?;
        conn.transaction::<_, diesel::result::Error, _>(async |c| {
            hookline_store::hot::attempts::record_attempt(c, &row, &outcome).await?;
            hookline_store::endpoints::disable(c, endpoint.id, "the endpoint answered 410 Gone").await?;
            Ok(())
        })
        .await?;
        Recorded { heard: true, ..Default::default() }
    } else {
        // Shared with the attempts of concurrent deliveries (group commit).
        let recorder = if delivery.lane.is_some() { &w.recorder_prompt } else { &w.recorder };
        match recorder.submit((row, outcome.clone())).await {
            Some(Ok(recorded)) => recorded,
            Some(Err(e)) => anyhow::bail!(e),
            None => anyhow::bail!("the attempt recorder has stopped"),
        }
    };
    if matches!(outcome.status, DeliveryStatus::Delivered | DeliveryStatus::DeadLetter) {
        // Before the ack: should this worker stop first, the message comes
        // back and its copy releases the lane (a lane's next delivery taken on
        // in process has no message: the lane sweep releases it).
        match recorded.released.clone() {
            Some(next) => follow_lane(w, next).await,
            None => release_lane(w, delivery).await?,
        }
    }
    let settled = match outcome.status {
        DeliveryStatus::Delivered => hookline_service_kit::rollups::Settled::Delivered,
        DeliveryStatus::DeadLetter => hookline_service_kit::rollups::Settled::DeadLettered,
        _ => hookline_service_kit::rollups::Settled::Retrying,
    };
    w.state.rollups.attempt(
        delivery.org_id,
        endpoint.id,
        &delivery.event_type,
        response.succeeded(),
        response.latency.as_millis() as u64,
        settled,
    );
    let label = if response.succeeded() { "success" } else { "failure" };
    metrics::DURATION.with_label_values(&[label]).observe(response.latency.as_secs_f64());
    if gone {
        let topic = hookline_service_kit::caches::Topic::Endpoint { org: delivery.org_id, id: endpoint.id };
        w.state.caches.invalidate(topic).await;
        tracing::warn!(endpoint_id = %EndpointId::from_uuid(endpoint.id), "endpoint answered 410 Gone; disabled it");
    }
    match next {
        None => {
            metrics::SUCCESS.inc();
            metrics::ATTEMPTS_TO_SUCCESS.observe(f64::from(attempt));
            if recorded.heard {
                report_success(w, task, delivery, &response).await;
            }
            Ok(Disposition::Ack)
        }
        Some(step) => {
            metrics::FAILURE.with_label_values(&[response.error_class.unwrap_or("unknown")]).inc();
            match step {
                NextStep::DeadLetter => {
                    metrics::DEAD_LETTERED.inc();
                    let kind = if gone { OutcomeKind::EndpointGone } else { OutcomeKind::DeadLettered };
                    publish_outcome(w, task, delivery, kind, Some(&response)).await;
                    Ok(Disposition::DeadLetter)
                }
                NextStep::RetryAfter(delay) => {
                    // Both wait a linger for company (see `outgoing`): side by side, not one after the other.
                    let retry = async {
                        if recorded.claimed {
                            publish_retry(w, task, delivery.id, attempt + 1, delay, trace).await
                        } else {
                            Ok(())
                        }
                    };
                    let outcome = publish_outcome(w, task, delivery, OutcomeKind::RetryScheduled, Some(&response));
                    let (retried, ()) = tokio::join!(retry, outcome);
                    retried.map(|()| Disposition::Ack)
                }
            }
        }
    }
}

/// Lets an ordered delivery's lane move on once it settled: the next
/// delivery of its key is queued (see `hookline_store::lanes`). Does nothing
/// for a delivery outside a lane, one still waiting, or one already released.
async fn release_lane(w: &Arc<Worker>, delivery: &DeliveryRow) -> anyhow::Result<()> {
    if delivery.lane.is_none() {
        return Ok(());
    }
    let mut conn = w.state.pool.get().await.context("database pool")?;
    let next = hookline_store::lanes::release(&mut conn, delivery.id, Publish::Caller)
        .await
        .context("releasing the delivery's lane")?;
    drop(conn);
    follow_lane(w, next).await;
    Ok(())
}

/// Sends a lane's next delivery on its way, if its release made one head.
///
/// This worker takes it on at once, in a slot of its own, when one is free:
/// a lane then steps without a round through the broker. Otherwise, or when
/// the worker is stopping, it is published to the work queue. Should this
/// worker stop before either, the sweeper queues it.
async fn follow_lane(w: &Arc<Worker>, next: Option<hookline_store::lanes::Released>) {
    let Some(next) = next else {
        return;
    };
    let task = hookline_service_kit::lanes::task_of(&next);
    if let Some(permit) = w.spare_slot() {
        metrics::LANE_STEPS.with_label_values(&["in_process"]).inc();
        tokio::spawn(continue_lane(Arc::clone(w), task, permit));
        return;
    }
    metrics::LANE_STEPS.with_label_values(&["queued"]).inc();
    hookline_service_kit::lanes::hand_on(&w.state.broker, &w.state.pool, std::slice::from_ref(&next)).await;
}

/// Runs a lane's next delivery in this process, as if its message had come
/// from the work queue; what a message would have been rejected or requeued
/// for goes to the broker instead.
fn continue_lane(
    w: Arc<Worker>,
    task: DeliveryTask,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    // Boxed: the step it runs may start another.
    Box::pin(continued(w, task, permit))
}

async fn continued(w: Arc<Worker>, task: DeliveryTask, permit: tokio::sync::OwnedSemaphorePermit) {
    metrics::IN_FLIGHT.inc();
    let disposition = process_task(&w, &task, false, None).await;
    metrics::IN_FLIGHT.dec();
    drop(permit);
    let handed = match disposition {
        Disposition::Ack => Ok(()),
        Disposition::DeadLetter => w.state.broker.publish_dead_letter(&task, None).await,
        Disposition::Requeue => w.state.broker.publish_delayed(&task, crate::REQUEUE_DELAY, None).await,
    };
    if let Err(e) = handed {
        // A requeue not handed on leaves the delivery unattempted, for the lane sweep.
        tracing::warn!(delivery_id = %task.delivery_id, error = format!("{e:#}"), "could not hand on a lane's next delivery");
    }
}

/// Publishes attempt `next` to the delay queue for `delay`, once per
/// delivery even when duplicated messages race here.
async fn schedule(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    delivery_id: uuid::Uuid,
    next: i32,
    delay: Duration,
    trace: &TraceParent,
) -> anyhow::Result<Disposition> {
    let mut conn = w.state.pool.get().await.context("database pool")?;
    if hookline_store::hot::attempts::claim_next_attempt(&mut conn, delivery_id, next).await? {
        drop(conn);
        publish_retry(w, task, delivery_id, next, delay, trace).await?;
    }
    Ok(Disposition::Ack)
}

/// Publishes attempt `next`, claimed by this caller, to the delay queue for
/// `delay`; gives the claim back when the broker refuses it.
async fn publish_retry(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    delivery_id: uuid::Uuid,
    next: i32,
    delay: Duration,
    trace: &TraceParent,
) -> anyhow::Result<()> {
    let retry = DeliveryTask {
        attempt: next as u32,
        reason: TaskReason::Retry as i32,
        parked: 0,
        traceparent: trace.to_string(),
        ..task.clone()
    };
    let published = match w.delayed.submit((retry, delay)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(anyhow::Error::from(e)),
        None => Err(anyhow::anyhow!("the retry publisher has stopped")),
    };
    if let Err(e) = published {
        let mut conn = w.state.pool.get().await.context("database pool")?;
        hookline_store::deliveries::unclaim_attempt(&mut conn, delivery_id, next).await?;
        return Err(e.context("publishing the retry"));
    }
    Ok(())
}

async fn park(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    delay: Duration,
    trace: &TraceParent,
) -> anyhow::Result<Disposition> {
    let parked = DeliveryTask { reason: TaskReason::Parked as i32, traceparent: trace.to_string(), ..task.clone() };
    match w.delayed.submit((parked, delay)).await {
        Some(Ok(())) => Ok(Disposition::Ack),
        Some(Err(e)) => Err(anyhow::Error::from(e).context("parking the task")),
        None => anyhow::bail!("the retry publisher has stopped"),
    }
}

/// A message for an attempt that was already made (a redelivery after a
/// crash, or a duplicate): finish whatever the first copy could not.
async fn already_done(
    w: &Arc<Worker>,
    task: &DeliveryTask,
    redelivered: bool,
    delivery: &DeliveryRow,
    endpoint: &EndpointRow,
    trace: &TraceParent,
) -> anyhow::Result<Disposition> {
    if retry_maybe_lost(delivery, task.attempt, redelivered) {
        // Publishing it again may duplicate it; the attempt number makes the
        // second copy a no-op once the first has run.
        let due = delivery.next_attempt_at.unwrap_or_else(Utc::now);
        let delay = (due - Utc::now()).to_std().unwrap_or_default().max(Duration::from_millis(100));
        tracing::info!(delivery_id = %task.delivery_id, "a redelivered attempt's retry may not have been published; publishing it");
        publish_retry(w, task, delivery.id, delivery.scheduled_attempt, delay, trace).await?;
        return Ok(Disposition::Ack);
    }
    match settled_before(delivery, task.attempt) {
        Some(disposition) => {
            // Its first copy may have stopped between recording and releasing.
            release_lane(w, delivery).await?;
            Ok(disposition)
        }
        None => {
            // The attempt was recorded but its retry never published.
            let delay = match policy(endpoint).after_failure(delivery.attempt_count.max(1) as u32, None) {
                NextStep::RetryAfter(d) => d,
                NextStep::DeadLetter => Duration::ZERO,
            };
            schedule(w, task, delivery.id, delivery.attempt_count + 1, delay.max(Duration::from_millis(100)), trace)
                .await
        }
    }
}

/// What an attempt's answer decides, with no I/O: delivered on a 2xx;
/// dead-lettered on 410 Gone or once the policy's retries are spent;
/// otherwise failed with the next attempt's time (a 429's or 503's
/// Retry-After honoured within the policy's cap).
pub fn decide(
    response: &Response,
    attempt: u32,
    policy: &RetryPolicy,
    now: chrono::DateTime<Utc>,
) -> (Option<NextStep>, AttemptOutcome) {
    let next = if response.succeeded() {
        None
    } else if response.status == Some(410) {
        Some(NextStep::DeadLetter)
    } else {
        let honour = matches!(response.status, Some(429 | 503)).then_some(response.retry_after).flatten();
        Some(policy.after_failure(attempt, honour))
    };
    let outcome = match next {
        None => AttemptOutcome { status: DeliveryStatus::Delivered, next_attempt_at: None },
        Some(NextStep::DeadLetter) => AttemptOutcome { status: DeliveryStatus::DeadLetter, next_attempt_at: None },
        Some(NextStep::RetryAfter(d)) => AttemptOutcome {
            status: DeliveryStatus::Failed,
            next_attempt_at: Some(now + chrono::Duration::milliseconds(d.as_millis() as i64)),
        },
    };
    (next, outcome)
}

/// Whether this message's attempt failed and claimed the next one, and the
/// broker hands it over again: the worker that claimed the retry may have
/// stopped before publishing it. Without this, the retry would wait for the
/// sweeper, and an ordered lane behind it with it.
pub fn retry_maybe_lost(delivery: &DeliveryRow, task_attempt: u32, redelivered: bool) -> bool {
    redelivered
        && delivery.status == DeliveryStatus::Failed
        && task_attempt as i32 == delivery.attempt_count
        && delivery.scheduled_attempt == delivery.attempt_count + 1
}

/// For a message whose attempt was already made (a redelivery, a duplicate),
/// with no I/O: what to do with it, or None when its recorded failure's
/// retry was never published and must be now.
pub fn settled_before(delivery: &DeliveryRow, task_attempt: u32) -> Option<Disposition> {
    match delivery.status {
        DeliveryStatus::Delivered | DeliveryStatus::Cancelled => Some(Disposition::Ack),
        // Recorded as dead but perhaps not yet handed to the dead-letter queue.
        DeliveryStatus::DeadLetter if task_attempt as i32 == delivery.attempt_count => Some(Disposition::DeadLetter),
        DeliveryStatus::DeadLetter => Some(Disposition::Ack),
        _ if delivery.scheduled_attempt > delivery.attempt_count => Some(Disposition::Ack),
        _ => None,
    }
}

async fn publish_outcome(
    w: &Worker,
    task: &DeliveryTask,
    delivery: &DeliveryRow,
    kind: OutcomeKind,
    response: Option<&Response>,
) {
    send_outcome(w, outcome_message(task, delivery, kind, response)).await;
}

/// Reports a success now, or holds it for the end of its endpoint's
/// interval (see [`crate::successes`]).
async fn report_success(w: &Arc<Worker>, task: &DeliveryTask, delivery: &DeliveryRow, response: &Response) {
    let outcome = outcome_message(task, delivery, OutcomeKind::Delivered, Some(response));
    let endpoint = delivery.endpoint_id;
    match w.successes.offer(endpoint, outcome, Instant::now()) {
        Offer::Now(outcome) => send_outcome(w, outcome).await,
        Offer::Held { flush_at: Some(at) } => {
            let w = w.clone();
            tokio::spawn(async move {
                // On shutdown the held success goes at once rather than never.
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = w.state.cancel.cancelled() => {}
                }
                if let Some(outcome) = w.successes.take_held(endpoint, Instant::now()) {
                    send_outcome(&w, outcome).await;
                }
            });
        }
        Offer::Held { flush_at: None } => {}
    }
}

async fn send_outcome(w: &Worker, outcome: DeliveryOutcome) {
    match w.outcomes.submit(outcome).await {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::warn!(error = %e, "could not publish a delivery outcome"),
        None => tracing::warn!("could not publish a delivery outcome: the outcome publisher has stopped"),
    }
}

fn outcome_message(
    task: &DeliveryTask,
    delivery: &DeliveryRow,
    kind: OutcomeKind,
    response: Option<&Response>,
) -> DeliveryOutcome {
    DeliveryOutcome {
        version: MESSAGE_VERSION,
        delivery_id: task.delivery_id.clone(),
        org_id: task.org_id.clone(),
        endpoint_id: EndpointId::from_uuid(delivery.endpoint_id).to_string(),
        event_type: delivery.event_type.clone(),
        attempt: task.attempt,
        kind: kind as i32,
        status_code: response.and_then(|r| r.status).map(u32::from).unwrap_or(0),
        error_class: response.and_then(|r| r.error_class).unwrap_or("").to_owned(),
        latency_ms: response.map(|r| r.latency.as_millis() as u64).unwrap_or(0),
        occurred_at_ms: Utc::now().timestamp_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Option<u16>, retry_after: Option<Duration>) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: None,
            retry_after,
            error_class: match status {
                Some(200..=299) => None,
                Some(_) => Some("http_status"),
                None => Some("connect"),
            },
            error: None,
            latency: Duration::from_millis(5),
        }
    }

    fn three_retries() -> RetryPolicy {
        RetryPolicy { max_retries: 3, initial_delay_ms: 1000, multiplier: 2.0, max_delay_ms: 60_000 }
    }

    #[test]
    fn an_answer_decides_the_delivery_and_its_next_attempt() {
        let now = Utc::now();
        let at = |ms: i64| Some(now + chrono::Duration::milliseconds(ms));
        let p = three_retries();
        let (next, o) = decide(&answered(Some(204), None), 1, &p, now);
        assert_eq!((next, o.status, o.next_attempt_at), (None, DeliveryStatus::Delivered, None));
        let (_, o) = decide(&answered(Some(500), None), 1, &p, now);
        assert_eq!((o.status, o.next_attempt_at), (DeliveryStatus::Failed, at(1000)));
        let (_, o) = decide(&answered(None, None), 3, &p, now);
        assert_eq!((o.status, o.next_attempt_at), (DeliveryStatus::Failed, at(4000)), "a refused connection retries");
        let (next, o) = decide(&answered(Some(500), None), 4, &p, now);
        assert_eq!((next, o.status), (Some(NextStep::DeadLetter), DeliveryStatus::DeadLetter), "retries spent");
        let (_, o) = decide(&answered(Some(410), None), 1, &p, now);
        assert_eq!(o.status, DeliveryStatus::DeadLetter, "410 Gone ends it at once");
        // Retry-After is honoured on 429 and 503 only, within the policy's cap.
        let (_, o) = decide(&answered(Some(429), Some(Duration::from_secs(7))), 1, &p, now);
        assert_eq!(o.next_attempt_at, at(7000));
        let (_, o) = decide(&answered(Some(503), Some(Duration::from_secs(3600))), 1, &p, now);
        assert_eq!(o.next_attempt_at, at(60_000));
        let (_, o) = decide(&answered(Some(500), Some(Duration::from_secs(7))), 1, &p, now);
        assert_eq!(o.next_attempt_at, at(1000));
    }

    #[test]
    fn a_message_for_an_attempt_already_made_is_settled_by_what_was_recorded() {
        let row = |status, attempt_count, scheduled_attempt| DeliveryRow {
            id: uuid::Uuid::nil(),
            org_id: uuid::Uuid::nil(),
            event_id: uuid::Uuid::nil(),
            endpoint_id: uuid::Uuid::nil(),
            event_type: "new_lead".into(),
            status,
            attempt_count,
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: None,
            delivered_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            scheduled_attempt,
            lane: None,
            lane_seq: None,
        };
        use DeliveryStatus::*;
        assert!(retry_maybe_lost(&row(Failed, 2, 3), 2, true), "the claimed retry is published again");
        assert!(!retry_maybe_lost(&row(Failed, 2, 3), 2, false), "a duplicate: the retry was published");
        assert!(!retry_maybe_lost(&row(Failed, 2, 3), 1, true), "an older attempt's message");
        assert!(!retry_maybe_lost(&row(Delivered, 2, 2), 2, true));
        assert_eq!(settled_before(&row(Delivered, 1, 1), 1), Some(Disposition::Ack));
        assert_eq!(settled_before(&row(Cancelled, 0, 1), 1), Some(Disposition::Ack));
        assert_eq!(settled_before(&row(DeadLetter, 3, 3), 3), Some(Disposition::DeadLetter), "hand it on");
        assert_eq!(settled_before(&row(DeadLetter, 3, 3), 2), Some(Disposition::Ack), "a stale copy");
        assert_eq!(settled_before(&row(Failed, 1, 2), 1), Some(Disposition::Ack), "its retry is claimed");
        assert_eq!(settled_before(&row(Failed, 1, 1), 1), None, "its retry was never published");
    }

    #[test]
    fn parking_again_waits_twice_as_long_up_to_a_cap() {
        let waits: Vec<u64> = (0..8).map(|n| park_delay(n, PARK_DELAY).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(park_delay(u32::MAX, PARK_DELAY), MAX_PARK_DELAY);
        let quick: Vec<u128> = (0..9).map(|n| park_delay(n, QUICK_PARK_DELAY).as_millis()).collect();
        assert_eq!(quick, [250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 32000]);
    }
}
