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
    // One outbox row stands for the event's deliveries.
    let outboxed: Vec<(Option<uuid::Uuid>, Option<uuid::Uuid>)> =
        outbox::table.select((outbox::event_id, outbox::delivery_id)).load(&mut conn).await.unwrap();
    assert_eq!(outboxed, vec![(Some(event_id.as_uuid()), None)]);
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
    let (second, _) = app.second_ingest().await;
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

#[tokio::test]
async fn the_org_event_quota_is_shared_by_keys_and_instances_and_reported_beside_the_key_limit() {
    let app = TestApp::spawn().await;
    let (second, _) = app.second_ingest().await;
    let admin = app.org("Acme").await;
    let me: Value =
        app.client.get(app.control.url("/api/v1/me")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let org = me["org_id"].as_str().unwrap();
    // Operator only.
    let res = app
        .client
        .patch(app.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(&admin)
        .json(&json!({"events_per_minute": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .patch(app.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(hookline_test_support::OPERATOR_TOKEN)
        .json(&json!({"events_per_minute": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let a: Value = app.control_post(&admin, "/api/v1/keys", json!({"name": "a", "role": "read_write"})).await;
    let b: Value = app.control_post(&admin, "/api/v1/keys", json!({"name": "b", "role": "read_write"})).await;
    let (a, b) = (a["key"].as_str().unwrap().to_owned(), b["key"].as_str().unwrap().to_owned());
    let mut last = None;
    for i in 0..5 {
        let (key, url) = if i % 2 == 0 {
            (&a, app.ingest.url("/api/v1/events/leads"))
        } else {
            (&b, second.url("/api/v1/events/leads"))
        };
        let res = app.client.post(url).bearer_auth(key).json(&lead(&format!("l{i}"))).send().await.unwrap();
        assert_eq!(res.status(), 202, "event {i}");
        last = Some(res);
    }
    let res = last.unwrap();
    let policy = res.headers()["ratelimit-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("\"key\";q=1000000;w=3600") && policy.contains("\"org\";q=5;w=60"), "{policy}");
    assert_eq!(res.headers()["x-ratelimit-limit"], "5", "the tighter policy is in X-RateLimit-*");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    let over =
        app.client.post(second.url("/api/v1/events/leads")).bearer_auth(&a).json(&lead("l6")).send().await.unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    // The quota is for events: other routes are not counted against it.
    let res = app.client.get(app.control.url("/api/v1/me")).bearer_auth(&a).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers()["ratelimit-policy"].to_str().unwrap().contains("org"));
}

#[tokio::test]
async fn endpoint_and_key_caps_answer_409_naming_the_quota() {
    let app = TestApp::spawn().await;
    let admin = app.org("Acme").await;
    let me: Value =
        app.client.get(app.control.url("/api/v1/me")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let org = me["org_id"].as_str().unwrap();
    let res = app
        .client
        .patch(app.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(hookline_test_support::OPERATOR_TOKEN)
        .json(&json!({"max_endpoints": 1, "max_keys": 2}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!((v["max_endpoints"].as_i64(), v["max_keys"].as_i64()), (Some(1), Some(2)));
    app.endpoint(&admin, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    let res = app
        .client
        .post(app.control.url("/api/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"url": "http://127.0.0.1:9/b", "events": ["*"]}))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(res).await;
    assert_eq!((status, p["type"].as_str()), (409, Some("https://hookline.dev/problems/quota_exceeded")));
    assert!(p["detail"].as_str().unwrap().contains("max_endpoints"));
    app.control_post(&admin, "/api/v1/keys", json!({"name": "second", "role": "read_only"})).await;
    let res = app
        .client
        .post(app.control.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "third", "role": "read_only"}))
        .send()
        .await
        .unwrap();
    let (status, p) = problem(res).await;
    assert_eq!(status, 409);
    assert!(p["detail"].as_str().unwrap().contains("max_keys"));
    let res = app
        .client
        .patch(app.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(hookline_test_support::OPERATOR_TOKEN)
        .json(&json!({"max_keys": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 422);
}

#[tokio::test]
async fn hostile_bodies_and_headers_get_a_clear_4xx_and_write_nothing() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    let c = &app.client;
    let url = app.ingest.url("/api/v1/events");
    let raw =
        |body: Vec<u8>| c.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body).send();
    // Deeply nested JSON: refused as invalid, not a stack overflow.
    let deep = format!("{{\"event_type\":\"x\",\"data\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let status = raw(deep.into_bytes()).await.map(|r| r.status().as_u16()).unwrap_or(0);
    assert!(status == 400 || status == 413, "deep nesting: {status}");
    // Nesting within the size limit but beyond any sane depth.
    let nested = format!(
        "{{\"event_type\":\"new_lead\",\"data\":{{\"id\":\"l\",\"name\":\"A\",\"email\":\"a@example.com\",\"x\":{}1{}}}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let (status, _) = problem(raw(nested.into_bytes()).await.unwrap()).await;
    assert!(status == 400 || status == 422, "nesting: {status}");
    // Invalid UTF-8.
    let mut bad = br#"{"event_type":"new_lead","data":{"id":"l","name":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    bad.extend_from_slice(br#"","email":"a@example.com"}}"#);
    let (status, p) = problem(raw(bad).await.unwrap()).await;
    assert_eq!(status, 400, "{p}");
    // A chunked body with no Content-Length that grows past the limit.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = app.ingest.addr.trim_start_matches("http://").to_owned();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        for _ in 0..400 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 413"), "{text}");
    }
    // Huge headers: refused (431) or the connection is closed; never a crash.
    let res = c.post(&url).bearer_auth(&key).header("x-padding", "a".repeat(64 * 1024)).json(&lead("l")).send().await;
    if let Ok(res) = res {
        assert!(res.status().is_client_error(), "huge header: {}", res.status());
    }
    // A wrong content type.
    let res = c.post(&url).bearer_auth(&key).header("content-type", "text/plain").body("hi").send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    // The service still answers, and nothing was written.
    assert_eq!(app.send(&key, "/api/v1/events/leads", &lead("ok")).await.status(), 202);
    let mut conn = db(&app).await;
    assert_eq!(events::table.count().get_result::<i64>(&mut conn).await.unwrap(), 1);
}

#[tokio::test]
async fn a_slow_client_is_cut_off_without_holding_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[("HOOKLINE_BODY_TIMEOUT_SECS", "2")]).await;
    let key = app.org("Acme").await;
    let addr = app.ingest.addr.trim_start_matches("http://").to_owned();
    // Send the headers, promise a body, then stall.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile other clients are served.
    for i in 0..5 {
        assert_eq!(app.send(&key, "/api/v1/events/leads", &lead(&format!("l{i}"))).await.status(), 202);
    }
    // The stalled request is answered with an error once the body deadline passes.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stalled.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closes a stalled request");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

#[tokio::test]
async fn an_encoded_path_to_ingest_still_counts_against_the_org_quota() {
    let app = TestApp::spawn().await;
    let admin = app.org("Acme").await;
    let me: Value =
        app.client.get(app.control.url("/api/v1/me")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let org = me["org_id"].as_str().unwrap();
    let res = app
        .client
        .patch(app.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(hookline_test_support::OPERATOR_TOKEN)
        .json(&json!({"events_per_minute": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut statuses = Vec::new();
    for (i, path) in ["/api/v1/%65vents/leads", "/api/v1/ev%65nts/leads", "/api/v1/%65vents/leads"].iter().enumerate() {
        let res = app
            .client
            .post(app.ingest.url(path))
            .bearer_auth(&admin)
            .json(&lead(&format!("l{i}")))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429]);
}

#[tokio::test]
async fn a_lead_postgres_cannot_store_is_422_and_costs_no_other_tenant() {
    let app = TestApp::spawn().await;
    let bad = app.org("Mallory").await;
    let good = app.org("Acme").await;
    app.endpoint(&good, json!({"url": "https://93.184.216.34/hook", "events": ["*"]})).await;
    let mut bad_lead = lead("evil");
    bad_lead["name"] = json!("\u{0}");
    let sends = (0..20).map(|i| {
        let (key, body) = if i % 2 == 0 { (&bad, bad_lead.clone()) } else { (&good, lead(&format!("ok{i}"))) };
        app.client.post(app.ingest.url("/api/v1/events/leads")).bearer_auth(key).json(&body).send()
    });
    for (i, res) in futures_util::future::join_all(sends).await.into_iter().enumerate() {
        let res = res.unwrap();
        if i % 2 == 0 {
            assert_eq!(res.status(), 422);
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["errors"][0]["field"], "name", "{p}");
        } else {
            assert_eq!(res.status(), 202);
        }
    }
}

#[tokio::test]
async fn payload_is_another_name_for_data() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    let lead = json!({"id": "lead_1", "name": "Ada", "email": "ada@example.com"});
    let res = app.send(&key, "/api/v1/events", &json!({"event_type": "new_lead", "payload": lead})).await;
    assert_eq!(res.status(), 202);
    let (status, p) = problem(
        app.send(
            &key,
            "/api/v1/events",
            &json!({"event_type": "new_lead", "payload": {"id": 5, "name": "A", "email": "a@example.com"}}),
        )
        .await,
    )
    .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("/payload/id")), "errors name the field as sent");
    let (status, p) = problem(
        app.send(&key, "/api/v1/events", &json!({"event_type": "new_lead", "data": lead, "payload": lead})).await,
    )
    .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("payload")));
    let (status, p) = problem(app.send(&key, "/api/v1/events", &json!({"event_type": "new_lead"})).await).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("data")));
    let mut conn = db(&app).await;
    assert_eq!(events::table.count().get_result::<i64>(&mut conn).await.unwrap(), 1, "only the good one is stored");
}

#[tokio::test]
async fn events_can_be_listed_and_read_with_their_deliveries() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["new_lead"]})).await;
    let first = app.send(&key, "/api/v1/events/leads", &lead("l1")).await.json::<Value>().await.unwrap();
    let update = json!({"id": "l1", "name": "Ada", "email": "ada@example.com", "changes": {"name": "Ada"}});
    let second = app.send(&key, "/api/v1/events/leads/updates", &update).await.json::<Value>().await.unwrap();
    let get = |path: String, key: String| {
        let c = app.client.clone();
        let url = app.ingest.url(&path);
        async move {
            let res = c.get(url).bearer_auth(key).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, page) = get("/api/v1/events".into(), key.clone()).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second["event_id"].as_str().unwrap(), first["event_id"].as_str().unwrap()], "newest first");
    let (_, only) = get("/api/v1/events?event=new_lead&limit=1".into(), key.clone()).await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    assert_eq!(only["data"][0]["event"], "new_lead");
    assert_eq!(only["data"][0]["data"]["id"], "l1");

    let (status, detail) = get(format!("/api/v1/events/{}", first["event_id"].as_str().unwrap()), key.clone()).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["deliveries"].as_array().unwrap().len(), 1, "{detail}");
    assert!(detail["deliveries"][0]["webhook_id"].as_str().unwrap().starts_with("ep_"));
    // Another organisation's key sees none of it.
    let other = app.org("Other").await;
    let (status, _) = get(format!("/api/v1/events/{}", first["event_id"].as_str().unwrap()), other.clone()).await;
    assert_eq!(status, 404);
    let (_, empty) = get("/api/v1/events".into(), other).await;
    assert!(empty["data"].as_array().unwrap().is_empty());
}
