use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_delivery_worker::sweeper::sweep_once;
use hookline_store::schema::delivery_retries;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{drain_tasks, eventually, queue_depth};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{wait_received, Stack};

fn gaps(r: &TestReceiver) -> Vec<Duration> {
    let got = r.received();
    got.windows(2).map(|w| w[1].at.duration_since(w[0].at)).collect()
}

fn assert_spacing(actual: &[Duration], expected_ms: &[u64]) {
    assert_eq!(actual.len(), expected_ms.len(), "{actual:?}");
    for (a, e) in actual.iter().zip(expected_ms) {
        let a = a.as_millis() as u64;
        // Never early; late by at most a second of broker and worker latency.
        assert!(a + 50 >= *e && a <= e + 1000, "gap {a} ms, expected {e} ms (all: {actual:?})");
    }
}

#[tokio::test]
async fn the_default_schedule_is_1_2_4_8_16_s_then_the_dead_letter_queue() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    s.send_lead("l1").await;
    let got = wait_received(&r, 6, Duration::from_secs(60)).await;
    let attempts: Vec<_> = got.iter().map(|g| g.header("x-webhook-attempt").unwrap().to_owned()).collect();
    assert_eq!(attempts, ["1", "2", "3", "4", "5", "6"]);
    let id = got[0].header("x-webhook-delivery-id").unwrap().to_owned();
    assert!(
        got.iter().all(|g| g.header("x-webhook-delivery-id") == Some(id.as_str())),
        "one delivery id across attempts"
    );
    assert_spacing(&gaps(&r), &[1000, 2000, 4000, 8000, 16000]);
    let d = s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(10)).await;
    assert_eq!(d[0]["attempts"], 6);
    eventually(Duration::from_secs(10), "the message on the dead-letter queue", || async {
        (queue_depth(&s.env.vhost, "deliveries.dead").await.unwrap() == 1).then_some(())
    })
    .await;
    // No seventh attempt.
    assert_eq!(r.count(), 6);
}

#[tokio::test]
async fn a_custom_schedule_is_followed() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(502));
    let ep = s
        .endpoint(&r, "/hook", json!({"max_retries": 3, "retry_policy": {"initial_delay_ms": 300, "multiplier": 3.0, "max_delay_ms": 2000}}))
        .await;
    s.send_lead("l1").await;
    wait_received(&r, 4, Duration::from_secs(30)).await;
    s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(10)).await;
    assert_spacing(&gaps(&r), &[300, 900, 2000]);
    assert_eq!(r.count(), 4);
}

#[tokio::test]
async fn success_after_failures_and_retry_after_is_honoured() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::RetryAfter { status: 429, secs: 2 });
    let ep = s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 100}})).await;
    s.send_lead("l1").await;
    wait_received(&r, 1, Duration::from_secs(20)).await;
    r.set(Behaviour::FailFirst { n: 2, status: 500 });
    wait_received(&r, 3, Duration::from_secs(20)).await;
    let g = gaps(&r);
    assert!(g[0] >= Duration::from_millis(1950), "Retry-After: 2 was honoured: {g:?}");
    assert!(g[1] < Duration::from_millis(1500), "then the policy's 200 ms applies: {g:?}");
    let d = s.wait_status(&ep, 1, "delivered", Duration::from_secs(10)).await;
    assert_eq!(d[0]["attempts"], 3);
    let (_, stats) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}/stats?window=24h"), None).await;
    assert_eq!(stats["attempts"], 3);
    assert_eq!(stats["succeeded"], 1);
    assert_eq!(stats["consecutive_failures"], 0);
    assert!(stats["last_success_at"].is_string() && stats["last_failure_at"].is_string());
}

#[tokio::test]
async fn a_410_disables_the_endpoint() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(410));
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    s.send_lead("l1").await;
    s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!(v["is_active"], false);
    assert!(v["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(r.count(), 1, "no retries after 410");
    // Later events skip the disabled endpoint.
    s.send_lead("l2").await;
    assert_eq!(s.deliveries(&format!("webhook_id={ep}")).await.len(), 1);
}

#[tokio::test]
async fn timeouts_and_resets_are_classified_and_retried() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Hang);
    let ep = s
        .endpoint(&r, "/hook", json!({"timeout": 1, "max_retries": 1, "retry_policy": {"initial_delay_ms": 100}}))
        .await;
    s.send_lead("l1").await;
    wait_received(&r, 1, Duration::from_secs(20)).await;
    r.set(Behaviour::Reset);
    let d = s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    let (_, detail) =
        s.control(Method::GET, &format!("/api/v1/webhooks/deliveries/{}", d[0]["id"].as_str().unwrap()), None).await;
    let classes: Vec<_> = detail["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error_class"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(classes, ["timeout", "connect"]);
}

