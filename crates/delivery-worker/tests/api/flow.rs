//! Flow control across the fleet: one rate budget for every worker, and a
//! rate that falls on 429 and climbs back while the endpoint is healthy.

use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn two_workers_together_keep_to_an_endpoints_rate_limit() {
    let s = Stack::start().await;
    // A second worker on the same database, broker vhost and Redis prefix.
    let second = s.env.connect(&[]).await;
    hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&second)).unwrap();
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/h", json!({"rate_limit_per_second": 20})).await;
    let n = 60;
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let s = &s;
            async move { s.send_lead(&format!("l{i}")).await }
        })
        .collect();
    futures_util::future::join_all(sends).await;
    let got = wait_received(&r, n, Duration::from_secs(30)).await;
    let mut at: Vec<_> = got.iter().map(|g| g.at).collect();
    at.sort();
    let busiest = (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| t.duration_since(at[i]) < Duration::from_secs(1)).count())
        .max()
        .unwrap();
    assert!(busiest <= 21, "{busiest} deliveries within one second against a limit of 20");
    let span = at[at.len() - 1].duration_since(at[0]);
    assert!(span >= Duration::from_millis(2800), "60 at 20/s take about 3 s, not {span:?}");
    // Held back is not failed: every delivery took exactly one attempt.
    let delivered = s.wait_status(&ep, n, "delivered", Duration::from_secs(10)).await;
    assert!(delivered.iter().all(|d| d["attempts"] == 1), "parked deliveries count no attempt");
    let (_, stats) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}/stats"), None).await;
    assert_eq!(
        stats["flow"],
        json!({"state": "normal", "rate_per_second": 20.0, "ceiling_per_second": 20.0, "paused_until": null})
    );
    second.cancel.cancel();
}

#[tokio::test]
async fn a_429_with_retry_after_lowers_the_rate_which_climbs_back_while_healthy() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::RetryAfter { status: 429, secs: 2 });
    let ep = s.endpoint(&r, "/h", json!({"rate_limit_per_second": 40})).await;
    let stats = || async {
        let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}/stats"), None).await;
        v["flow"].clone()
    };
    assert_eq!(stats().await["state"], "normal");
    s.send_lead("l1").await;
    let held: Value = eventually(Duration::from_secs(10), "the endpoint paused", || async {
        let f = stats().await;
        (f["state"] == "paused").then_some(f)
    })
    .await;
    assert_eq!(held["rate_per_second"], 20.0, "halved from its ceiling: {held}");
    assert_eq!(held["ceiling_per_second"], 40.0);
    assert!(held["paused_until"].is_string());
    // Healthy again: the retry after the pause succeeds and the rate climbs back.
    r.set(Behaviour::Ok);
    s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    s.send_lead("l2").await;
    let climbing = eventually(Duration::from_secs(10), "the rate to climb", || async {
        let f = stats().await;
        (f["state"] == "throttled" && f["rate_per_second"].as_f64().unwrap() > 20.0).then_some(f)
    })
    .await;
    assert!(climbing["rate_per_second"].as_f64().unwrap() < 40.0, "{climbing}");
    // Keep it busy until it is back at its ceiling.
    let mut i = 3;
    let (s, stats) = (&s, &stats);
    eventually(Duration::from_secs(30), "the rate back at its ceiling", || {
        i += 1;
        let lead = format!("l{i}");
        async move {
            s.send_lead(&lead).await;
            (stats().await["state"] == "normal").then_some(())
        }
    })
    .await;
    assert_eq!(stats().await["rate_per_second"], 40.0);
}
