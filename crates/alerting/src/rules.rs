//! The failure rules. A batch of outcomes is judged in one transaction that
//! also records its failures as counted (see `judge`) and writes any
//! operational events (through the outbox, so they are as reliable as any
//! other event); email and Slack notifications follow the commit.

use anyhow::Context as _;
use hookline_domain::status::{AlertRule, DeliveryStatus, OutboxReason};
use std::collections::{HashMap, HashSet};

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

/// What a committed evaluation asks the notifier to say.
#[derive(Debug, Clone)]
pub enum Notice {
    Opened(AlertRow),
    Repeated(AlertRow),
    Resolved(AlertRow),
}

impl Notice {
    pub fn alert(&self) -> &AlertRow {
        match self {
            Notice::Opened(a) | Notice::Repeated(a) | Notice::Resolved(a) => a,
        }
    }
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
    let targets: Vec<Uuid> = hookline_store::endpoints::subscribed_by_name(c, org_id, event_type)
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
    Ok(hookline_store::events::fan_out(c, &event, &targets, &[], OutboxReason::Fresh, None).await?.len())
}

pub fn alert_payload(a: &AlertRow) -> serde_json::Value {
    json!({
        "alert_id": AlertId::from_uuid(a.id).to_string(),
        "rule": a.rule.as_str(),
        "state": a.state,
        "webhook_id": a.endpoint_id.map(|e| EndpointId::from_uuid(e).to_string()),
        "message": a.message,
        "occurrences": a.occurrences,
        "details": a.details,
    })
}

/// One transaction's judging: what it has read (see [`Judging::rate`]),
/// which alerts it knows to be open, the repeats it has yet to write, and
/// what it decided, acted on after the commit.
///
/// A repeat of an alert already open is counted here and written once, with
/// the number of occurrences, when the judging ends ([`Judging::finish`]) or
/// before the alert resolves: a burst of failures to one endpoint updates its
/// alert once per batch rather than once per failure.
#[derive(Default)]
pub struct Judging {
    rates: HashMap<(Uuid, i32), Rate>,
    health: HashMap<Uuid, Option<HealthRow>>,
    settings: HashMap<Uuid, SettingsRow>,
    urls: HashMap<Uuid, String>,
    /// Per endpoint, the rules of its unresolved alerts.
    open: HashMap<Uuid, HashSet<AlertRule>>,
    repeats: Vec<Repeat>,
    pub notices: Vec<Notice>,
    /// Endpoints disabled, as (org, endpoint).
    pub disabled: Vec<(Uuid, Uuid)>,
}

/// Occurrences of an open alert not written yet; the latest message and details win.
struct Repeat {
    org_id: Uuid,
    rule: AlertRule,
    endpoint: Uuid,
    message: String,
    details: serde_json::Value,
    occurrences: i32,
}

impl Judging {
    /// Every outcome is published after its attempt is committed, so the
    /// first read of an endpoint's failure rate (up to a thousand rows) or
    /// health already counts the attempts of the whole batch; reading them
    /// again for each outcome would only add attempts whose outcomes come in
    /// a later batch. Settings and URLs change by hand, far less often than
    /// a batch lasts.
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

    pub async fn settings(&mut self, c: Tx<'_>, org_id: Uuid) -> diesel::QueryResult<SettingsRow> {
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

    /// Whether the endpoint has an unresolved alert of `rule`, as this
    /// transaction has read and changed them.
    async fn is_open(&mut self, c: Tx<'_>, endpoint: Uuid, rule: AlertRule) -> diesel::QueryResult<bool> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.open.entry(endpoint) {
            let rules = hookline_store::alerts::unresolved_rules(c, endpoint).await?;
            e.insert(rules.into_iter().collect());
        }
        Ok(self.open[&endpoint].contains(&rule))
    }

    /// Writes the repeats counted so far of `endpoint` (every endpoint when
    /// None) whose rule is one of `rules` (every rule when None).
    async fn write_repeats(
        &mut self,
        c: Tx<'_>,
        endpoint: Option<Uuid>,
        rules: Option<&[AlertRule]>,
    ) -> diesel::QueryResult<()> {
        let (due, kept) = std::mem::take(&mut self.repeats).into_iter().partition::<Vec<_>, _>(|r| {
            endpoint.is_none_or(|e| e == r.endpoint) && rules.is_none_or(|rules| rules.contains(&r.rule))
        });
        self.repeats = kept;
        for r in due {
            let s = self.settings(c, r.org_id).await?;
            write_raise(c, self, &s, r.org_id, r.rule, r.endpoint, &r.message, &r.details, r.occurrences).await?;
        }
        Ok(())
    }