#[tokio::test]
async fn alerting_hears_of_failures_and_the_successes_that_follow_them_only() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 200}})).await;
    for i in 0..3 {
        s.send_lead(&format!("ok{i}")).await;
    }
    s.wait_status(&ep, 3, "delivered", Duration::from_secs(20)).await;
    // The receiver has served three; the fourth request fails, its retry succeeds.
    r.set(Behaviour::FailFirst { n: 4, status: 500 });
    s.send_lead("flaky").await;
    s.wait_status(&ep, 4, "delivered", Duration::from_secs(20)).await;
    // Nothing consumes outcomes here: the queue holds what alerting would
    // hear. Successes to a healthy endpoint change nothing and are not sent;
    // the failure is, and so is the success after it (it may resolve an alert).
    let vhost = &s.env.vhost;
    eventually(Duration::from_secs(10), "the failure and the recovery on the outcomes queue", || async {
        (queue_depth(vhost, "outcomes.alerting").await.unwrap_or(0) == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn successes_after_a_failure_reach_alerting_once_an_interval_the_latest_last() {
    use hookline_broker::messages::OutcomeKind;
    use hookline_delivery_worker::successes::INTERVAL;

    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailFirst { n: 1, status: 500 });
    let ep = s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 200}})).await;
    let started = std::time::Instant::now();
    s.send_lead("flaky").await;
    // After a failure every success may change the failure rate, so each
    // one matters to alerting; a burst of them is reported as a few.
    for i in 0..20 {
        s.send_lead(&format!("ok{i}")).await;
    }
    s.wait_status(&ep, 21, "delivered", Duration::from_secs(30)).await;
    let last_event = s.send_lead("last").await;
    let last = s.wait_status(&ep, 22, "delivered", Duration::from_secs(30)).await;
    let last_delivery = last.iter().find(|d| d["event_id"] == last_event.as_str()).expect("the last delivery")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The last success is reported, at once or when its interval ends.
    let vhost = &s.env.vhost;
    let drained = std::cell::RefCell::new(Vec::new());
    eventually(Duration::from_secs(10), "the last success on the outcomes queue", || async {
        let more = hookline_test_support::drain_outcomes(vhost, "outcomes.alerting").await.unwrap_or_default();
        let mut all = drained.borrow_mut();
        all.extend(more);
        all.iter().any(|o| o.delivery_id == last_delivery).then_some(())
    })
    .await;
    let outcomes = drained.into_inner();
    let elapsed = started.elapsed();
    let failures = outcomes.iter().filter(|o| o.kind() == OutcomeKind::RetryScheduled).count();
    let successes = outcomes.iter().filter(|o| o.kind() == OutcomeKind::Delivered).count();
    assert_eq!(failures, 1, "every failure is reported");
    // Reports to one endpoint are at least an interval apart.
    let bound = (elapsed.as_millis() / INTERVAL.as_millis() + 1) as usize;
    assert!(successes <= bound, "{successes} of 22 successes reported in {elapsed:?}, more than {bound}");
}

#[tokio::test]
async fn each_delivery_of_one_event_is_settled_on_its_own() {
    let s = Stack::start().await;
    let ok = TestReceiver::start().await;
    let gone = TestReceiver::start().await;
    gone.set(Behaviour::Status(410));
    let failing = TestReceiver::start().await;
    failing.set(Behaviour::Status(500));
    let ok_ep = s.endpoint(&ok, "/ok", json!({})).await;
    let gone_ep = s.endpoint(&gone, "/gone", json!({})).await;
    let failing_ep = s.endpoint(&failing, "/failing", json!({"max_retries": 0})).await;
    // One event, three endpoints: one message on the work queue.
    s.send_lead("l1").await;
    s.wait_status(&ok_ep, 1, "delivered", Duration::from_secs(20)).await;
    let dead_gone = s.wait_status(&gone_ep, 1, "dead_letter", Duration::from_secs(20)).await;
    let dead_failing = s.wait_status(&failing_ep, 1, "dead_letter", Duration::from_secs(20)).await;
    // The two dead deliveries reach the dead-letter queue each on its own;
    // the delivered one does not, and nothing is sent twice.
    let vhost = &s.env.vhost;
    eventually(Duration::from_secs(10), "two dead letters", || async {
        (queue_depth(vhost, "deliveries.dead").await.unwrap_or(0) == 2).then_some(())
    })
    .await;
    let dead: std::collections::BTreeSet<String> =
        drain_tasks(vhost, "deliveries.dead").await.unwrap().into_iter().map(|t| t.delivery_id).collect();
    let expected: std::collections::BTreeSet<String> =
        [&dead_gone[0], &dead_failing[0]].iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(dead, expected);
    assert_eq!((ok.count(), gone.count(), failing.count()), (1, 1, 1));
}

