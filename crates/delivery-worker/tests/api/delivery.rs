use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn a_delivery_carries_the_guides_body_and_every_contract_header() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/hook", json!({"headers": {"X-Tenant": "acme"}})).await;
    let event_id = s.send_lead("lead_123").await;
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    let req = &got[0];
    assert!(req.hex_valid, "X-Webhook-Signature verifies with the guide's scheme");
    assert!(req.standard_valid, "webhook-signature verifies with Standard Webhooks");
    let body = req.json();
    assert_eq!(body["event"], "new_lead");
    assert_eq!(
        body["data"],
        json!({"id": "lead_123", "name": "Ada Lovelace", "email": "ada@example.com", "source": "website"})
    );
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["data", "event", "timestamp"]);
    assert!(String::from_utf8_lossy(&req.body).starts_with("{\"event\":\"new_lead\",\"timestamp\":"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-webhook-event"), Some("new_lead"));
    assert_eq!(req.header("x-webhook-attempt"), Some("1"));
    assert_eq!(req.header("x-tenant"), Some("acme"));
    assert!(req.header("user-agent").unwrap().starts_with("Hookline/"));
    let delivery_id = req.header("x-webhook-delivery-id").unwrap();
    assert!(delivery_id.starts_with("dlv_"));
    assert_eq!(req.header("webhook-id"), Some(delivery_id));
    let ts: i64 = req.header("x-webhook-timestamp").unwrap().parse().unwrap();
    assert_eq!(req.header("webhook-timestamp").unwrap().parse::<i64>().unwrap(), ts);
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);
    assert!(req.header("webhook-signature").unwrap().starts_with("v1,"));
    // History shows the delivery and its attempt.
    let d = s.wait_status(&ep, 1, "delivered", Duration::from_secs(10)).await;
    assert_eq!(d[0]["id"], delivery_id);
    assert_eq!(d[0]["event_id"], event_id.as_str());
    let (_, detail) = s.control(Method::GET, &format!("/api/v1/webhooks/deliveries/{delivery_id}"), None).await;
    assert_eq!(detail["attempt_log"].as_array().unwrap().len(), 1);
    assert_eq!(detail["attempt_log"][0]["status_code"], 200);
    assert_eq!(detail["attempt_log"][0]["response_body"], "{\"status\":\"received\"}");
    assert_eq!(detail["attempt_log"][0]["request_headers"]["x-tenant"], "<custom>");
    assert_eq!(detail["payload"]["event"], "new_lead");
}

#[tokio::test]
async fn during_a_secret_rotation_both_secrets_sign() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    let (_, created) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert!(created.get("secret").is_none());
    let rotate = format!("/api/v1/webhooks/{ep}/rotate-secret");
    let (status, rotated) = s.control(Method::POST, &rotate, Some(json!({"grace_period_seconds": 3600}))).await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    // A receiver still on the old secret verifies both headers.
    s.send_lead("l1").await;
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    assert!(got[0].hex_valid && got[0].standard_valid);
    assert_eq!(got[0].header("webhook-signature").unwrap().split(' ').count(), 2);
    // One that switched early verifies webhook-signature, which lists both.
    r.set_secrets(&[&new_secret]);
    s.send_lead("l2").await;
    let got = wait_received(&r, 2, Duration::from_secs(20)).await;
    assert!(got[1].standard_valid);
    // Once the grace period is over (here: a rotation without one), only the newest signs.
    let (_, rotated) = s.control(Method::POST, &rotate, Some(json!({"grace_period_seconds": 0}))).await;
    r.set_secrets(&[rotated["secret"].as_str().unwrap()]);
    s.send_lead("l3").await;
    let got = wait_received(&r, 3, Duration::from_secs(20)).await;
    assert!(got[2].hex_valid && got[2].standard_valid);
    assert_eq!(got[2].header("webhook-signature").unwrap().split(' ').count(), 1);
}

#[tokio::test]
async fn each_endpoint_gets_its_own_delivery_and_duplicates_are_not_sent() {
    let s = Stack::start().await;
    let a = TestReceiver::start().await;
    let b = TestReceiver::start().await;
    s.endpoint(&a, "/a", json!({})).await;
    s.endpoint(&b, "/b", json!({"events": ["lead_update"]})).await;
    for i in 0..20 {
        s.send_lead(&format!("l{i}")).await;
    }
    let got = wait_received(&a, 20, Duration::from_secs(30)).await;
    let ids: BTreeSet<_> = got.iter().map(|r| r.header("x-webhook-delivery-id").unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 20);
    assert!(got.iter().all(|r| r.hex_valid && r.standard_valid));
    assert_eq!(b.count(), 0, "b subscribed to lead_update only");
}

