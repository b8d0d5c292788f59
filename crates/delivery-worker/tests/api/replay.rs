use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::queue_depth;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn a_dead_letter_can_be_retried_by_hand_and_the_rest_recovered() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, "/hook", json!({"max_retries": 0})).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    for i in 0..3 {
        s.send_lead(&format!("l{i}")).await;
    }
    let dead = s.wait_status(&ep, 3, "dead_letter", Duration::from_secs(20)).await;
    r.set(Behaviour::Ok);
    // A delivered delivery is not retryable; a dead one is.
    let one = dead[0]["id"].as_str().unwrap();
    let (status, v) = s.control(Method::POST, &format!("/api/v1/webhooks/deliveries/{one}/retry"), None).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "pending");
    s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    let (status, _) = s.control(Method::POST, &format!("/api/v1/webhooks/deliveries/{one}/retry"), None).await;
    assert_eq!(status, 409);
    let (status, v) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/recover"), Some(json!({"since": since}))).await;
    assert_eq!(status, 202);
    assert_eq!(v["requeued"], 2);
    assert_eq!(v["has_more"], false);
    s.wait_status(&ep, 3, "delivered", Duration::from_secs(20)).await;
    let got = wait_received(&r, 6, Duration::from_secs(5)).await;
    assert_eq!(got.iter().filter(|g| g.answered == 200).count(), 3);
    let (_, detail) = s.control(Method::GET, &format!("/api/v1/webhooks/deliveries/{one}"), None).await;
    let attempts: Vec<_> =
        detail["attempt_log"].as_array().unwrap().iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, [1, 2]);
}

#[tokio::test]
async fn deleting_an_endpoint_cancels_what_is_pending_and_keeps_history() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    // The retry waits 8 s: the deletion comes before it even when a loaded
    // machine takes seconds over the steps before.
    let ep = s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 8000}})).await;
    s.send_lead("l1").await;
    wait_received(&r, 1, Duration::from_secs(20)).await;
    let (status, _) = s.control(Method::DELETE, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!(status, 204);
    // The attempt the receiver saw may be recorded just after the
    // cancellation: it is counted, and the delivery stays cancelled.
    eventually(Duration::from_secs(10), "the delivery cancelled with its one attempt", || async {
        let d = s.deliveries(&format!("webhook_id={ep}&status=cancelled")).await;
        (d.len() == 1 && d[0]["attempts"] == 1).then_some(())
    })
    .await;
    // A retry claimed before the cancellation comes back from its delay queue
    // 8 s after the attempt and is dropped, not sent (one recorded after the
    // cancellation is not claimed at all). Wait until it would be due, then
    // until neither queue holds it, so the worker has taken it.
    let due = r.received()[0].at + Duration::from_secs(8 + 2);
    let vhost = &s.env.vhost;
    eventually(Duration::from_secs(40), "the retry's time to pass and the queues to empty", || async {
        let waiting = queue_depth(vhost, "deliveries.retry.8000ms").await.unwrap_or(0)
            + queue_depth(vhost, "deliveries.work").await.unwrap_or(1);
        (std::time::Instant::now() >= due && waiting == 0).then_some(())
    })
    .await;
    assert_eq!(r.count(), 1, "no attempt after deletion");
}

#[tokio::test]
async fn roles_and_tenancy_apply_to_history_and_replay() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    s.send_lead("l1").await;
    let d = s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    let id = d[0]["id"].as_str().unwrap();
    let (_, ro) = s.control(Method::POST, "/api/v1/keys", Some(json!({"name": "ro", "role": "read_only"}))).await;
    let ro = ro["key"].as_str().unwrap();
    let res = s
        .client
        .post(s.control.url(&format!("/api/v1/webhooks/deliveries/{id}/retry")))
        .bearer_auth(ro)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res =
        s.client.get(s.control.url(&format!("/api/v1/webhooks/deliveries/{id}"))).bearer_auth(ro).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let other: serde_json::Value = s
        .client
        .post(s.control.url("/api/v1/orgs"))
        .bearer_auth(hookline_test_support::OPERATOR_TOKEN)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = other["api_key"]["key"].as_str().unwrap();
    for path in [format!("/api/v1/webhooks/deliveries/{id}"), format!("/api/v1/webhooks/{ep}/stats")] {
        let res = s.client.get(s.control.url(&path)).bearer_auth(other).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let list: serde_json::Value = s
        .client
        .get(s.control.url("/api/v1/webhooks/deliveries"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn recover_requeues_a_large_window_in_batches() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, "/hook", json!({"max_retries": 0})).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    s.send_lead("l0").await;
    s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    // 1,200 more dead letters, copies of that one: more than two batches.
    let copied = std::process::Command::new("psql")
        .args([
            &s.env.database_url(),
            "-qc",
            "INSERT INTO deliveries SELECT (jsonb_populate_record(d, jsonb_build_object('id', gen_random_uuid()))).* \
             FROM deliveries d, generate_series(1, 1200) WHERE d.status = 'dead_letter'",
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    r.set(Behaviour::Ok);
    let (status, v) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/recover"), Some(json!({"since": since}))).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["requeued"], 1201, "{v}");
    assert_eq!(v["has_more"], false, "{v}");
    let (_, again) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/recover"), Some(json!({"since": since}))).await;
    assert_eq!(again["requeued"], 0, "each was requeued once: {again}");
    // They flow (one endpoint takes them at its own pace).
    wait_received(&r, 101, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_retry_asked_of_another_process_wakes_the_relay_at_once() {
    // Unprompted, this relay would look at the outbox only after a minute.
    let s = Stack::start_with(&[("HOOKLINE_OUTBOX_POLL_MS", "60000")]).await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, "/hook", json!({"max_retries": 0})).await;
    s.send_lead("l1").await;
    let dead = s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    r.set(Behaviour::Ok);
    // A control API with connections of its own, as another process would have.
    let other = s.env.connect(&[]).await;
    let control = crate::helpers::control_api(&other);
    let id = dead[0]["id"].as_str().unwrap();
    let res = s
        .client
        .post(control.url(&format!("/api/v1/webhooks/deliveries/{id}/retry")))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    other.cancel.cancel();
}