#[tokio::test]
async fn the_sweeper_sends_again_a_retry_whose_message_was_lost() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailFirst { n: 1, status: 500 });
    // The retry waits ten minutes on its delay queue: for this test, its message is lost.
    let ep =
        s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 600_000, "max_delay_ms": 600_000}})).await;
    s.send_lead("l1").await;
    let failed = s.wait_status(&ep, 1, "failed", Duration::from_secs(20)).await;
    let id = hookline_domain::id::DeliveryId::parse(failed[0]["id"].as_str().unwrap()).unwrap().as_uuid();
    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    let scheduled: Vec<uuid::Uuid> =
        delivery_retries::table.select(delivery_retries::delivery_id).load(&mut conn).await.unwrap();
    assert_eq!(scheduled, vec![id], "the failed attempt scheduled its retry");
    assert_eq!(sweep_once(&s.worker).await.unwrap(), 0, "a retry not yet due is left alone");

    // Long past due, as if the message had been lost before the sweeper's horizon.
    diesel::sql_query("UPDATE deliveries SET next_attempt_at = now() - interval '1 hour'")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE delivery_retries SET due_at = now() - interval '1 hour'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(sweep_once(&s.worker).await.unwrap(), 1);
    s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    assert_eq!(r.count(), 2);
    // Delivered, it is no longer scheduled, and nothing is swept twice.
    let left: i64 = delivery_retries::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(left, 0);
    assert_eq!(sweep_once(&s.worker).await.unwrap(), 0);
}

#[tokio::test]
async fn a_cancelled_retry_is_forgotten_by_the_sweeper() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep =
        s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 600_000, "max_delay_ms": 600_000}})).await;
    s.send_lead("l1").await;
    let failed = s.wait_status(&ep, 1, "failed", Duration::from_secs(20)).await;
    let id = failed[0]["id"].as_str().unwrap().to_owned();
    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    let count =
        async |conn: &mut AsyncPgConnection| -> i64 { delivery_retries::table.count().get_result(conn).await.unwrap() };
    assert_eq!(count(&mut conn).await, 1);
    // The endpoint is deleted: its waiting delivery is cancelled, and the
    // sweeper forgets the retry it had scheduled.
    let (status, _) = s.control(Method::DELETE, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!(status, 204);
    let (_, d) = s.control(Method::GET, &format!("/api/v1/webhooks/deliveries/{id}"), None).await;
    assert_eq!(d["status"], "cancelled");
    assert_eq!(count(&mut conn).await, 1);
    assert_eq!(sweep_once(&s.worker).await.unwrap(), 0);
    assert_eq!(count(&mut conn).await, 0);
}

#[tokio::test]
async fn a_failed_attempt_claims_its_retry_as_it_is_recorded_and_a_retry_is_claimed_once() {
    use hookline_domain::id::DeliveryId;
    use hookline_store::deliveries::get;
    use hookline_store::hot::attempts::claim_next_attempts;
    use hookline_store::hot::plan::Plan;

    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    // A long first delay: attempt 2 stays in its delay queue for the whole test.
    let ep =
        s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 600_000, "max_delay_ms": 600_000}})).await;
    s.send_lead("l1").await;
    let failed = s.wait_status(&ep, 1, "failed", Duration::from_secs(20)).await;
    let id = DeliveryId::parse(failed[0]["id"].as_str().unwrap()).unwrap().as_uuid();
    let mut conn = s.conns.pool.get().await.unwrap();
    let row = get(&mut conn, id).await.unwrap().unwrap();
    assert_eq!((row.attempt_count, row.scheduled_attempt), (1, 2), "attempt 1 recorded, attempt 2 claimed");
    let vhost = &s.env.vhost;
    let published = eventually(Duration::from_secs(10), "the retry on its delay queue", || async {
        let depth = queue_depth(vhost, "deliveries.retry.600000ms").await.unwrap_or(0);
        (depth > 0).then_some(depth)
    })
    .await;
    assert_eq!(published, 1, "one retry published");

    // Claimed already: a redelivered copy of attempt 1 publishes nothing.
    assert_eq!(claim_next_attempts(&mut conn, &[(id, 2)], Plan::PerExecution).await.unwrap(), [false]);
    // In one batch, a delivery is claimed once, for its highest attempt.
    let other = uuid::Uuid::new_v4();
    assert_eq!(
        claim_next_attempts(&mut conn, &[(id, 3), (other, 2), (id, 3), (id, 2)], Plan::PerExecution).await.unwrap(),
        [true, false, false, false],
        "the first caller of the highest attempt wins; an unknown delivery is not claimed"
    );
    // Racing callers on two connections (a worker's keyed ones): exactly one wins.
    let keyed = hookline_store::hot::plan::keyed_pool(&s.env.database_url(), 2).unwrap();
    let (mut one, mut two) = (keyed.get().await.unwrap(), keyed.get().await.unwrap());
    let claim = [(id, 4)];
    let (a, b) = tokio::join!(
        claim_next_attempts(&mut one, &claim, Plan::Keyed),
        claim_next_attempts(&mut two, &claim, Plan::Keyed)
    );
    let wins = [a.unwrap()[0], b.unwrap()[0]];
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(get(&mut conn, id).await.unwrap().unwrap().scheduled_attempt, 4);
}