#[tokio::test]
async fn a_test_event_reaches_only_that_endpoint() {
    let s = Stack::start().await;
    let a = TestReceiver::start().await;
    let b = TestReceiver::start().await;
    let ep = s.endpoint(&a, "/a", json!({"events": ["new_lead"]})).await;
    s.endpoint(&b, "/b", json!({})).await;
    let (status, v) = s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/test"), None).await;
    assert_eq!(status, 202);
    let got = wait_received(&a, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].header("x-webhook-event"), Some("webhook.test"));
    assert_eq!(got[0].header("x-webhook-delivery-id"), v["delivery_id"].as_str());
    assert_eq!(got[0].json()["data"]["webhook_id"], ep.as_str());
    assert_eq!(b.count(), 0);
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_slow_a_healthy_one() {
    let s = Stack::start_with(&[("HOOKLINE_ENDPOINT_CONCURRENCY", "2"), ("HOOKLINE_WORKER_CONCURRENCY", "8")]).await;
    let hanging = TestReceiver::start().await;
    hanging.set(Behaviour::Hang);
    let healthy = TestReceiver::start().await;
    s.endpoint(&hanging, "/slow", json!({"timeout": 10})).await;
    s.endpoint(&healthy, "/fast", json!({})).await;
    let start = Instant::now();
    for i in 0..20 {
        s.send_lead(&format!("l{i}")).await;
    }
    wait_received(&healthy, 20, Duration::from_secs(30)).await;
    let took = start.elapsed();
    // The hanging endpoint holds at most 2 requests for 10 s; the healthy one never waits for them.
    assert!(took < Duration::from_secs(8), "healthy deliveries took {took:?}");
    assert!(hanging.count() <= 2, "the cap holds: {} in flight", hanging.count());
}

#[tokio::test]
async fn endpoints_sharing_a_host_keep_their_connections() {
    // Five endpoints on one receiver, each at its cap of 16 slow requests:
    // 80 connections to one host at once, more than a pool of 64 would keep.
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    // Slow enough that a wave's 80 requests are all open together even on a busy machine.
    r.set(Behaviour::Slow(Duration::from_secs(1)));
    let mut hooks = Vec::new();
    for i in 0..5 {
        hooks.push(s.endpoint(&r, &format!("/p{i}"), json!({})).await);
    }
    // Two waves, each needing all 80 at once.
    for wave in 1..=2 {
        for i in 0..16 {
            s.send_lead(&format!("w{wave}-{i}")).await;
        }
        for h in &hooks {
            s.wait_status(h, 16 * wave, "delivered", Duration::from_secs(60)).await;
        }
    }
    let c = r.connections();
    assert!(c.peak > 64, "the load needed more connections than a pool of 64: {c:?}");
    // The second wave went over the connections the first one opened.
    assert_eq!(c.accepted, c.peak, "connections were dropped and opened again: {c:?}");
}

#[tokio::test]
async fn a_forced_broker_disconnect_during_a_burst_loses_nothing() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    s.endpoint(&r, "/hook", json!({})).await;
    for i in 0..30 {
        s.send_lead(&format!("l{i}")).await;
        if i == 12 {
            hookline_test_support::close_vhost_connections(&s.env.vhost).await.unwrap();
        }
    }
    let got = wait_received(&r, 30, Duration::from_secs(60)).await;
    let ids: BTreeSet<_> = got.iter().map(|x| x.header("x-webhook-delivery-id").unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 30, "every delivery arrived");
}

