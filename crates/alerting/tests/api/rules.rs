use std::time::Duration;

use hookline_alerting::state::AlertingState;
use hookline_broker::messages::OutcomeKind;
use hookline_test_support::eventually;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{fast, Stack};

#[tokio::test]
async fn consecutive_failures_open_one_alert_that_resolves_itself() {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 3, "failure_rate_min_attempts": 1000})).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, fast(5)).await;
    s.send_lead("l1").await;
    // Attempts 3, 4, 5 and 6 are at or past the threshold: one alert, counted four times.
    let alert = s.wait_alert(&format!("rule=endpoint_failing&webhook_id={ep}"), 4).await;
    assert_eq!(alert["state"], "open");
    assert_eq!(s.alerts("rule=endpoint_failing").await.len(), 1, "repeats update one alert");
    assert!(alert["message"].as_str().unwrap().contains("failed"));
    // The endpoint recovers: the alert resolves itself.
    r.set(Behaviour::Ok);
    s.send_lead("l2").await;
    eventually(Duration::from_secs(30), "the alert to resolve", || async {
        let a = s.alerts(&format!("rule=endpoint_failing&webhook_id={ep}")).await;
        (a[0]["state"] == "resolved").then_some(())
    })
    .await;
    // A new failure streak opens a new alert rather than reviving the old one.
    assert_eq!(s.alerts("state=open&rule=endpoint_failing").await.len(), 0);
}

#[tokio::test]
async fn a_success_heard_late_leaves_open_what_failures_after_it_keep_open() {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 3, "failure_rate_min_attempts": 1000})).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, fast(5)).await;
    s.send_lead("l1").await;
    s.wait_alert(&format!("rule=endpoint_failing&webhook_id={ep}"), 1).await;
    // A success from before the streak, reported after it (a worker holds
    // successes for up to a second): the endpoint is still failing.
    let late = s.outcome(&ep, OutcomeKind::Delivered, 1).await;
    let alerting = hookline_alerting::Alerting::new(AlertingState::new(&s.conns)).unwrap();
    let results = hookline_alerting::rules::process_outcomes(&alerting, &[&late]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let a = s.alerts(&format!("rule=endpoint_failing&webhook_id={ep}")).await;
    assert_eq!(a[0]["state"], "open", "the streak goes on; the success is older than it");
}

#[tokio::test]
async fn dead_letters_are_grouped_per_endpoint_and_acknowledgeable() {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 1000, "failure_rate_min_attempts": 1000})).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, fast(0)).await;
    for i in 0..3 {
        s.send_lead(&format!("l{i}")).await;
    }
    let alert = s.wait_alert(&format!("rule=delivery_dead_lettered&webhook_id={ep}"), 3).await;
    assert_eq!(s.alerts("").await.len(), 1, "one alert for three dead letters");
    assert_eq!(alert["count"], 3);
    let id = alert["id"].as_str().unwrap();
    let (status, v) = s.call(Method::POST, &format!("/api/v1/alerts/{id}/acknowledge"), None).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("acknowledged")));
    let (status, _) = s.call(Method::POST, &format!("/api/v1/alerts/{id}/acknowledge"), None).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn repeated_dead_letters_disable_the_endpoint_until_it_is_re_enabled() {
    let s = Stack::start(&[]).await;
    s.settings(
        json!({"auto_disable_dead_letters": 3, "endpoint_failing_threshold": 1000, "failure_rate_min_attempts": 1000}),
    )
    .await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(503));
    let ep = s.endpoint(&r, fast(0)).await;
    for i in 0..3 {
        s.send_lead(&format!("l{i}")).await;
    }
    let alert = s.wait_alert(&format!("rule=endpoint_disabled&webhook_id={ep}"), 1).await;
    assert!(alert["message"].as_str().unwrap().contains("disabled"));
    let (_, v) = s.call(Method::GET, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!(v["is_active"], false);
    assert!(v["disabled_reason"].as_str().unwrap().contains("3 consecutive"));
    // Re-enabling resets the counters and resolves the alert.
    r.set(Behaviour::Ok);
    let (status, _) = s.call(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"is_active": true}))).await;
    assert_eq!(status, 200);
    let a = s.alerts(&format!("rule=endpoint_disabled&webhook_id={ep}")).await;
    assert_eq!(a[0]["state"], "resolved");
    s.send_lead("l9").await;
    s.wait_status(&ep, 1, "delivered").await;
    let (_, stats) = s.call(Method::GET, &format!("/api/v1/webhooks/{ep}/stats"), None).await;
    assert_eq!(stats["consecutive_failures"], 0);
}

#[tokio::test]
async fn a_410_opens_endpoint_disabled_at_once() {
    let s = Stack::start(&[]).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(410));
    let ep = s.endpoint(&r, fast(5)).await;
    s.send_lead("l1").await;
    let a = s.wait_alert(&format!("rule=endpoint_disabled&webhook_id={ep}"), 1).await;
    assert!(a["message"].as_str().unwrap().contains("410"));
}

