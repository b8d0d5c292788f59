//! The failure rules. Each outcome is evaluated in one transaction that also
//! records it as counted (failures; see `evaluate`) and writes any
//! operational events (through the outbox, so they are as reliable as any
//! other event); email and Slack notifications follow the commit.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use hookline_broker::messages::{DeliveryOutcome, DeliveryTask, OutcomeKind, MESSAGE_VERSION};
use hookline_domain::event::{EventType, ALERT_OPENED, ALERT_RESOLVED, DELIVERY_DEAD_LETTERED, ENDPOINT_DISABLED};
use hookline_domain::id::{AlertId, DeliveryId, EndpointId, EventId};
use hookline_service_kit::caches::Topic;
use hookline_store::alerts::{AlertRow, Rate, SettingsRow};
use hookline_store::deliveries::HealthRow;
use hookline_store::events::EventRow;
use prost::Message;
use serde_json::json;
use uuid::Uuid;

use crate::metrics::{ALERTS, ENDPOINTS_DISABLED};
use crate::Alerting;

pub const ENDPOINT_FAILING: &str = "endpoint_failing";
pub const DELIVERY_DEAD_LETTERED_RULE: &str = "delivery_dead_lettered";
pub const ENDPOINT_DISABLED_RULE: &str = "endpoint_disabled";
pub const HIGH_FAILURE_RATE: &str = "high_failure_rate";
pub const RULES: [&str; 4] = [ENDPOINT_FAILING, DELIVERY_DEAD_LETTERED_RULE, ENDPOINT_DISABLED_RULE, HIGH_FAILURE_RATE];

/// What a committed evaluation asks the notifier to say.
#[derive(Debug, Clone)]
pub enum Notice {
    Opened(AlertRow),
    Repeated(AlertRow),
    Resolved(AlertRow),
}

type Tx<'a> = &'a mut AsyncPgConnection;

/// Writes an operational event for the org's endpoints that subscribed to
/// it by name, except `skip` (an endpoint never hears of its own failures,
/// so a failing endpoint cannot feed itself alerts in a loop).
pub async fn emit(
    c: Tx<'_>,
    org_id: Uuid,
    event_type: &str,
    data: serde_json::Value,
    skip: Option<Uuid>,
) -> diesel::QueryResult<usize> {
    let targets: Vec<Uuid> = hookline_store::endpoints::subscribed_to(c, org_id, event_type, true)
        .await?
        .into_iter()
        .filter(|e| Some(*e) != skip)
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let event = EventRow {
        id: EventId::new().as_uuid(),
        org_id,
        event_type: event_type.to_owned(),
        data,
        occurred_at: now,
        idempotency_key: None,
        request_hash: None,
        delivery_count: targets.len() as i32,
        created_at: now,
    };
    Ok(hookline_store::events::fan_out(c, &event, &targets, "fresh", None).await?.len())
}

pub fn alert_payload(a: &AlertRow) -> serde_json::Value {
    json!({
        "alert_id": AlertId::from_uuid(a.id).to_string(),
        "rule": a.rule,
        "state": a.state,
        "webhook_id": a.endpoint_id.map(|e| EndpointId::from_uuid(e).to_string()),
        "message": a.message,
        "occurrences": a.occurrences,
        "details": a.details,
    })
}

async fn raise(
    c: Tx<'_>,
    s: &SettingsRow,
    notices: &mut Vec<Notice>,
    org_id: Uuid,
    rule: &str,
    endpoint: Uuid,
    message: String,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
    let (alert, opened) =
        hookline_store::alerts::raise(c, AlertId::new().as_uuid(), org_id, rule, Some(endpoint), &message, &details, 1)
            .await?;
    if opened {
        ALERTS.with_label_values(&[rule, "opened"]).inc();
        if s.notify_via_webhooks {
            emit(c, org_id, ALERT_OPENED, alert_payload(&alert), Some(endpoint)).await?;
        }
        notices.push(Notice::Opened(alert));
    } else {
        notices.push(Notice::Repeated(alert));
    }
    Ok(())
}

