use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::smtp::SmtpSink;
use serde_json::json;

use crate::helpers::{fast, Stack};

#[tokio::test]
async fn email_and_slack_are_told_once_on_open_and_once_on_resolve() {
    let smtp = SmtpSink::start().await;
    let s = Stack::start(&[("HOOKLINE_SMTP_URL", &smtp.url())]).await;
    let slack = TestReceiver::start().await;
    s.settings(json!({
        "endpoint_failing_threshold": 2, "failure_rate_min_attempts": 1000,
        "email_recipients": ["ops@example.com", "oncall@example.com"],
        "slack_webhook_url": slack.url("/services/T000/B000/XXXX"),
    }))
    .await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    // Retries enough that none is dead-lettered (another alert) before the endpoint recovers.
    let ep = s.endpoint(&r, fast(20)).await;
    s.send_lead("l1").await;
    // Five more failures past the threshold: still one notification per channel (the throttle).
    s.wait_alert(&format!("rule=endpoint_failing&webhook_id={ep}"), 5).await;
    let mails = eventually(Duration::from_secs(10), "the alert email", || async {
        (!smtp.mails().is_empty()).then(|| smtp.mails())
    })
    .await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].to, ["ops@example.com", "oncall@example.com"]);
    assert!(mails[0].data.contains("endpoint_failing"), "{}", mails[0].data);
    assert_eq!(slack.count(), 1);
    let text = slack.received()[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("endpoint_failing") && text.contains("opened"), "{text}");
    // Recovery is told once more on each channel.
    r.set(Behaviour::Ok);
    s.send_lead("l2").await;
    eventually(Duration::from_secs(30), "the resolution on both channels", || async {
        (smtp.mails().len() == 2 && slack.count() == 2).then_some(())
    })
    .await;
    let second = slack.received()[1].json()["text"].as_str().unwrap().to_owned();
    assert!(second.contains("resolved"), "{second}");
    let (_, settings) = s.call(reqwest::Method::GET, "/api/v1/alert-settings", None).await;
    assert_eq!(settings["slack_webhook_configured"], true);
    assert!(!settings.to_string().contains("XXXX"), "the Slack URL is not shown back");
}

#[tokio::test]
async fn operational_events_reach_subscribed_endpoints_signed_and_never_the_failing_one() {
    let s = Stack::start(&[]).await;
    s.settings(json!({"endpoint_failing_threshold": 2, "failure_rate_min_attempts": 1000})).await;
    let ops = TestReceiver::start().await;
    s.endpoint(
        &ops,
        json!({"events": ["alert.opened", "alert.resolved", "delivery.dead_lettered", "endpoint.disabled"]}),
    )
    .await;
    let failing = TestReceiver::start().await;
    failing.set(Behaviour::Status(500));
    let ep = s
        .endpoint(&failing, json!({"events": ["*"], "max_retries": 1, "retry_policy": {"initial_delay_ms": 100}}))
        .await;
    s.send_lead("l1").await;
    let got = eventually(Duration::from_secs(30), "alert.opened and delivery.dead_lettered", || async {
        let got = ops.received();
        let kinds: Vec<String> = got.iter().map(|g| g.header("x-webhook-event").unwrap().to_owned()).collect();
        (kinds.contains(&"alert.opened".to_owned()) && kinds.contains(&"delivery.dead_lettered".to_owned()))
            .then_some(got)
    })
    .await;
    assert!(got.iter().all(|g| g.hex_valid && g.standard_valid), "signed like any delivery");
    // Both endpoint_failing and delivery_dead_lettered open on the second failure; either may arrive first.
    let opened: Vec<_> =
        got.iter().filter(|g| g.header("x-webhook-event") == Some("alert.opened")).map(|g| g.json()).collect();
    assert!(opened.iter().all(|o| o["data"]["webhook_id"] == ep.as_str()));
    assert!(
        opened.iter().any(|o| o["data"]["rule"] == "endpoint_failing" || o["data"]["rule"] == "delivery_dead_lettered"),
        "{opened:?}"
    );
    let dead = got.iter().find(|g| g.header("x-webhook-event") == Some("delivery.dead_lettered")).unwrap().json();
    assert_eq!(dead["data"]["webhook_id"], ep.as_str());
    // The failing endpoint (subscribed to *) receives lead events only, never operational ones.
    assert!(failing.received().iter().all(|g| g.header("x-webhook-event") == Some("new_lead")));
    // And clients cannot send operational events themselves.
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events"))
        .bearer_auth(&s.key)
        .json(&json!({"event_type": "alert.opened", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn slack_notifications_never_reach_private_addresses() {
    // A URL saved where private targets were allowed (or a name re-pointed
    // since): the notifier of a service that refuses them does not connect.
    let r = TestReceiver::start().await;
    let env = hookline_test_support::TestEnv::new().await;
    let notifier =
        hookline_alerting::notify::Notifier::new(&env.settings(&[("HOOKLINE_ALLOW_PRIVATE_TARGETS", "false")]))
            .unwrap();
    let port = r.port;
    for url in [
        r.url("/services/T000"),
        format!("http://localhost:{port}/services/T000"),
        format!("http://[::ffff:127.0.0.1]:{port}/services/T000"),
    ] {
        let sent = notifier.slack(&url, "hello").await;
        assert!(sent.is_err(), "{url} was reached");
    }
    assert_eq!(r.count(), 0, "nothing reached the private receiver");
    // The same notifier allowed private targets does reach it.
    hookline_alerting::notify::Notifier::new(&env.settings(&[])).unwrap().slack(&r.url("/ok"), "hello").await.unwrap();
    assert_eq!(r.count(), 1);
}