#[tokio::test]
async fn the_callers_trace_reaches_the_receiver() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailFirst { n: 1, status: 500 });
    s.endpoint(&r, "/hook", json!({"retry_policy": {"initial_delay_ms": 100}})).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&s.key)
        .header("traceparent", incoming)
        .json(&json!({"id": "l1", "name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // The first attempt fails; the retry travels through a delay queue and keeps the trace.
    let got = wait_received(&r, 2, Duration::from_secs(20)).await;
    for g in &got {
        let tp = g.header("traceparent").expect("traceparent sent");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace id: {tp}");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a span of our own");
    }
    // Without one, a trace is started.
    s.send_lead("l2").await;
    let got = wait_received(&r, 3, Duration::from_secs(20)).await;
    assert!(hookline_domain::trace::TraceParent::parse(got[2].header("traceparent").unwrap()).is_some());
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let inner = TestReceiver::start().await;
    // A public-looking endpoint pointing somewhere internal: the worker must
    // treat the 302 as an answer, not a hop.
    r.set(Behaviour::Redirect(inner.url("/latest/meta-data")));
    let ep = s.endpoint(&r, "/hook", json!({"max_retries": 0})).await;
    s.send_lead("lead_redirect").await;
    let d = s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    assert_eq!(d[0]["last_status_code"], 302);
    assert_eq!(r.count(), 1);
    assert_eq!(inner.count(), 0, "the redirect target was never contacted");
}

#[tokio::test]
async fn deliveries_read_alone_or_together_come_with_their_own_events() {
    use hookline_domain::id::{DeliveryId, EventId};
    use hookline_store::hot::plan::Plan;
    use hookline_store::hot::reads::get_many_with_event;

    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    for i in 0..3 {
        s.send_lead(&format!("lead_{i}")).await;
    }
    let listed = s.wait_status(&ep, 3, "delivered", Duration::from_secs(20)).await;
    let uuid = |v: &serde_json::Value| DeliveryId::parse(v["id"].as_str().unwrap()).unwrap().as_uuid();
    let event = |v: &serde_json::Value| EventId::parse(v["event_id"].as_str().unwrap()).unwrap().as_uuid();
    let ids: Vec<uuid::Uuid> = listed.iter().map(uuid).collect();
    let keyed = hookline_store::hot::plan::keyed_pool(&s.env.database_url(), 1).unwrap();
    for plan in [Plan::PerExecution, Plan::Keyed] {
        let mut conn = match plan {
            Plan::PerExecution => s.conns.pool.get().await.unwrap(),
            Plan::Keyed => keyed.get().await.unwrap(),
        };
        let together = get_many_with_event(&mut conn, &ids, plan).await.unwrap();
        assert_eq!(together.len(), 3, "{plan:?}");
        for d in &listed {
            let alone = get_many_with_event(&mut conn, &[uuid(d)], plan).await.unwrap();
            assert_eq!(alone.len(), 1, "{plan:?}");
            let (delivery, ev) = &alone[0];
            assert_eq!(delivery.id, uuid(d));
            assert_eq!(ev.id, event(d), "its own event ({plan:?})");
            assert_eq!(delivery.event_id, ev.id);
            let same = together.iter().find(|(t, _)| t.id == delivery.id).expect("read together too");
            assert_eq!(same.1.data, ev.data);
        }
        assert!(
            get_many_with_event(&mut conn, &[uuid::Uuid::new_v4()], plan).await.unwrap().is_empty(),
            "absent ids are skipped ({plan:?})"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Plans {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    generic_plans: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    custom_plans: i64,
}

#[derive(diesel::QueryableByName)]
struct Scans {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    seq_scan: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    idx_scan: i64,
}

/// The worker's per-delivery statements (the batched read, the attempt
/// record, the claim of retries), on a keyed connection, keep one generic
/// plan that looks deliveries up by key, even when that plan is made on a
/// young database (every test database is one) where a scan would be the
/// cheaper guess.
#[tokio::test]
async fn keyed_connections_plan_the_workers_statements_once_as_key_lookups() {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use hookline_domain::id::DeliveryId;
    use hookline_store::deliveries::{AttemptOutcome, AttemptRow};
    use hookline_store::hot::attempts::{claim_next_attempts, record_attempts};
    use hookline_store::hot::plan::Plan;
    use hookline_store::hot::reads::get_many_with_event;

    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    // Failing, with the retry far off: the records and claims below are the worker's own shape.
    r.set(Behaviour::Status(500));
    let far = json!({"retry_policy": {"initial_delay_ms": 3_600_000, "max_delay_ms": 3_600_000}});
    let ep = s.endpoint(&r, "/hook", far).await;
    for i in 0..2 {
        s.send_lead(&format!("lead_{i}")).await;
    }
    let listed = s.wait_status(&ep, 2, "failed", Duration::from_secs(20)).await;
    let ids: Vec<uuid::Uuid> =
        listed.iter().map(|d| DeliveryId::parse(d["id"].as_str().unwrap()).unwrap().as_uuid()).collect();

    let keyed = hookline_store::hot::plan::keyed_pool(&s.env.database_url(), 1).unwrap();
    let mut conn = keyed.get().await.unwrap();
    let plans = |like: &'static str| {
        diesel::sql_query("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1")
            .bind::<diesel::sql_types::Text, _>(like)
    };
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        for round in 1..=2 {
            let read = get_many_with_event(c, &ids, Plan::Keyed).await?;
            assert_eq!(read.len(), 2);
            let attempts: Vec<AttemptRow> = read
                .iter()
                .map(|(d, _)| AttemptRow {
                    id: uuid::Uuid::new_v4(),
                    org_id: d.org_id,
                    delivery_id: d.id,
                    endpoint_id: d.endpoint_id,
                    attempt_number: d.attempt_count + round,
                    succeeded: false,
                    status_code: Some(500),
                    error_class: None,
                    error_message: None,
                    latency_ms: 1,
                    request_headers: json!({}),
                    response_headers: None,
                    response_body: None,
                    created_at: chrono::Utc::now(),
                })
                .collect();
            let outcomes = vec![
                AttemptOutcome {
                    status: hookline_domain::status::DeliveryStatus::Failed,
                    next_attempt_at: Some(chrono::Utc::now() + chrono::Duration::hours(1))
                };
                2
            ];
            record_attempts(c, &attempts, &outcomes, Plan::Keyed).await?;
            let claims: Vec<(uuid::Uuid, i32)> =
                attempts.iter().map(|a| (a.delivery_id, a.attempt_number + 1)).collect();
            assert_eq!(claim_next_attempts(c, &claims, Plan::Keyed).await?, [true, true]);
        }
        for (what, like) in [
            ("the read", "%INNER JOIN \"events\"%"),
            ("the attempt record", "%INSERT INTO delivery_attempts%"),
            ("the claim", "%UPDATE deliveries AS d SET scheduled_attempt%"),
        ] {
            let p: Plans = plans(like).get_result(c).await?;
            assert_eq!((p.generic_plans, p.custom_plans), (2, 0), "{what}: one generic plan, used twice");
        }
        let scans: Scans = diesel::sql_query(
            "SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_xact_user_tables \
             WHERE relname = 'deliveries'",
        )
        .get_result(c)
        .await?;
        assert_eq!(scans.seq_scan, 0, "deliveries were never scanned");
        assert!(scans.idx_scan >= 6, "deliveries were looked up by key ({} index scans)", scans.idx_scan);
        Ok(())
    })
    .await
    .unwrap();
}

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// A keyed connection, with every plan it made, is replaced once it has
/// outlived its lifetime, and reused until then.
#[tokio::test]
async fn keyed_connections_are_replaced_once_they_outlive_their_plans() {
    use diesel_async::RunQueryDsl;
    use hookline_test_support::eventually;

    let mut env = hookline_test_support::TestEnv::new().await;
    let lifetime = Duration::from_secs(2);
    let keyed = hookline_store::hot::plan::keyed_pool_with_lifetime(&env.database_url(), 1, lifetime).unwrap();
    let backend = || async {
        let mut conn = keyed.get().await.unwrap();
        let b: Backend = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(&mut conn).await.unwrap();
        b.pid
    };
    let opened = Instant::now();
    let first = backend().await;
    let again = backend().await;
    if opened.elapsed() < lifetime {
        assert_eq!(again, first, "a young connection is reused");
    }
    let replaced = eventually(Duration::from_secs(20), "the connection to be replaced", || async {
        Some(backend().await).filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(replaced, first);
    assert!(opened.elapsed() >= lifetime, "replaced only after its lifetime");
    eventually(Duration::from_secs(20), "the replaced connection to be closed", || async {
        let mut conn = keyed.get().await.unwrap();
        let open: Vec<Backend> = diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE pid = $1")
            .bind::<diesel::sql_types::Integer, _>(first)
            .load(&mut conn)
            .await
            .unwrap();
        open.is_empty().then_some(())
    })
    .await;
    drop(keyed);
    env.cleanup().await;
}

#[tokio::test]
async fn an_endpoint_can_take_its_signature_as_sha256_prefixed_hex() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let (status, v) = s
        .control(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": r.url("/hook"), "events": ["*"], "signature_format": "sha256_prefixed"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["signature_format"], "sha256_prefixed");
    let secret = hookline_domain::signing::WebhookSecret::parse(v["secret"].as_str().unwrap()).unwrap();
    r.set_secrets(&[v["secret"].as_str().unwrap()]);
    let id = v["id"].as_str().unwrap().to_owned();
    s.send_lead("lead_1").await;
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    // What receivers of other systems check: compare_digest(f"sha256={expected}", signature).
    let expected = format!("sha256={}", secret.sign_hex(&got[0].body));
    assert_eq!(got[0].header("x-webhook-signature"), Some(expected.as_str()));
    assert!(got[0].standard_valid, "the Standard Webhooks headers come too");

    // Back to bare hex; anything else is refused, naming the field.
    let (status, v) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{id}"), Some(json!({"signature_format": "hex"}))).await;
    assert_eq!((status, v["signature_format"].as_str()), (200, Some("hex")), "{v}");
    s.send_lead("lead_2").await;
    let got = wait_received(&r, 2, Duration::from_secs(20)).await;
    assert!(got[1].hex_valid, "{:?}", got[1].header("x-webhook-signature"));
    let (status, v) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{id}"), Some(json!({"signature_format": "base64"}))).await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["field"], "signature_format", "{v}");
}