#[tokio::test]
async fn retries_waiting_for_one_delay_share_a_message_and_keep_their_traces() {
    use hookline_broker::messages::{DeliveryTask, TaskReason, MESSAGE_VERSION};
    use hookline_delivery_worker::outgoing;

    let s = Stack::start().await;
    let delayed = outgoing::delayed(s.conns.broker.clone());
    let task = |i: u32| DeliveryTask {
        version: MESSAGE_VERSION,
        delivery_id: format!("dlv_{i}"),
        attempt: 2,
        reason: TaskReason::Retry as i32,
        traceparent: format!("00-{:032x}-00f067aa0ba902b7-01", i + 1),
        ..Default::default()
    };
    // Long delays: the messages stay in their delay queues for the whole test.
    let (long, longer) = (Duration::from_secs(600), Duration::from_secs(700));
    let items = [(task(1), long), (task(2), longer), (task(3), long), (task(4), long)];
    // Submitted together, well within the linger: one batch.
    let results = futures_util::future::join_all(items.iter().cloned().map(|item| delayed.submit(item))).await;
    assert!(results.iter().all(|r| matches!(r, Some(Ok(())))), "{results:?}");

    let vhost = &s.env.vhost;
    assert_eq!(queue_depth(vhost, "deliveries.retry.600000ms").await.unwrap(), 1, "three retries, one message");
    assert_eq!(queue_depth(vhost, "deliveries.retry.700000ms").await.unwrap(), 1, "a retry alone");
    let batched = drain_tasks(vhost, "deliveries.retry.600000ms").await.unwrap();
    let ids: Vec<&str> = batched.iter().map(|t| t.delivery_id.as_str()).collect();
    assert_eq!(ids, ["dlv_1", "dlv_3", "dlv_4"], "in the order they were handed over");
    assert_eq!(batched, [task(1), task(3), task(4)], "each task whole, its own trace with it");
    assert_eq!(drain_tasks(vhost, "deliveries.retry.700000ms").await.unwrap(), [task(2)]);
}

#[tokio::test]
async fn retries_that_travel_together_are_each_delivered_once_in_their_own_trace() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let n = 6;
    // Every first attempt fails; the retries, a second later, succeed.
    r.set(Behaviour::FailFirst { n, status: 500 });
    let ep = s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 1000}})).await;
    let sends = (0..n).map(|i| {
        s.client
            .post(s.ingest.url("/api/v1/events/leads"))
            .bearer_auth(&s.key)
            .header("traceparent", format!("00-{:032x}-b7ad6b7169203331-01", i + 1))
            .json(&json!({"id": format!("l{i}"), "name": "Ada", "email": "ada@example.com"}))
            .send()
    });
    for res in futures_util::future::join_all(sends).await {
        assert_eq!(res.unwrap().status(), 202);
    }
    let delivered = s.wait_status(&ep, n, "delivered", Duration::from_secs(30)).await;
    assert!(delivered.iter().all(|d| d["attempts"] == 2), "{delivered:?}");
    let got = r.received();
    assert_eq!(got.len(), 2 * n, "one failure and one success per delivery, nothing twice");
    let trace_of = |g: &hookline_test_support::receiver::Received| {
        let tp = hookline_domain::trace::TraceParent::parse(g.header("traceparent").unwrap()).unwrap();
        tp.trace_id_hex()
    };
    for retry in got.iter().filter(|g| g.header("x-webhook-attempt") == Some("2")) {
        let id = retry.header("x-webhook-delivery-id").unwrap();
        let first = got
            .iter()
            .find(|g| g.header("x-webhook-delivery-id") == Some(id) && g.header("x-webhook-attempt") == Some("1"))
            .expect("the first attempt of each retried delivery");
        assert_eq!(trace_of(retry), trace_of(first), "a retry continues its own delivery's trace");
    }
    let traces: std::collections::HashSet<String> = got.iter().map(trace_of).collect();
    assert_eq!(traces.len(), n, "each delivery in the trace of its own request");
}
