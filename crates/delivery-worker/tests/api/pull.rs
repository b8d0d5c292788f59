//! Pull endpoints read their events through the API; backfills deliver past
//! events to push endpoints.

use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::receiver::TestReceiver;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{wait_received, Stack};

async fn lead(s: &Stack, id: &str, source: &str) {
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&s.key)
        .json(&json!({"id": id, "name": "Ada", "email": "ada@example.com", "source": source}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

async fn page(s: &Stack, id: &str, after: Option<&str>) -> Value {
    let path = match after {
        Some(c) => format!("/api/v1/webhooks/{id}/events?limit=2&after={c}"),
        None => format!("/api/v1/webhooks/{id}/events?limit=2"),
    };
    let (status, v) = s.control(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn a_pull_endpoint_is_never_pushed_to_and_reads_its_events_in_order() {
    let s = Stack::start().await;
    let (status, p) = s.control(Method::POST, "/api/v1/webhooks", Some(json!({"events": ["new_lead"]}))).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("url")), "a push endpoint needs a URL");
    let (status, pull) = s
        .control(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"mode": "pull", "events": ["new_lead"], "filter": {"path": "/data/source", "op": "eq", "value": "website"}})),
        )
        .await;
    assert_eq!(status, 201, "{pull}");
    assert_eq!((pull["mode"].as_str(), pull["url"].clone()), (Some("pull"), Value::Null));
    let id = pull["id"].as_str().unwrap().to_owned();
    let r = TestReceiver::start().await;
    let push = s.endpoint(&r, "/push", json!({})).await;

    for (i, source) in ["website", "website", "ads", "website", "website"].iter().enumerate() {
        lead(&s, &format!("l{i}"), source).await;
    }
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads/updates"))
        .bearer_auth(&s.key)
        .json(&json!({"id": "l0", "name": "Ada", "email": "ada@example.com", "source": "website", "changes": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    wait_received(&r, 6, Duration::from_secs(20)).await;
    assert!(s.deliveries(&format!("webhook_id={id}")).await.is_empty(), "nothing is pushed to a pull endpoint");
    assert_eq!(s.deliveries(&format!("webhook_id={push}")).await.len(), 6);

    // Read in pages of two, in ingest order, until caught up.
    let mut cursor: Option<String> = None;
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 4 {
        let after = cursor.clone();
        let v = eventually(Duration::from_secs(10), "more events to read", || {
            let after = after.clone();
            let (s, id) = (&s, &id);
            async move {
                let v = page(s, id, after.as_deref()).await;
                (!v["data"].as_array().unwrap().is_empty()).then_some(v)
            }
        })
        .await;
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        assert_eq!(data[0]["event"], "new_lead");
        assert!(data[0]["event_id"].as_str().unwrap().starts_with("evt_"));
        seen.extend(data.iter().map(|e| e["data"]["id"].as_str().unwrap().to_owned()));
        cursor = Some(v["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["l0", "l1", "l3", "l4"], "website leads only, in order, no lead_update");
    let cursor = cursor.unwrap();
    let caught_up = page(&s, &id, Some(&cursor)).await;
    assert_eq!((caught_up["data"].clone(), caught_up["next_cursor"].as_str()), (json!([]), Some(cursor.as_str())));

    let (status, p) = s.control(Method::POST, &format!("/api/v1/webhooks/{id}/test"), None).await;
    assert_eq!((status, p["type"].as_str().map(|t| t.ends_with("pull_endpoint"))), (409, Some(true)), "{p}");
    let (status, p) = s.control(Method::GET, &format!("/api/v1/webhooks/{id}/events?after=nonsense"), None).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("after")));
    let (status, _) = s
        .control(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/backfill"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_backfill_delivers_past_events_once_in_batches_and_reports_progress() {
    let s = Stack::start().await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    // More than one step's worth, sent before the endpoint exists.
    let sends: Vec<_> = (0..260)
        .map(|i| {
            let s = &s;
            async move { lead(s, &format!("old{i}"), if i % 2 == 0 { "website" } else { "ads" }).await }
        })
        .collect();
    futures_util::future::join_all(sends).await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/h", json!({"events": ["new_lead"]})).await;
    for (body, field) in [
        (json!({"since": "2027-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}), "since"),
        (json!({"since": since, "events": ["bad type!"]}), "events[0]"),
    ] {
        let (status, p) = s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/backfill"), Some(body)).await;
        assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some(field)), "{p}");
    }
    let (status, job) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/backfill"), Some(json!({"since": since}))).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "running");
    let job_id = job["id"].as_str().unwrap().to_owned();
    assert!(job_id.starts_with("bf_"));
    // Live traffic goes on meanwhile.
    lead(&s, "live", "website").await;
    let done = eventually(Duration::from_secs(60), "the backfill to complete", || async {
        let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}/backfill/{job_id}"), None).await;
        (v["state"] == "completed").then_some(v)
    })
    .await;
    assert_eq!(done["enqueued"], 260, "{done}");
    assert!(done["scanned"].as_i64().unwrap() >= 260 && done["finished_at"].is_string());
    let got = wait_received(&r, 261, Duration::from_secs(60)).await;
    let mut ids: Vec<String> = got.iter().map(|g| g.header("x-webhook-delivery-id").unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 261, "each event once");
    // Again over the same window: everything was sent already.
    let (_, again) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/backfill"), Some(json!({"since": since}))).await;
    let again_id = again["id"].as_str().unwrap().to_owned();
    let done = eventually(Duration::from_secs(30), "the second backfill", || async {
        let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}/backfill/{again_id}"), None).await;
        (v["state"] == "completed").then_some(v)
    })
    .await;
    assert_eq!(done["enqueued"], 0);
    let (status, _) = s
        .control(Method::GET, &format!("/api/v1/webhooks/{ep}/backfill/bf_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e"), None)
        .await;
    assert_eq!(status, 404);
}
