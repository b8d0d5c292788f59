use std::time::Duration;

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn analytics_add_up_to_what_was_sent_and_received() {
    let s = Stack::start().await;
    let ok = TestReceiver::start().await;
    let bad = TestReceiver::start().await;
    bad.set(Behaviour::Status(500));
    let good_ep = s.endpoint(&ok, "/ok", json!({})).await;
    let bad_ep = s
        .endpoint(
            &bad,
            "/bad",
            json!({"events": ["new_lead"], "max_retries": 1, "retry_policy": {"initial_delay_ms": 100}}),
        )
        .await;
    for i in 0..5 {
        s.send_lead(&format!("l{i}")).await;
    }
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads/updates"))
        .bearer_auth(&s.key)
        .json(&json!({"id": "l1", "name": "Ada", "email": "ada@example.com", "changes": {"status": "won"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    wait_received(&ok, 6, Duration::from_secs(20)).await;
    s.wait_status(&bad_ep, 5, "dead_letter", Duration::from_secs(20)).await;
    s.worker.rollups.flush(&s.conns.pool).await.unwrap();
    s.ingest_state.rollups.flush(&s.conns.pool).await.unwrap();

    let (status, a) = s.control(Method::GET, "/api/v1/analytics?window=24h", None).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["totals"]["events"], 6);
    assert_eq!(a["totals"]["deliveries"], 11, "5 leads to two endpoints, one update to one");
    assert_eq!(a["totals"]["attempts"], (ok.count() + bad.count()) as i64);
    assert_eq!(a["totals"]["succeeded"], 6);
    assert_eq!(a["totals"]["failed"], bad.count() as i64);
    assert_eq!(a["totals"]["dead_letters"], 5);
    assert!(a["totals"]["p50_latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(a["endpoints"], json!({"total": 2, "active": 1, "failing": 1, "disabled": 0}));
    let by_ep = a["by_endpoint"].as_array().unwrap();
    let good = by_ep.iter().find(|e| e["webhook_id"] == good_ep.as_str()).unwrap();
    assert_eq!((good["attempts"].as_i64(), good["success_rate"].as_f64()), (Some(6), Some(1.0)));
    let bad_fig = by_ep.iter().find(|e| e["webhook_id"] == bad_ep.as_str()).unwrap();
    assert_eq!((bad_fig["attempts"].as_i64(), bad_fig["dead_letters"].as_i64()), (Some(10), Some(5)));
    let types = a["by_event_type"].as_array().unwrap();
    let upd = types.iter().find(|t| t["event_type"] == "lead_update").unwrap();
    assert_eq!((upd["events"].as_i64(), upd["attempts"].as_i64()), (Some(1), Some(1)));
    let series_events: i64 = a["series"].as_array().unwrap().iter().map(|p| p["events"].as_i64().unwrap()).sum();
    assert_eq!(series_events, 6);
    assert_eq!(a["resolution"], "1h");
    let (_, month) = s.control(Method::GET, "/api/v1/analytics?window=30d", None).await;
    assert_eq!((month["resolution"].as_str(), month["totals"]["events"].as_i64()), (Some("1d"), Some(6)));
    let (status, _) = s.control(Method::GET, "/api/v1/analytics?window=1y", None).await;
    assert_eq!(status, 422);

    // The summary a CRM webhook dashboard reads, beside the figures above.
    let attempts = (ok.count() + bad.count()) as f64;
    assert_eq!(a["total_webhooks"], 2);
    assert_eq!(a["active_webhooks"], 2);
    assert_eq!((a["healthy_webhooks"].as_i64(), a["failed_webhooks"].as_i64()), (Some(1), Some(1)));
    assert_eq!(a["total_deliveries"], 11);
    let rate = a["success_rate"].as_f64().unwrap();
    assert!((rate - 6.0 / attempts).abs() < 1e-9, "{rate}");
    let mean = a["average_response_time"].as_f64().unwrap();
    assert!((0.0..10_000.0).contains(&mean), "{mean}");
    assert_eq!(a["totals"]["average_response_time"], a["average_response_time"]);
    let (status, pct) = s.control(Method::GET, "/api/v1/analytics?format=percent", None).await;
    assert_eq!(status, 200, "{pct}");
    let expected = (6.0 / attempts * 10_000.0).round() / 100.0;
    assert_eq!(pct["success_rate"].as_f64(), Some(expected));
    assert_eq!(pct["totals"]["success_rate"].as_f64(), Some(expected));
    let good_pct = pct["by_endpoint"].as_array().unwrap().iter().find(|e| e["webhook_id"] == good_ep.as_str()).unwrap();
    assert_eq!(good_pct["success_rate"].as_f64(), Some(100.0));
    let (status, p) = s.control(Method::GET, "/api/v1/analytics?format=ratio", None).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("format")));
}
