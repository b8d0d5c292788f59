//! Delivery history and replay: deliveries listed and inspected, retried,
//! an endpoint's failures recovered, test events, endpoint statistics.

use chrono::{Duration, Utc};
use diesel_async::AsyncConnection;
use hookline_domain::event::WEBHOOK_TEST;
use hookline_domain::id::{DeliveryId, EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_domain::status::{DeliveryStatus, OutboxReason};
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_service_kit::storable::time_in_range;
use hookline_store::deliveries::DeliveryFilter;
use hookline_store::events::EventRow;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::deliveries::{
    AttemptView, DeliveryDetail, DeliveryParams, DeliveryView, EndpointStatsView, FlowView, RecoverInput, Recovered,
    StatsParams, TestResult, TestSent, TEST_WAIT_MARGIN_SECS,
};
use crate::state::ControlState;

/// At most this many deliveries are re-queued by one recover call...
pub const RECOVER_MAX: usize = 10_000;

/// ...in transactions of this many, so that no lock is held for long.
const RECOVER_BATCH: usize = 500;

/// The organisation's endpoint, which must be enabled for new attempts.
async fn active_endpoint(
    c: &mut diesel_async::AsyncPgConnection,
    org: hookline_domain::id::OrgId,
    id: EndpointId,
) -> Result<hookline_store::endpoints::EndpointRow, ApiError> {
    let ep =
        hookline_store::endpoints::get(c, org, id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    if !ep.is_active {
        return Err(ApiError::conflict("endpoint_inactive", "the endpoint is disabled; enable it first"));
    }
    Ok(ep)
}

pub async fn list(
    app: &ControlState,
    auth: &Principal,
    q: &DeliveryParams,
) -> Result<ListResponse<DeliveryView>, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let status = match &q.status {
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            let names: Vec<_> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::invalid_field("status", format!("must be one of {}", names.join(", ")))
        })?),
        None => None,
    };
    let endpoint_id = match &q.webhook_id {
        Some(w) => {
            Some(EndpointId::parse(w).map_err(|e| ApiError::invalid_field("webhook_id", e.to_string()))?.as_uuid())
        }
        None => None,
    };
    time_in_range("since", q.since)?;
    time_in_range("until", q.until)?;
    let filter = DeliveryFilter { endpoint_id, status, event_type: q.event.clone(), since: q.since, until: q.until };
    let mut conn = app.conn().await?;
    let page = hookline_store::deliveries::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|d| d.id);
    let data: Vec<DeliveryView> = page.items.into_iter().map(DeliveryView::from).collect();
    Ok(ListResponse::new(data, page.has_more, last))
}

pub async fn get(app: &ControlState, auth: &Principal, id: DeliveryId) -> Result<DeliveryDetail, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let mut conn = app.conn().await?;
    let d = hookline_store::deliveries::get_for_org(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let event =
        hookline_store::events::get(&mut conn, d.event_id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = hookline_store::deliveries::attempts(&mut conn, d.id).await?;
    let payload = serde_json::from_slice(&hookline_domain::event::webhook_body(
        &event.event_type,
        event.occurred_at,
        &event.data,
    ))
    .map_err(ApiError::internal)?;
    Ok(DeliveryDetail {
        delivery: d.into(),
        payload,
        attempt_log: attempts.into_iter().map(AttemptView::from).collect(),
    })
}

/// Queues a new attempt of a failed or dead-lettered delivery.
pub async fn retry(app: &ControlState, auth: &Principal, id: DeliveryId) -> Result<DeliveryView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let d = hookline_store::deliveries::get_for_org(c, auth.org_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("delivery"))?;
        let ep = hookline_store::endpoints::get(c, auth.org_id, EndpointId::from_uuid(d.endpoint_id)).await?;
        if ep.is_none_or(|e| !e.is_active) {
            return Err(ApiError::conflict(
                "endpoint_inactive",
                "the delivery's endpoint is disabled or deleted; enable it first",
            ));
        }
        if !hookline_store::deliveries::requeue(c, &d, OutboxReason::Manual).await? {
            return Err(ApiError::conflict(
                "not_retryable",
                format!("a {} delivery cannot be retried; only failed and dead_letter ones", d.status),
            ));
        }
        trail.audit(auth.org_id, "delivery.retried", "delivery", id, json!({}));
        hookline_store::deliveries::get(c, d.id).await?.ok_or_else(|| ApiError::not_found("delivery"))
    })
    .await?;
    Ok(DeliveryView::from(row))
}

/// Re-queues an endpoint's failed and dead-lettered deliveries created in the window.
pub async fn recover_failures(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    body: RecoverInput,
) -> Result<Recovered, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    time_in_range("since", Some(body.since))?;
    time_in_range("until", body.until)?;
    let until = body.until.unwrap_or_else(Utc::now);
    if body.since >= until {
        return Err(ApiError::invalid_field("since", "must be before until"));
    }
    let since = body.since;
    let mut conn = app.conn().await?;
    active_endpoint(&mut conn, auth.org_id, id).await?;
    let (mut requeued, mut after, mut has_more) = (0, None, false);
    while requeued < RECOVER_MAX {
        let take = RECOVER_BATCH.min(RECOVER_MAX - requeued);
        let (n, last, full) = conn
            .transaction::<_, ApiError, _>(async |c| {
                let ids =
                    hookline_store::deliveries::recoverable(c, auth.org_id, id, (since, until), after, take as i64)
                        .await?;
                let n = hookline_store::deliveries::requeue_many(c, &ids, OutboxReason::Manual).await?;
                Ok((n, ids.last().copied(), ids.len() == take))
            })
            .await?;
        requeued += n;
        after = last;
        if !full {
            break;
        }
        has_more = requeued >= RECOVER_MAX;
    }
    let details = json!({"since": since, "until": until, "requeued": requeued, "has_more": has_more});
    change(&mut conn, &app.caches, Actor::Key(auth), async |_, trail| {
        trail.audit(auth.org_id, "webhook.recovered", "webhook", id, details);
        Ok(())
    })
    .await?;
    Ok(Recovered { requeued, has_more })
}

