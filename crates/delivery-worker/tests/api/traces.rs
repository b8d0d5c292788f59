//! One trace from the ingest request through the outbox relay and the broker
//! message to the worker's request, exported through OpenTelemetry (an
//! in-memory exporter here, OTLP in production).

use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::receiver::TestReceiver;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn ingest_relay_and_worker_spans_share_the_callers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("hookline-test")));
    // Each test runs in its own process under nextest, so the global subscriber is ours.
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this test process");

    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    s.endpoint(&r, "/hook", json!({})).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&s.key)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"id": "l1", "name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    assert!(got[0].header("traceparent").unwrap().contains(trace_id));
    let names = eventually(Duration::from_secs(10), "the three spans to be exported", || async {
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let names: Vec<String> = spans
            .iter()
            .filter(|s| format!("{:032x}", s.span_context.trace_id()) == trace_id)
            .map(|s| s.name.to_string())
            .collect();
        ["ingest", "relay.publish", "delivery"].iter().all(|n| names.iter().any(|x| x == n)).then_some(names)
    })
    .await;
    assert!(names.len() >= 3, "{names:?}");
}