    /// Writes what is still counted in memory. Call it last in the transaction.
    pub async fn finish(&mut self, c: Tx<'_>) -> diesel::QueryResult<()> {
        self.write_repeats(c, None, None).await
    }
}

/// Opens an alert, or counts another occurrence of the open one (in memory
/// until the judging ends, when this transaction knows it is open).
#[allow(clippy::too_many_arguments)]
async fn raise(
    c: Tx<'_>,
    j: &mut Judging,
    s: &SettingsRow,
    org_id: Uuid,
    rule: AlertRule,
    endpoint: Uuid,
    message: String,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
    if j.is_open(c, endpoint, rule).await? {
        match j.repeats.iter_mut().find(|r| r.endpoint == endpoint && r.rule == rule) {
            Some(r) => {
                r.occurrences += 1;
                r.message = message;
                r.details = details;
            }
            None => j.repeats.push(Repeat { org_id, rule, endpoint, message, details, occurrences: 1 }),
        }
        return Ok(());
    }
    write_raise(c, j, s, org_id, rule, endpoint, &message, &details, 1).await
}

#[allow(clippy::too_many_arguments)]
async fn write_raise(
    c: Tx<'_>,
    j: &mut Judging,
    s: &SettingsRow,
    org_id: Uuid,
    rule: AlertRule,
    endpoint: Uuid,
    message: &str,
    details: &serde_json::Value,
    occurrences: i32,
) -> diesel::QueryResult<()> {
    let (alert, opened) = hookline_store::alerts::raise(
        c,
        AlertId::new().as_uuid(),
        org_id,
        rule,
        Some(endpoint),
        message,
        details,
        occurrences,
    )
    .await?;
    j.open.entry(endpoint).or_default().insert(rule);
    if opened {
        ALERTS.with_label_values(&[rule.as_str(), "opened"]).inc();
        if s.notify_via_webhooks {
            emit(c, org_id, ALERT_OPENED, alert_payload(&alert), Some(endpoint)).await?;
        }
        j.notices.push(Notice::Opened(alert));
    } else {
        j.notices.push(Notice::Repeated(alert));
    }
    Ok(())
}

