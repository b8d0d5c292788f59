//! Endpoint filters: evaluated at fan-out, so a filtered-out endpoint gets no
//! delivery at all; and the dry run over past events.

use std::time::Duration;

use hookline_test_support::receiver::TestReceiver;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{wait_received, Stack};

async fn lead(s: &Stack, id: &str, source: &str, score: i64) -> Value {
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&s.key)
        .json(&json!({"id": id, "name": "Ada", "email": "ada@example.com", "source": source, "score": score}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_filtered_endpoint_gets_only_matching_events_and_the_answer_counts_only_those() {
    let s = Stack::start().await;
    let (web, all) = (TestReceiver::start().await, TestReceiver::start().await);
    let filter = json!({"and": [
        {"path": "/data/source", "op": "eq", "value": "website"},
        {"not": {"path": "/data/score", "op": "lt", "value": 50}}
    ]});
    let filtered = s.endpoint(&web, "/web", json!({"filter": filter})).await;
    s.endpoint(&all, "/all", json!({})).await;
    let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{filtered}"), None).await;
    assert_eq!(v["filter"], filter);

    assert_eq!(lead(&s, "l1", "website", 80).await["deliveries"], 2);
    assert_eq!(lead(&s, "l2", "ads", 80).await["deliveries"], 1, "the filter left one endpoint out");
    assert_eq!(lead(&s, "l3", "website", 10).await["deliveries"], 1);
    wait_received(&all, 3, Duration::from_secs(20)).await;
    let got = wait_received(&web, 1, Duration::from_secs(20)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["id"], "l1");
    assert_eq!(s.deliveries(&format!("webhook_id={filtered}")).await.len(), 1, "no delivery row for the others");

    // A change applies to the next event at once; null removes the filter.
    let (status, _) = s
        .control(
            Method::PATCH,
            &format!("/api/v1/webhooks/{filtered}"),
            Some(json!({"filter": {"path": "/data/source", "op": "in", "value": ["ads"]}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lead(&s, "l4", "ads", 1).await["deliveries"], 2);
    let (_, v) = s.control(Method::PATCH, &format!("/api/v1/webhooks/{filtered}"), Some(json!({"filter": null}))).await;
    assert_eq!(v["filter"], Value::Null);
    assert_eq!(lead(&s, "l5", "referral", 1).await["deliveries"], 2);
    wait_received(&web, 3, Duration::from_secs(20)).await;

    // A bad filter is refused, naming its bad part, and nothing changes.
    for (bad, field) in [
        (json!({"and": [{"path": "/data/source", "op": "like", "value": "w%"}]}), "filter.and[0].op"),
        (json!({"path": "data.source", "op": "eq", "value": 1}), "filter.path"),
        (json!({"or": []}), "filter.or"),
        (json!("source = website"), "filter"),
    ] {
        let (status, p) =
            s.control(Method::PATCH, &format!("/api/v1/webhooks/{filtered}"), Some(json!({"filter": bad}))).await;
        assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some(field)), "{p}");
    }
    let (_, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{filtered}"), None).await;
    assert_eq!(v["filter"], Value::Null);
}

#[tokio::test]
async fn a_filter_preview_runs_over_the_latest_events_and_saves_nothing() {
    let s = Stack::start().await;
    for (i, (source, score)) in
        [("website", 90), ("ads", 10), ("website", 20), ("website", 70), ("ads", 95)].iter().enumerate()
    {
        lead(&s, &format!("l{i}"), source, *score).await;
    }
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads/updates"))
        .bearer_auth(&s.key)
        .json(&json!({"id": "l0", "name": "Ada", "email": "ada@example.com", "source": "website", "changes": {"status": "won"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let preview = |body: Value| s.control(Method::POST, "/api/v1/webhooks/filter-preview", Some(body));

    let website = json!({"path": "/data/source", "op": "eq", "value": "website"});
    let (status, v) = preview(json!({"filter": website})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["scanned"].as_i64(), v["matched"].as_i64()), (Some(6), Some(4)), "{v}");
    assert_eq!(v["samples"][0]["event"], "lead_update", "newest first");
    assert!(v["samples"][0]["event_id"].as_str().unwrap().starts_with("evt_"));
    let (_, v) = preview(json!({"filter": website, "event": "new_lead"})).await;
    assert_eq!((v["scanned"].as_i64(), v["matched"].as_i64()), (Some(5), Some(3)));
    let (_, v) = preview(json!({"filter": website, "event": "new_lead", "limit": 2})).await;
    assert_eq!(
        (v["scanned"].as_i64(), v["matched"].as_i64()),
        (Some(2), Some(1)),
        "the two newest: ads 95, website 70"
    );
    let (_, v) =
        preview(json!({"filter": {"and": [website, {"path": "/data/score", "op": "gte", "value": 70}]}})).await;
    let ids: Vec<&str> = v["samples"].as_array().unwrap().iter().map(|x| x["data"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["l3", "l0"]);
    let (status, p) = preview(json!({"filter": {"path": "/x", "op": "gt", "value": true}, "limit": 0})).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["filter.value", "limit"]);
    assert_eq!(s.control(Method::GET, "/api/v1/webhooks", None).await.1["data"], json!([]), "nothing saved");
}