pub async fn resolve(
    c: Tx<'_>,
    s: &SettingsRow,
    notices: &mut Vec<Notice>,
    endpoint: Uuid,
    rules: &[&str],
) -> diesel::QueryResult<()> {
    for alert in hookline_store::alerts::resolve_for_endpoint(c, endpoint, rules).await? {
        ALERTS.with_label_values(&[alert.rule.as_str(), "resolved"]).inc();
        if s.notify_via_webhooks {
            emit(c, alert.org_id, ALERT_RESOLVED, alert_payload(&alert), Some(endpoint)).await?;
        }
        notices.push(Notice::Resolved(alert));
    }
    Ok(())
}

/// Disables an endpoint and says so (alert, operational event).
pub async fn disable(
    c: Tx<'_>,
    s: &SettingsRow,
    notices: &mut Vec<Notice>,
    org_id: Uuid,
    endpoint: Uuid,
    reason: &str,
    already: bool,
) -> diesel::QueryResult<bool> {
    let changed = if already { true } else { hookline_store::endpoints::disable(c, endpoint, reason).await? };
    if !changed {
        return Ok(false);
    }
    ENDPOINTS_DISABLED.with_label_values(&[if reason.contains("410") { "gone" } else { "failing" }]).inc();
    let ep_id = EndpointId::from_uuid(endpoint).to_string();
    let url = hookline_store::endpoints::get_any(c, endpoint).await?.map(|e| e.url).unwrap_or_default();
    raise(
        c,
        s,
        notices,
        org_id,
        ENDPOINT_DISABLED_RULE,
        endpoint,
        format!("Endpoint {url} was disabled: {reason}"),
        json!({"reason": reason}),
    )
    .await?;
    if s.notify_via_webhooks {
        emit(c, org_id, ENDPOINT_DISABLED, json!({"webhook_id": ep_id, "url": url, "reason": reason}), Some(endpoint))
            .await?;
    }
    Ok(true)
}