#[tokio::test]
async fn a_high_failure_rate_opens_its_alert() {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 1000, "failure_rate_min_attempts": 4, "failure_rate_percent": 20}))
        .await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailFirst { n: 2, status: 500 });
    let ep = s.endpoint(&r, fast(0)).await;
    for i in 0..4 {
        s.send_lead(&format!("l{i}")).await;
    }
    // 2 of the first 4 attempts failed: 50% > 20%, with the minimum of 4 attempts reached.
    let a = s.wait_alert(&format!("rule=high_failure_rate&webhook_id={ep}"), 1).await;
    assert_eq!(a["details"]["attempts"], 4);
    assert_eq!(a["details"]["failed"], 2);
}

#[tokio::test]
async fn two_alerting_instances_count_each_outcome_once() {
    let s = Stack::start(&[]).await;
    let second = s.env.connect(&[]).await;
    hookline_alerting::start(&second).unwrap();
    s.settings(json!({"endpoint_failing_threshold": 1000, "failure_rate_min_attempts": 1000, "auto_disable_dead_letters": 1000})).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, fast(0)).await;
    for i in 0..12 {
        s.send_lead(&format!("l{i}")).await;
    }
    s.wait_status(&ep, 12, "dead_letter").await;
    let a = s.wait_alert("rule=delivery_dead_lettered", 12).await;
    // Both instances consumed; the count is exact, not doubled.
    assert_eq!(a["count"], 12);
    second.cancel.cancel();
}

/// A stack whose one endpoint has had one delivery dead-lettered and counted,
/// with every other rule held off; the receiver must outlive the test.
async fn one_dead_letter_counted() -> (Stack, String, TestReceiver) {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 1000, "failure_rate_min_attempts": 1000, "auto_disable_dead_letters": 1000})).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, fast(0)).await;
    s.send_lead("l0").await;
    s.wait_status(&ep, 1, "dead_letter").await;
    s.wait_alert(&format!("rule=delivery_dead_lettered&webhook_id={ep}"), 1).await;
    (s, ep, r)
}

#[tokio::test]
async fn a_batch_counts_each_failure_once_whatever_else_it_holds() {
    let (s, ep, _r) = one_dead_letter_counted().await;
    let outcome = async |attempt| s.outcome(&ep, OutcomeKind::DeadLettered, attempt).await;
    // Attempt 7 twice (a redelivered message), an unreadable message, attempt 8,
    // and attempt 1 again (already counted when it happened).
    let (seven, eight, first) = (outcome(7).await, outcome(8).await, outcome(1).await);
    let payloads: Vec<&[u8]> = vec![&seven, &seven, b"not an outcome", &eight, &first];
    let alerting = hookline_alerting::Alerting::new(AlertingState::new(&s.conns)).unwrap();
    let results = hookline_alerting::rules::process_outcomes(&alerting, &payloads).await;
    assert_eq!(results.len(), payloads.len());
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let a = s.alerts(&format!("rule=delivery_dead_lettered&webhook_id={ep}")).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["count"], 3, "attempts 1, 7 and 8, each once");
    // The same batch again changes nothing.
    hookline_alerting::rules::process_outcomes(&alerting, &payloads).await;
    assert_eq!(s.alerts(&format!("rule=delivery_dead_lettered&webhook_id={ep}")).await[0]["count"], 3);
}

#[tokio::test]
async fn the_outcomes_of_a_batch_message_count_as_if_each_had_come_alone() {
    use hookline_broker::messages::{
        DeliveryOutcome, DeliveryOutcomeBatch, MESSAGE_VERSION, TYPE_DELIVERY_OUTCOME_BATCH,
    };
    use prost::Message;

    let (s, ep, _r) = one_dead_letter_counted().await;
    let outcome = async |attempt| {
        DeliveryOutcome::decode(s.outcome(&ep, OutcomeKind::DeadLettered, attempt).await.as_slice()).unwrap()
    };
    // Attempt 7 twice in one batch (a worker retrying its publish), then 8;
    // attempt 9 in a message of its own.
    let (seven, eight, nine) = (outcome(7).await, outcome(8).await, outcome(9).await.encode_to_vec());
    let batch =
        DeliveryOutcomeBatch { version: MESSAGE_VERSION, outcomes: vec![seven.clone(), seven, eight] }.encode_to_vec();
    let kind = Some(TYPE_DELIVERY_OUTCOME_BATCH);
    let messages: Vec<(Option<&str>, &[u8])> = vec![(kind, &batch), (kind, b"not a batch"), (None, &nine)];
    let alerting = hookline_alerting::Alerting::new(AlertingState::new(&s.conns)).unwrap();
    let results = hookline_alerting::rules::process_messages(&alerting, &messages).await;
    assert_eq!(results.len(), messages.len(), "one result per message");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let count = async || s.alerts(&format!("rule=delivery_dead_lettered&webhook_id={ep}")).await[0]["count"].clone();
    assert_eq!(count().await, 4, "attempts 1, 7, 8 and 9, each once");
    // The batch redelivered changes nothing.
    hookline_alerting::rules::process_messages(&alerting, &messages[..1]).await;
    assert_eq!(count().await, 4);
}