/// Resolves the endpoint's open alerts of `rules`, after writing the
/// occurrences still counted in memory. Asks nothing of the database when
/// none of them is open.
pub async fn resolve(
    c: Tx<'_>,
    j: &mut Judging,
    s: &SettingsRow,
    endpoint: Uuid,
    rules: &[AlertRule],
) -> diesel::QueryResult<()> {
    let mut open = Vec::with_capacity(rules.len());
    for rule in rules {
        if j.is_open(c, endpoint, *rule).await? {
            open.push(*rule);
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    j.write_repeats(c, Some(endpoint), Some(&open)).await?;
    for alert in hookline_store::alerts::resolve_for_endpoint(c, endpoint, &open).await? {
        ALERTS.with_label_values(&[alert.rule.as_str(), "resolved"]).inc();
        if s.notify_via_webhooks {
            emit(c, alert.org_id, ALERT_RESOLVED, alert_payload(&alert), Some(endpoint)).await?;
        }
        j.notices.push(Notice::Resolved(alert));
    }
    if let Some(set) = j.open.get_mut(&endpoint) {
        set.retain(|r| !open.contains(r));
    }
    Ok(())
}

/// Disables an endpoint and says so (alert, operational event).
pub async fn disable(
    c: Tx<'_>,
    j: &mut Judging,
    s: &SettingsRow,
    org_id: Uuid,
    endpoint: Uuid,
    reason: &str,
    already: bool,
) -> diesel::QueryResult<()> {
    let changed = if already { true } else { hookline_store::endpoints::disable(c, endpoint, reason).await? };
    if !changed {
        return Ok(());
    }
    j.disabled.push((org_id, endpoint));
    ENDPOINTS_DISABLED.with_label_values(&[if reason.contains("410") { "gone" } else { "failing" }]).inc();
    let ep_id = EndpointId::from_uuid(endpoint).to_string();
    let url = j.url(c, endpoint).await?;
    let message = format!("Endpoint {url} was disabled: {reason}");
    raise(c, j, s, org_id, AlertRule::EndpointDisabled, endpoint, message, json!({"reason": reason})).await?;
    if s.notify_via_webhooks {
        emit(c, org_id, ENDPOINT_DISABLED, json!({"webhook_id": ep_id, "url": url, "reason": reason}), Some(endpoint))
            .await?;
    }
    Ok(())
}

/// An outcome message, read and checked.
struct Outcome {
    o: DeliveryOutcome,
    kind: OutcomeKind,
    delivery_id: Uuid,
    endpoint: Uuid,
    org_id: Uuid,
}

impl Outcome {
    /// The outcomes of one message (a batch carries several). Nothing (logged)
    /// from a message this version cannot read, and an outcome whose ids are
    /// malformed is left out: judging them again could never succeed.
    fn read(kind: Option<&str>, payload: &[u8]) -> Vec<Self> {
        let outcomes = match hookline_broker::messages::outcomes_of(kind, payload) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, "an outcome message this version cannot read; dropping it");
                return Vec::new();
            }
        };
        outcomes.into_iter().filter_map(Self::checked).collect()
    }

    fn checked(o: DeliveryOutcome) -> Option<Self> {
        let ids = (|| {
            anyhow::Ok((
                DeliveryId::parse(&o.delivery_id)?.as_uuid(),
                EndpointId::parse(&o.endpoint_id)?.as_uuid(),
                hookline_domain::id::OrgId::parse(&o.org_id)?.as_uuid(),
            ))
        })();
        match ids {
            Ok((delivery_id, endpoint, org_id)) => Some(Self { kind: o.kind(), o, delivery_id, endpoint, org_id }),
            Err(e) => {
                tracing::error!(error = %e, "an outcome with a malformed id; dropping it");
                None
            }
        }
    }

    fn counted(&self) -> (Uuid, i32, String) {
        (self.delivery_id, self.o.attempt as i32, self.kind.routing_key().to_owned())
    }
}