/// The notices to send, whether an endpoint was disabled, and the org's
/// settings they were judged by (None when nothing was evaluated).
async fn evaluate(
    a: &Alerting,
    o: &DeliveryOutcome,
    memo: &mut BatchMemo,
    attention_known: bool,
) -> anyhow::Result<(Vec<Notice>, bool, Option<SettingsRow>)> {
    let delivery_id = DeliveryId::parse(&o.delivery_id)?.as_uuid();
    let endpoint = EndpointId::parse(&o.endpoint_id)?.as_uuid();
    let org_id = hookline_domain::id::OrgId::parse(&o.org_id)?.as_uuid();
    let kind = o.kind();
    let operational = EventType::parse(&o.event_type).map(|t| t.is_operational()).unwrap_or(false);
    let mut conn = a.kit.pool.get().await.map_err(|e| anyhow::anyhow!("database pool: {e}"))?;
    if kind == OutcomeKind::Delivered
        && !attention_known
        && !hookline_store::alerts::needs_attention(&mut conn, endpoint).await?
    {
        // The common case: a healthy endpoint delivered. Nothing to open or resolve, nothing to write.
        return Ok((Vec::new(), false, None));
    }
    let (notices, disabled, settings) = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            let mut notices = Vec::new();
            // Failures count (streaks, dead letters, repeats), so each is
            // recorded once. A success only resolves, or opens a rate alert
            // that a second judgement would find open: judging it twice
            // changes nothing, and it writes nothing when nothing changes.
            if kind != OutcomeKind::Delivered
                && !hookline_store::alerts::mark_outcome(c, delivery_id, o.attempt as i32, kind.routing_key()).await?
            {
                return Ok((notices, false, None));
            }
            let s = memo.settings(c, org_id).await?;
            let mut disabled = false;
            // The failure rate is judged on every attempt heard of, good or bad: it opens
            // above the threshold and resolves once the window is back under it.
            // A success only matters to the rate rule when an alert may resolve.
            let window_start = Utc::now() - Duration::minutes(i64::from(s.failure_rate_window_minutes));
            let judge_rate = match kind {
                OutcomeKind::RetryScheduled | OutcomeKind::DeadLettered | OutcomeKind::EndpointGone => true,
                OutcomeKind::Delivered => {
                    let recent_failure = memo
                        .health(c, endpoint)
                        .await?
                        .and_then(|h| h.last_failure_at)
                        .is_some_and(|t| t >= window_start);
                    recent_failure || hookline_store::alerts::has_unresolved(c, endpoint, HIGH_FAILURE_RATE).await?
                }
                _ => false,
            };
            if judge_rate {
                let rate = memo.rate(c, endpoint, &s).await?;
                let above = rate.attempts >= i64::from(s.failure_rate_min_attempts)
                    && rate.failed * 100 > i64::from(s.failure_rate_percent) * rate.attempts;
                if !above {
                    resolve(c, &s, &mut notices, endpoint, &[HIGH_FAILURE_RATE]).await?;
                } else if kind != OutcomeKind::Delivered
                    || !hookline_store::alerts::has_unresolved(c, endpoint, HIGH_FAILURE_RATE).await?
                {
                    // A success may open the alert (it can complete the minimum
                    // number of attempts) but does not repeat an open one.
                    let pct = rate.failed * 100 / rate.attempts;
                    let url = memo.url(c, endpoint).await?;
                    let msg = format!("{pct}% of attempts to {url} failed in the last {} minutes", s.failure_rate_window_minutes);
                    raise(c, &s, &mut notices, org_id, HIGH_FAILURE_RATE, endpoint, msg, json!({"attempts": rate.attempts, "failed": rate.failed})).await?;
                }
            }
            match kind {
                OutcomeKind::Delivered => {
                    resolve(c, &s, &mut notices, endpoint, &[ENDPOINT_FAILING, DELIVERY_DEAD_LETTERED_RULE]).await?;
                }
                OutcomeKind::RetryScheduled | OutcomeKind::DeadLettered | OutcomeKind::EndpointGone => {
                    let health = memo.health(c, endpoint).await?;
                    let url = memo.url(c, endpoint).await?;
                    if let Some(h) = &health {
                        if h.consecutive_failures >= s.endpoint_failing_threshold {
                            let n = h.consecutive_failures;
                            let msg = format!("Endpoint {url} failed {n} time{} in a row", if n == 1 { "" } else { "s" });
                            raise(c, &s, &mut notices, org_id, ENDPOINT_FAILING, endpoint, msg, json!({"consecutive_failures": h.consecutive_failures, "last_status_code": o.status_code, "error_class": o.error_class})).await?;
                        }
                    }
                    if matches!(kind, OutcomeKind::DeadLettered | OutcomeKind::EndpointGone) {
                        let count = health.as_ref().map(|h| h.consecutive_dead_letters).unwrap_or(1);
                        let msg = format!("Deliveries to {url} are being dead-lettered");
                        raise(c, &s, &mut notices, org_id, DELIVERY_DEAD_LETTERED_RULE, endpoint, msg, json!({"last_delivery_id": o.delivery_id, "consecutive_dead_letters": count})).await?;
                        if s.notify_via_webhooks && !operational {
                            let d = hookline_store::deliveries::get(c, delivery_id).await?;
                            emit(c, org_id, DELIVERY_DEAD_LETTERED, json!({
                                "delivery_id": o.delivery_id, "webhook_id": o.endpoint_id, "event": o.event_type,
                                "attempts": d.as_ref().map(|d| d.attempt_count), "last_status_code": d.as_ref().and_then(|d| d.last_status_code),
                                "last_error": d.as_ref().and_then(|d| d.last_error.clone()),
                            }), Some(endpoint)).await?;
                        }
                    }
                    if kind == OutcomeKind::EndpointGone {
                        disabled |= disable(c, &s, &mut notices, org_id, endpoint, "the endpoint answered 410 Gone", true).await?;
                    } else if let Some(h) = &health {
                        if h.consecutive_dead_letters >= s.auto_disable_dead_letters {
                            let reason = format!("{} consecutive deliveries were dead-lettered", h.consecutive_dead_letters);
                            disabled |= disable(c, &s, &mut notices, org_id, endpoint, &reason, false).await?;
                        } else if let Some(since) = h.failing_since {
                            let hours = i64::from(s.auto_disable_failing_hours);
                            if since <= Utc::now() - Duration::hours(hours) && h.last_success_at.is_none_or(|t| t < since) {
                                let reason = format!("no successful delivery for {hours} hours");
                                disabled |= disable(c, &s, &mut notices, org_id, endpoint, &reason, false).await?;
                            }
                        }
                    }
                }
                OutcomeKind::Cancelled | OutcomeKind::Unspecified => {}
            }
            Ok((notices, disabled, Some(s)))
        })
        .await?;
    Ok((notices, disabled, settings))
}

