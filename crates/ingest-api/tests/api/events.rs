use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_store::schema::{deliveries, events, outbox};
use serde_json::{json, Value};

use crate::helpers::{lead, problem, TestApp};

async fn db(app: &TestApp) -> AsyncPgConnection {
    AsyncPgConnection::establish(&app.env.database_url()).await.unwrap()
}

#[tokio::test]
async fn a_new_lead_fans_out_to_exactly_the_active_subscribed_endpoints() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    let other = app.org("Other").await;
    let leads = app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["new_lead"]})).await;
    let all = app.endpoint(&key, json!({"url": "http://127.0.0.1:9/b", "events": ["*"]})).await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/c", "events": ["lead_update"]})).await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/d", "events": ["new_lead"], "is_active": false})).await;
    let deleted = app.endpoint(&key, json!({"url": "http://127.0.0.1:9/e", "events": ["new_lead"]})).await;
    app.client.delete(app.control.url(&format!("/api/v1/webhooks/{deleted}"))).bearer_auth(&key).send().await.unwrap();
    app.endpoint(&other, json!({"url": "http://127.0.0.1:9/f", "events": ["*"]})).await;

    let res = app.send(&key, "/api/v1/events/leads", &lead("lead_1")).await;
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["event_type"], "new_lead");
    assert_eq!(v["deliveries"], 2);
    let event_id = hookline_domain::id::EventId::parse(v["event_id"].as_str().unwrap()).unwrap();

    let mut conn = db(&app).await;
    let mut targets: Vec<uuid::Uuid> = deliveries::table
        .filter(deliveries::event_id.eq(event_id.as_uuid()))
        .select(deliveries::endpoint_id)
        .load(&mut conn)
        .await
        .unwrap();
    targets.sort();
    let mut expected = vec![
        hookline_domain::id::EndpointId::parse(&leads).unwrap().as_uuid(),
        hookline_domain::id::EndpointId::parse(&all).unwrap().as_uuid(),
    ];
    expected.sort();
    assert_eq!(targets, expected);
    let outboxed: i64 = outbox::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(outboxed, 2);
    let stored: Value = events::table.find(event_id.as_uuid()).select(events::data).first(&mut conn).await.unwrap();
    assert_eq!(stored, lead("lead_1"));

    // A lead update reaches the lead_update and * endpoints.
    let res = app
        .send(
            &key,
            "/api/v1/events/leads/updates",
            &json!({"id": "lead_1", "name": "Ada", "email": "ada@example.com", "changes": {"status": "contacted"}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap()["deliveries"], 2);
}

#[tokio::test]
async fn bad_events_get_precise_problems_and_write_nothing() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    let c = &app.client;
    // Not JSON.
    let res = c
        .post(app.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 400);
    // Schema violations, each path listed.
    let res = app.send(&key, "/api/v1/events/leads", &json!({"id": "l1", "email": "not-an-email"})).await;
    let (status, p) = problem(res).await;
    assert_eq!(status, 422);
    let errors = p["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["field"] == "/email"), "{p}");
    assert!(errors.iter().any(|e| e["message"].as_str().unwrap().contains("name")), "{p}");
    let res = app
        .send(&key, "/api/v1/events/leads/updates", &json!({"id": "l1", "name": "A", "email": "a@example.com"}))
        .await;
    let (status, p) = problem(res).await;
    assert_eq!(status, 422);
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("changes"));
    let res = app
        .send(
            &key,
            "/api/v1/events",
            &json!({"event_type": "new_lead", "data": {"id": 5, "name": "A", "email": "a@example.com"}}),
        )
        .await;
    let (status, p) = problem(res).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("/data/id")));
    // Unknown type.
    let res = app.send(&key, "/api/v1/events", &json!({"event_type": "invoice.paid", "data": {}})).await;
    let (status, p) = problem(res).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("event_type")));
    // Too large.
    let big = json!({"id": "l", "name": "x".repeat(300 * 1024), "email": "a@example.com"});
    assert_eq!(problem(app.send(&key, "/api/v1/events/leads", &big).await).await.0, 413);
    // Missing scope.
    let ro: Value = app.control_post(&key, "/api/v1/keys", json!({"name": "ro", "role": "read_only"})).await;
    let (status, p) = problem(app.send(ro["key"].as_str().unwrap(), "/api/v1/events/leads", &lead("l")).await).await;
    assert_eq!((status, p["required_scope"].as_str()), (403, Some("events:write")));
    let mut conn = db(&app).await;
    assert_eq!(events::table.count().get_result::<i64>(&mut conn).await.unwrap(), 0);
    assert_eq!(deliveries::table.count().get_result::<i64>(&mut conn).await.unwrap(), 0);
}