/// Judges one outcome inside the batch's transaction.
async fn evaluate(c: Tx<'_>, j: &mut Judging, out: &Outcome) -> diesel::QueryResult<()> {
    let Outcome { o, kind, delivery_id, endpoint, org_id } = out;
    let (kind, delivery_id, endpoint, org_id) = (*kind, *delivery_id, *endpoint, *org_id);
    let operational = EventType::parse(&o.event_type).map(|t| t.is_operational()).unwrap_or(false);
    let s = j.settings(c, org_id).await?;
    // The failure rate is judged on every attempt heard of, good or bad: it opens
    // above the threshold and resolves once the window is back under it.
    // A success only matters to the rate rule when an alert may resolve.
    let window_start = Utc::now() - Duration::minutes(i64::from(s.failure_rate_window_minutes));
    let judge_rate = match kind {
        OutcomeKind::RetryScheduled | OutcomeKind::DeadLettered | OutcomeKind::EndpointGone => true,
        OutcomeKind::Delivered => {
            let recent_failure =
                j.health(c, endpoint).await?.and_then(|h| h.last_failure_at).is_some_and(|t| t >= window_start);
            recent_failure || j.is_open(c, endpoint, AlertRule::HighFailureRate).await?
        }
        _ => false,
    };
    if judge_rate {
        let rate = j.rate(c, endpoint, &s).await?;
        let above = rate.attempts >= i64::from(s.failure_rate_min_attempts)
            && rate.failed * 100 > i64::from(s.failure_rate_percent) * rate.attempts;
        if !above {
            resolve(c, j, &s, endpoint, &[AlertRule::HighFailureRate]).await?;
        } else if kind != OutcomeKind::Delivered || !j.is_open(c, endpoint, AlertRule::HighFailureRate).await? {
            // A success may open the alert (it can complete the minimum
            // number of attempts) but does not repeat an open one.
            let pct = rate.failed * 100 / rate.attempts;
            let url = j.url(c, endpoint).await?;
            let msg =
                format!("{pct}% of attempts to {url} failed in the last {} minutes", s.failure_rate_window_minutes);
            raise(
                c,
                j,
                &s,
                org_id,
                AlertRule::HighFailureRate,
                endpoint,
                msg,
                json!({"attempts": rate.attempts, "failed": rate.failed}),
            )
            .await?;
        }
    }
    match kind {
        OutcomeKind::Delivered => {
            // Judged on the endpoint's state, not on the order messages
            // arrive in: a success heard late (a worker reports successes
            // at most once a second per endpoint) must not resolve what the
            // failures after it would open again.
            let h = j.health(c, endpoint).await?;
            let mut ended = Vec::with_capacity(2);
            if h.as_ref().is_none_or(|h| h.consecutive_failures < s.endpoint_failing_threshold) {
                ended.push(AlertRule::EndpointFailing);
            }
            if h.as_ref().is_none_or(|h| h.consecutive_dead_letters == 0) {
                ended.push(AlertRule::DeliveryDeadLettered);
            }
            resolve(c, j, &s, endpoint, &ended).await?;
        }
        OutcomeKind::RetryScheduled | OutcomeKind::DeadLettered | OutcomeKind::EndpointGone => {
            let health = j.health(c, endpoint).await?;
            let url = j.url(c, endpoint).await?;
            if let Some(h) = &health {
                if h.consecutive_failures >= s.endpoint_failing_threshold {
                    let n = h.consecutive_failures;
                    let msg = format!("Endpoint {url} failed {n} time{} in a row", if n == 1 { "" } else { "s" });
                    raise(c, j, &s, org_id, AlertRule::EndpointFailing, endpoint, msg, json!({"consecutive_failures": h.consecutive_failures, "last_status_code": o.status_code, "error_class": o.error_class})).await?;
                }
            }
            if matches!(kind, OutcomeKind::DeadLettered | OutcomeKind::EndpointGone) {
                let count = health.as_ref().map(|h| h.consecutive_dead_letters).unwrap_or(1);
                let msg = format!("Deliveries to {url} are being dead-lettered");
                raise(
                    c,
                    j,
                    &s,
                    org_id,
                    AlertRule::DeliveryDeadLettered,
                    endpoint,
                    msg,
                    json!({"last_delivery_id": o.delivery_id, "consecutive_dead_letters": count}),
                )
                .await?;
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
                disable(c, j, &s, org_id, endpoint, "the endpoint answered 410 Gone", true).await?;
            } else if let Some(h) = &health {
                let attempts_cap = s.auto_disable_failed_attempts;
                if attempts_cap > 0 && h.consecutive_failures >= attempts_cap {
                    let reason = format!("{} consecutive attempts failed", h.consecutive_failures);
                    disable(c, j, &s, org_id, endpoint, &reason, false).await?;
                } else if h.consecutive_dead_letters >= s.auto_disable_dead_letters {
                    let reason = format!("{} consecutive deliveries were dead-lettered", h.consecutive_dead_letters);
                    disable(c, j, &s, org_id, endpoint, &reason, false).await?;
                } else if let Some(since) = h.failing_since {
                    let hours = i64::from(s.auto_disable_failing_hours);
                    if since <= Utc::now() - Duration::hours(hours) && h.last_success_at.is_none_or(|t| t < since) {
                        let reason = format!("no successful delivery for {hours} hours");
                        disable(c, j, &s, org_id, endpoint, &reason, false).await?;
                    }
                }
            }
        }
        OutcomeKind::Cancelled | OutcomeKind::Unspecified => {}
    }
    Ok(())
}

/// Evaluates several single-outcome messages in order, one result each
/// (see [`process_messages`]).
pub async fn process_outcomes(a: &Alerting, payloads: &[&[u8]]) -> Vec<anyhow::Result<()>> {
    let messages: Vec<(Option<&str>, &[u8])> = payloads.iter().map(|p| (None, *p)).collect();
    process_messages(a, &messages).await
}