/// Evaluates several outcome messages in order, one result each. A delivery
/// to an endpoint with nothing to resolve changes nothing: those are
/// recognised for the whole batch with one query, unless an earlier outcome
/// of the batch concerned the same endpoint.
pub async fn process_outcomes(a: &Alerting, payloads: &[&[u8]]) -> Vec<anyhow::Result<()>> {
    let decoded: Vec<Option<DeliveryOutcome>> =
        payloads.iter().map(|p| DeliveryOutcome::decode(*p).ok().filter(|o| o.version == MESSAGE_VERSION)).collect();
    let delivered_to = |o: &DeliveryOutcome| {
        (o.kind() == OutcomeKind::Delivered)
            .then(|| EndpointId::parse(&o.endpoint_id).ok().map(|e| e.as_uuid()))
            .flatten()
    };
    let mut endpoints: Vec<Uuid> = decoded.iter().flatten().filter_map(delivered_to).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    // Alone, an outcome is judged by `process_outcome`'s own check.
    let attention = if payloads.len() > 1 && !endpoints.is_empty() {
        match a.kit.pool.get().await {
            Ok(mut conn) => hookline_store::alerts::needing_attention(&mut conn, &endpoints).await.ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    let mut touched = std::collections::HashSet::new();
    // Per endpoint: whether the last outcome judged in this batch was a
    // success. A success right after another judges the same rate (the
    // batch's memo) against alerts the first already resolved: skipped.
    let mut last_was_success: std::collections::HashMap<Uuid, bool> = std::collections::HashMap::new();
    let mut memo = BatchMemo::default();
    let mut results = Vec::with_capacity(payloads.len());
    for (payload, outcome) in payloads.iter().zip(&decoded) {
        let endpoint = outcome.as_ref().and_then(|o| EndpointId::parse(&o.endpoint_id).ok()).map(|e| e.as_uuid());
        let delivered = outcome.as_ref().is_some_and(|o| o.kind() == OutcomeKind::Delivered);
        let mut attention_known = false;
        if let (true, Some(e)) = (delivered, endpoint) {
            if last_was_success.get(&e) == Some(&true) {
                results.push(Ok(()));
                continue;
            }
            if let Some(attention) = &attention {
                if !attention.contains(&e) && !touched.contains(&e) {
                    results.push(Ok(()));
                    continue;
                }
                attention_known = attention.contains(&e);
            }
        }
        if let (Some(e), Some(_)) = (endpoint, &attention) {
            touched.insert(e);
        }
        let result = process_outcome_with(a, payload, &mut memo, attention_known).await;
        if let Some(e) = endpoint {
            last_was_success.insert(e, delivered && result.is_ok());
        }
        results.push(result);
    }
    results
}

/// What was already read while judging one batch of outcomes. Every outcome
/// is published after its attempt is committed, so the first read of an
/// endpoint's failure rate (up to a thousand rows) or health already counts
/// the attempts of the whole batch; reading them again for each outcome
/// would only add attempts whose outcomes come in a later batch. Settings
/// and URLs change by hand, far less often than a batch lasts.
#[derive(Default)]
pub struct BatchMemo {
    rates: HashMap<(Uuid, i32), Rate>,
    health: HashMap<Uuid, Option<HealthRow>>,
    settings: HashMap<Uuid, SettingsRow>,
    urls: HashMap<Uuid, String>,
}

impl BatchMemo {
    async fn rate(&mut self, c: Tx<'_>, endpoint: Uuid, s: &SettingsRow) -> diesel::QueryResult<Rate> {
        let key = (endpoint, s.failure_rate_window_minutes);
        if let Some(r) = self.rates.get(&key) {
            return Ok(*r);
        }
        let window = Utc::now() - Duration::minutes(i64::from(s.failure_rate_window_minutes));
        let r = hookline_store::alerts::failure_rate(c, endpoint, window).await?;
        self.rates.insert(key, r);
        Ok(r)
    }

    async fn health(&mut self, c: Tx<'_>, endpoint: Uuid) -> diesel::QueryResult<Option<HealthRow>> {
        if let Some(h) = self.health.get(&endpoint) {
            return Ok(h.clone());
        }
        let h = hookline_store::deliveries::endpoint_health(c, endpoint).await?;
        self.health.insert(endpoint, h.clone());
        Ok(h)
    }

    async fn settings(&mut self, c: Tx<'_>, org_id: Uuid) -> diesel::QueryResult<SettingsRow> {
        if let Some(s) = self.settings.get(&org_id) {
            return Ok(s.clone());
        }
        let s = hookline_store::alerts::settings(c, org_id).await?;
        self.settings.insert(org_id, s.clone());
        Ok(s)
    }

    async fn url(&mut self, c: Tx<'_>, endpoint: Uuid) -> diesel::QueryResult<String> {
        if let Some(u) = self.urls.get(&endpoint) {
            return Ok(u.clone());
        }
        let u = hookline_store::endpoints::get_any(c, endpoint).await?.map(|e| e.url).unwrap_or_default();
        self.urls.insert(endpoint, u.clone());
        Ok(u)
    }
}

/// Evaluates one outcome message.
pub async fn process_outcome(a: &Alerting, payload: &[u8]) -> anyhow::Result<()> {
    process_outcome_with(a, payload, &mut BatchMemo::default(), false).await
}

/// Evaluates one outcome message of a batch, sharing what was read for
/// the batch. `attention_known`: the batch's own check found that the
/// endpoint has something to resolve, so a success need not ask again.
async fn process_outcome_with(
    a: &Alerting,
    payload: &[u8],
    memo: &mut BatchMemo,
    attention_known: bool,
) -> anyhow::Result<()> {
    let o = match DeliveryOutcome::decode(payload) {
        Ok(o) if o.version == MESSAGE_VERSION => o,
        _ => {
            tracing::error!("an outcome message this version cannot read; dropping it");
            return Ok(());
        }
    };
    let (notices, disabled, settings) = evaluate(a, &o, memo, attention_known).await?;
    if disabled {
        a.kit.caches.invalidate(Topic::Endpoints).await;
    }
    if let (false, Some(settings)) = (notices.is_empty(), settings) {
        // Opening and resolving may have written operational events; a repeat writes none.
        if notices.iter().any(|n| !matches!(n, Notice::Repeated(_))) {
            a.kit.outbox_wake.notify_one();
        }
        a.notifier.dispatch(&a.kit, &settings, notices).await;
    }
    Ok(())
}

/// A message on the dead-letter queue. Deliveries the worker dead-lettered
/// were counted through their outcome already; this catches the rest
/// (poison messages the broker gave up on), marks them and raises the alert.
pub async fn process_dead_letter(a: &Alerting, kind: Option<&str>, payload: &[u8]) -> anyhow::Result<()> {
    let tasks = match hookline_broker::messages::tasks_of(kind, payload) {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable message reached the dead-letter queue; it stays in deliveries.dead for inspection");
            return Ok(());
        }
    };
    // A batch is dead-lettered whole only by the broker (redelivery limit).
    for task in &tasks {
        dead_letter_task(a, task).await?;
    }
    Ok(())
}

async fn dead_letter_task(a: &Alerting, task: &DeliveryTask) -> anyhow::Result<()> {
    let Ok(delivery_id) = DeliveryId::parse(&task.delivery_id) else { return Ok(()) };
    let mut conn = a.kit.pool.get().await.map_err(|e| anyhow::anyhow!("database pool: {e}"))?;
    let Some(d) = hookline_store::deliveries::get(&mut conn, delivery_id.as_uuid()).await? else { return Ok(()) };
    if matches!(d.status.as_str(), "dead_letter" | "delivered" | "cancelled") {
        return Ok(());
    }
    // The broker dead-lettered it (redelivery limit): record that, then count it like any other.
    hookline_store::deliveries::set_status(&mut conn, d.id, "dead_letter").await?;
    drop(conn);
    tracing::warn!(delivery_id = %task.delivery_id, "the broker dead-lettered a delivery after repeated redeliveries");
    let outcome = DeliveryOutcome {
        version: MESSAGE_VERSION,
        delivery_id: task.delivery_id.clone(),
        org_id: task.org_id.clone(),
        endpoint_id: task.endpoint_id.clone(),
        event_type: task.event_type.clone(),
        attempt: task.attempt,
        kind: OutcomeKind::DeadLettered as i32,
        status_code: 0,
        error_class: "redelivery_limit".into(),
        latency_ms: 0,
        occurred_at_ms: Utc::now().timestamp_millis(),
    };
    process_outcome(a, &outcome.encode_to_vec()).await
}