#[tokio::test]
async fn custom_types_are_validated_against_their_own_schema() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    let schema =
        json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}});
    app.control_post(&key, "/api/v1/event-types", json!({"name": "invoice.paid", "schema": schema})).await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["invoice.paid"]})).await;
    let ok = app.send(&key, "/api/v1/events", &json!({"event_type": "invoice.paid", "data": {"amount": 12.5}})).await;
    assert_eq!(ok.status(), 202);
    assert_eq!(ok.json::<Value>().await.unwrap()["deliveries"], 1);
    let (status, p) =
        problem(app.send(&key, "/api/v1/events", &json!({"event_type": "invoice.paid", "data": {"amount": -1}})).await)
            .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("/data/amount")));
    // Another org does not see it.
    let other = app.org("Other").await;
    let (status, _) = problem(
        app.send(&other, "/api/v1/events", &json!({"event_type": "invoice.paid", "data": {"amount": 1}})).await,
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_original_answer_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    let send = |k: &'static str, body: Value| {
        let req = app
            .client
            .post(app.ingest.url("/api/v1/events/leads"))
            .bearer_auth(&key)
            .header("Idempotency-Key", k)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let first: Value = send("crm-1", lead("l1")).await.json().await.unwrap();
    let again = send("crm-1", lead("l1")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let (status, p) = problem(send("crm-1", lead("l2")).await).await;
    assert_eq!((status, p["type"].as_str()), (409, Some("https://hookline.dev/problems/idempotency_conflict")));
    // event_id in the generic route works the same way.
    let body = json!({"event_type": "new_lead", "data": lead("l3"), "event_id": "crm-3"});
    let a: Value = app.send(&key, "/api/v1/events", &body).await.json().await.unwrap();
    let b: Value = app.send(&key, "/api/v1/events", &body).await.json().await.unwrap();
    assert_eq!(a["event_id"], b["event_id"]);
    let mut conn = db(&app).await;
    assert_eq!(events::table.count().get_result::<i64>(&mut conn).await.unwrap(), 2);
    assert_eq!(deliveries::table.count().get_result::<i64>(&mut conn).await.unwrap(), 2);
}

#[tokio::test]
async fn concurrent_duplicates_on_two_instances_create_one_event() {
    let app = TestApp::spawn().await;
    let second = hookline_test_support::serve(app.env.kit(&[]).await, {
        let k = app.env.kit(&[]).await;
        hookline_ingest_api::server_spec(&k)
    });
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = if i % 2 == 0 { app.ingest.url("/api/v1/events/leads") } else { second.url("/api/v1/events/leads") };
        let req = app.client.post(url).bearer_auth(&key).header("Idempotency-Key", "same-moment").json(&lead("l1"));
        tasks.push(tokio::spawn(async move { req.send().await.unwrap() }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status(), 202);
        ids.insert(res.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut conn = db(&app).await;
    assert_eq!(events::table.count().get_result::<i64>(&mut conn).await.unwrap(), 1);
    assert_eq!(deliveries::table.count().get_result::<i64>(&mut conn).await.unwrap(), 1);
}