/// Evaluates several outcome messages (each `(type, payload)`: a single
/// outcome or a batch) in order, one result per message, in one
/// transaction: one commit for the lot, each alert written once however
/// often it occurred. Should that fail, each message is judged again
/// alone, so one that cannot be judged holds up only itself.
pub async fn process_messages(a: &Alerting, messages: &[(Option<&str>, &[u8])]) -> Vec<anyhow::Result<()>> {
    let outcomes: Vec<Outcome> = messages.iter().flat_map(|(kind, p)| Outcome::read(*kind, p)).collect();
    match judge(a, &outcomes).await {
        Ok(()) => messages.iter().map(|_| Ok(())).collect(),
        Err(e) if messages.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "judging a batch of outcomes failed; judging each message alone");
            let mut results = Vec::with_capacity(messages.len());
            for (kind, p) in messages {
                results.push(judge(a, &Outcome::read(*kind, p)).await);
            }
            results
        }
    }
}

/// Judges outcomes in order in one transaction, then acts on what was decided.
///
/// Failures count (streaks, dead letters, repeats), so each is recorded in
/// `processed_outcomes` in the same transaction and judged only the first
/// time. A success only resolves, or opens a rate alert that a second
/// judgement would find open: judging it twice changes nothing, and it
/// writes nothing when nothing changes. So a success is skipped when the
/// endpoint has nothing a success could change (one query for the batch,
/// see `alerts::SUCCESS_MATTERS`) and no earlier outcome of the batch
/// concerned it, or when it follows another success to the same endpoint
/// (that one judged the same rate against alerts it already resolved).
async fn judge(a: &Alerting, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut delivered_to: Vec<Uuid> =
        outcomes.iter().filter(|o| o.kind == OutcomeKind::Delivered).map(|o| o.endpoint).collect();
    delivered_to.sort_unstable();
    delivered_to.dedup();
    let mut conn = a.state.pool.get().await.context("database pool")?;
    let attention = if delivered_to.is_empty() {
        HashSet::new()
    } else {
        hookline_store::alerts::needing_attention(&mut conn, &delivered_to).await?
    };
    let mut last_was_success: HashMap<Uuid, bool> = HashMap::new();
    let mut judged = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        let delivered = o.kind == OutcomeKind::Delivered;
        let skip = delivered
            && match last_was_success.get(&o.endpoint) {
                Some(&was) => was,
                None => !attention.contains(&o.endpoint),
            };
        last_was_success.insert(o.endpoint, delivered);
        if !skip {
            judged.push(o);
        }
    }
    if judged.is_empty() {
        return Ok(());
    }
    let mut j = Judging::default();
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        let failures: Vec<(Uuid, i32, &str)> = judged
            .iter()
            .filter(|o| o.kind != OutcomeKind::Delivered)
            .map(|o| (o.delivery_id, o.o.attempt as i32, o.kind.routing_key()))
            .collect();
        let mut fresh = hookline_store::alerts::mark_outcomes(c, &failures).await?;
        for o in &judged {
            if o.kind != OutcomeKind::Delivered && !fresh.remove(&o.counted()) {
                continue;
            }
            evaluate(c, &mut j, o).await?;
        }
        j.finish(c).await
    })
    .await?;
    drop(conn);
    for (org, id) in std::mem::take(&mut j.disabled) {
        a.state.caches.invalidate(Topic::Endpoint { org, id }).await;
    }
    // Notices go out with the settings of the organisation they concern.
    let mut by_org: Vec<(Uuid, Vec<Notice>)> = Vec::new();
    for n in std::mem::take(&mut j.notices) {
        let org = n.alert().org_id;
        match by_org.iter_mut().find(|(o, _)| *o == org) {
            Some((_, list)) => list.push(n),
            None => by_org.push((org, vec![n])),
        }
    }
    for (org, notices) in by_org {
        if let Some(settings) = j.settings.get(&org) {
            a.notifier.dispatch(&a.state, settings, notices).await;
        }
    }
    Ok(())
}

/// Evaluates one outcome message.
pub async fn process_outcome(a: &Alerting, payload: &[u8]) -> anyhow::Result<()> {
    judge(a, &Outcome::read(None, payload)).await
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
    let mut conn = a.state.pool.get().await.context("database pool")?;
    let Some(d) = hookline_store::deliveries::get(&mut conn, delivery_id.as_uuid()).await? else { return Ok(()) };
    if !d.status.awaits_attempt() {
        return Ok(());
    }
    // The broker dead-lettered it (redelivery limit): record that, then count it like any other.
    hookline_store::deliveries::set_status(&mut conn, d.id, DeliveryStatus::DeadLetter).await?;
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