/// Sends a test event and waits for its attempt ([`first_attempt`]), unless no worker consumes.
pub async fn test_and_wait(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
) -> Result<(TestSent, Option<TestResult>), ApiError> {
    let sent = test(app, auth, id).await?;
    if !workers_consuming(app).await {
        return Ok((sent, None));
    }
    let result = first_attempt(app, auth.org_id, &sent).await?;
    Ok((sent, result))
}

/// Whether any worker consumes the work queue: without one, waiting for
/// the attempt only holds the caller until the deadline.
async fn workers_consuming(app: &ControlState) -> bool {
    use hookline_broker::lapin::options::QueueDeclareOptions;
    let Ok(ch) = app.broker.channel().await else { return false };
    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(hookline_broker::topology::QUEUE_WORK.into(), opts, Default::default())
        .await
        .is_ok_and(|q| q.consumer_count() > 0)
}

/// Waits for the test delivery's first attempt: up to the endpoint's timeout,
/// plus a few seconds for the trip through the queue.
pub async fn first_attempt(
    app: &ControlState,
    org: hookline_domain::id::OrgId,
    sent: &TestSent,
) -> Result<Option<TestResult>, ApiError> {
    let (timeout, format) = {
        let mut conn = app.conn().await?;
        let d = hookline_store::deliveries::get_for_org(&mut conn, org, sent.delivery_id)
            .await?
            .ok_or_else(|| ApiError::not_found("delivery"))?;
        let ep = hookline_store::endpoints::get(&mut conn, org, EndpointId::from_uuid(d.endpoint_id))
            .await?
            .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
        (ep.timeout_seconds, ep.signature_format)
    };
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_secs(timeout.max(1) as u64 + TEST_WAIT_MARGIN_SECS);
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        interval.tick().await;
        let attempt = {
            let mut conn = app.conn().await?;
            hookline_store::deliveries::attempts(&mut conn, sent.delivery_id.as_uuid()).await?.into_iter().next()
        };
        if let Some(a) = attempt {
            return Ok(Some(TestResult {
                delivery_id: sent.delivery_id,
                event_id: sent.event_id,
                succeeded: a.succeeded,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                response_excerpt: a.response_body,
                error: a.error_message,
                signature_format: format,
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// Sends a `webhook.test` event to one endpoint.
pub async fn test(app: &ControlState, auth: &Principal, id: EndpointId) -> Result<TestSent, ApiError> {
    auth.require(Scope::WebhooksWrite)?;
    let now = Utc::now();
    let event_id = EventId::new();
    let mut conn = app.conn().await?;
    let delivery_id = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
        let ep = active_endpoint(c, auth.org_id, id).await?;
        if ep.mode == "pull" {
            return Err(ApiError::conflict(
                "pull_endpoint",
                "a pull endpoint is never pushed to; read its events with GET /api/v1/webhooks/{id}/events",
            ));
        }
        let event = EventRow {
            id: event_id.as_uuid(),
            org_id: auth.org_id.as_uuid(),
            event_type: WEBHOOK_TEST.into(),
            data: json!({"message": "This is a test event from Hookline.", "webhook_id": id.to_string()}),
            occurred_at: now,
            idempotency_key: None,
            request_hash: None,
            delivery_count: 1,
            created_at: now,
        };
        let ids = hookline_store::events::fan_out(c, &event, &[ep.id], &[], OutboxReason::Manual, None).await?;
        let delivery_id = DeliveryId::from_uuid(ids[0]);
        trail.audit(auth.org_id, "webhook.tested", "webhook", id, json!({"delivery_id": delivery_id}));
        Ok(delivery_id)
    })
    .await?;
    Ok(TestSent { delivery_id, event_id })
}

pub async fn endpoint_stats(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    q: &StatsParams,
) -> Result<EndpointStatsView, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let window = q.window.clone().unwrap_or_else(|| "24h".into());
    let span = match window.as_str() {
        "1h" => Duration::hours(1),
        "24h" => Duration::hours(24),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        _ => return Err(ApiError::invalid_field("window", "must be 1h, 24h, 7d or 30d")),
    };
    let mut conn = app.conn().await?;
    let ep = hookline_store::endpoints::get(&mut conn, auth.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let s = hookline_store::deliveries::endpoint_stats(&mut conn, ep.id, Utc::now() - span).await?;
    let h = hookline_store::deliveries::endpoint_health(&mut conn, ep.id).await?;
    // Without Redis the fleet keeps no adaptive state: the configured limit is all there is.
    let flow = hookline_service_kit::flow::read_state(&app.redis, ep.id).await.unwrap_or_default();
    Ok(EndpointStatsView {
        webhook_id: id,
        window,
        attempts: s.attempts,
        succeeded: s.succeeded,
        failed: s.attempts - s.succeeded,
        success_rate: (s.attempts > 0).then(|| s.succeeded as f64 / s.attempts as f64),
        p50_latency_ms: s.p50_ms,
        p95_latency_ms: s.p95_ms,
        consecutive_failures: h.as_ref().map(|h| h.consecutive_failures).unwrap_or(0),
        last_success_at: h.as_ref().and_then(|h| h.last_success_at),
        last_failure_at: h.as_ref().and_then(|h| h.last_failure_at),
        flow: FlowView::of(&flow, ep.rate_limit_per_second),
    })
}
