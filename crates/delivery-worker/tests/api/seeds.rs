//! What clients and receivers of other webhook systems rely on: dead letters
//! as a resource, a test that answers, unregistered event types.

use std::time::Duration;

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::OPERATOR_TOKEN;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{wait_received, Stack};

async fn dead_letters(s: &Stack, query: &str) -> Value {
    let (status, v) = s.control(Method::GET, &format!("/api/v1/dead-letters?{query}"), None).await;
    assert_eq!(status, 200, "{query}: {v}");
    v
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|d| d["delivery_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_one_by_one_or_by_filter_and_resolved() {
    let s = Stack::start().await;
    let (ra, rb) = (TestReceiver::start().await, TestReceiver::start().await);
    ra.set(Behaviour::Status(500));
    rb.set(Behaviour::Status(500));
    let a = s.endpoint(&ra, "/a", json!({"max_retries": 0})).await;
    let b = s.endpoint(&rb, "/b", json!({"max_retries": 0, "events": ["new_lead"]})).await;
    for i in 0..3 {
        s.send_lead(&format!("l{i}")).await;
    }
    s.wait_status(&a, 3, "dead_letter", Duration::from_secs(20)).await;
    s.wait_status(&b, 3, "dead_letter", Duration::from_secs(20)).await;

    let all = dead_letters(&s, "").await;
    assert_eq!(ids(&all).len(), 6, "{all}");
    let first = &all["data"][0];
    assert_eq!((first["event"].as_str(), first["attempts"].as_i64()), (Some("new_lead"), Some(1)));
    assert_eq!((first["last_status_code"].as_i64(), first["resolved"].as_bool()), (Some(500), Some(false)));
    assert!(first["dead_lettered_at"].is_string() && first["event_id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(ids(&dead_letters(&s, &format!("webhook_id={a}")).await).len(), 3);
    assert_eq!(ids(&dead_letters(&s, "event=lead_update").await).len(), 0);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(ids(&dead_letters(&s, &format!("since={future}")).await).len(), 0);
    assert_eq!(ids(&dead_letters(&s, &format!("until={future}")).await).len(), 6);
    let page = dead_letters(&s, "limit=4").await;
    let rest = dead_letters(&s, &format!("limit=4&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!((ids(&page).len(), ids(&rest).len(), rest["next_cursor"].clone()), (4, 2, Value::Null));
    let (status, p) = s.control(Method::GET, "/api/v1/dead-letters?webhook_id=nope", None).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("webhook_id")), "{p}");

    // Resolving keeps the entry, marked, and only the first time counts.
    let a_ids = ids(&dead_letters(&s, &format!("webhook_id={a}")).await);
    let (status, v) = s.control(Method::POST, &format!("/api/v1/dead-letters/{}/resolve", a_ids[0]), None).await;
    assert_eq!((status, v["resolved"].as_bool()), (200, Some(true)), "{v}");
    let (_, again) = s.control(Method::POST, &format!("/api/v1/dead-letters/{}/resolve", a_ids[0]), None).await;
    assert_eq!(again["resolved_at"], v["resolved_at"]);
    assert_eq!(ids(&dead_letters(&s, "resolved=true").await), [a_ids[0].clone()]);
    assert_eq!(ids(&dead_letters(&s, "resolved=false").await).len(), 5);

    // One replayed: a new attempt, and it is no longer a dead letter.
    rb.set(Behaviour::Ok);
    let b_ids = ids(&dead_letters(&s, &format!("webhook_id={b}")).await);
    let (status, v) = s.control(Method::POST, &format!("/api/v1/dead-letters/{}/replay", b_ids[0]), None).await;
    assert_eq!((status, v["status"].as_str()), (202, Some("pending")), "{v}");
    s.wait_status(&b, 1, "delivered", Duration::from_secs(20)).await;
    assert!(!ids(&dead_letters(&s, "").await).contains(&b_ids[0]));
    let (status, _) = s.control(Method::POST, &format!("/api/v1/dead-letters/{}/replay", b_ids[0]), None).await;
    assert_eq!(status, 404, "a delivered delivery is no dead letter");

    // The rest of endpoint a by filter: open ones only, unless asked.
    ra.set(Behaviour::Ok);
    let (status, v) = s.control(Method::POST, "/api/v1/dead-letters/replay", Some(json!({"webhook_id": a}))).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v, json!({"replayed": 2, "has_more": false}));
    s.wait_status(&a, 2, "delivered", Duration::from_secs(20)).await;
    assert_eq!(ids(&dead_letters(&s, &format!("webhook_id={a}")).await), [a_ids[0].clone()]);
    let (_, v) = s.control(Method::POST, "/api/v1/dead-letters/replay", Some(json!({"resolved": true}))).await;
    assert_eq!(v["replayed"], 1);
    s.wait_status(&a, 3, "delivered", Duration::from_secs(20)).await;
    let (_, v) = s.control(Method::POST, "/api/v1/dead-letters/replay", Some(json!({"event": "new_lead"}))).await;
    assert_eq!(v["replayed"], 2, "b's last two");
    s.wait_status(&b, 3, "delivered", Duration::from_secs(20)).await;
    assert_eq!(ids(&dead_letters(&s, "").await).len(), 0);
    let (status, p) = s.control(Method::POST, "/api/v1/dead-letters/replay", Some(json!({"color": "red"}))).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("color")), "{p}");
}

#[tokio::test]
async fn another_orgs_dead_letters_are_invisible() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let ep = s.endpoint(&r, "/h", json!({"max_retries": 0})).await;
    s.send_lead("l1").await;
    let dead = s.wait_status(&ep, 1, "dead_letter", Duration::from_secs(20)).await;
    let id = dead[0]["id"].as_str().unwrap();
    let other: Value = s
        .client
        .post(s.control.url("/api/v1/orgs"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = other["api_key"]["key"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/api/v1/dead-letters/{id}")),
        (Method::POST, format!("/api/v1/dead-letters/{id}/replay")),
        (Method::POST, format!("/api/v1/dead-letters/{id}/resolve")),
    ] {
        let res = s.client.request(method, s.control.url(&path)).bearer_auth(key).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let list: Value = s
        .client
        .get(s.control.url("/api/v1/dead-letters"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
    let (_, v) = s.control(Method::POST, "/api/v1/dead-letters/replay", Some(json!({}))).await;
    assert_eq!(v["replayed"], 1, "its own org replays it: {v}");
}

#[tokio::test]
async fn a_test_with_wait_answers_with_the_receivers_reply() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/h", json!({"signature_format": "sha256_prefixed"})).await;
    let (status, v) = s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/test?wait=true"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["succeeded"].as_bool(), v["status_code"].as_i64()), (Some(true), Some(200)));
    assert_eq!(v["signature_format"], "sha256_prefixed");
    assert!(v["latency_ms"].as_i64().unwrap() >= 0);
    assert!(v["delivery_id"].as_str().unwrap().starts_with("dlv_"));
    assert!(!v["response_excerpt"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["error"], Value::Null);
    let got = wait_received(&r, 1, Duration::from_secs(5)).await;
    assert!(got[0].header("x-webhook-signature").unwrap().starts_with("sha256="));

    r.set(Behaviour::Raw { status: 503, body: b"down for maintenance".to_vec(), header: b"x".to_vec() });
    let (status, v) = s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/test?wait=true"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["succeeded"].as_bool(), v["status_code"].as_i64()), (Some(false), Some(503)));
    assert_eq!(v["response_excerpt"], "down for maintenance");
    assert!(v["error"].is_string(), "{v}");

    // Without wait: queued, as before.
    let (status, v) = s.control(Method::POST, &format!("/api/v1/webhooks/{ep}/test"), None).await;
    assert_eq!(status, 202);
    assert!(v.get("status_code").is_none(), "{v}");
}

#[tokio::test]
async fn an_org_that_is_not_strict_takes_any_event_type_as_seed_003_publishes_it() {
    let s = Stack::start().await;
    let (_, me) = s.control(Method::GET, "/api/v1/me", None).await;
    let org = me["org_id"].as_str().unwrap().to_owned();
    let publish = || async {
        s.client
            .post(s.ingest.url("/api/v1/events"))
            .header("X-API-Key", &s.key)
            .json(&json!({"event_id": "evt_123", "event_type": "user.created",
                "payload": {"user_id": "user_456", "email": "user@example.com", "created_at": "2024-01-01T00:00:00Z"}}))
            .send()
            .await
            .unwrap()
    };
    let res = publish().await;
    assert_eq!(res.status(), 422, "strict by default");
    let r = TestReceiver::start().await;
    let (status, p) = s
        .control(Method::POST, "/api/v1/webhooks", Some(json!({"url": r.url("/h"), "events": ["user.created"]})))
        .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("events[0]")), "{p}");

    let res = s
        .client
        .patch(s.control.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"strict_event_types": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["strict_event_types"], false);
    let ep = s.endpoint(&r, "/h", json!({"events": ["user.created"]})).await;
    let res = publish().await;
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!((v["event_type"].as_str(), v["deliveries"].as_i64()), (Some("user.created"), Some(1)), "{v}");
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "user.created");
    assert_eq!(body["data"]["user_id"], "user_456");
    s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    // The same event_id is the same event.
    let again = publish().await;
    assert!(again.status().is_success(), "{}", again.status());
    assert_eq!(again.json::<Value>().await.unwrap()["event_id"], v["event_id"]);
    // Built-in types are still validated.
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events"))
        .header("X-API-Key", &s.key)
        .json(&json!({"event_type": "new_lead", "payload": {"id": "l1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn ed25519_endpoints_sign_with_a_key_whose_public_half_the_api_returns() {
    use hookline_domain::signing::verify_ed25519;
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let (status, v) = s
        .control(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": r.url("/h"), "events": ["*"], "signature_format": "ed25519"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let ep = v["id"].as_str().unwrap().to_owned();
    let public_key = v["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("whpk_"), "{v}");
    r.set_secrets(&[v["secret"].as_str().unwrap()]);
    s.send_lead("l1").await;
    let got = wait_received(&r, 1, Duration::from_secs(20)).await;
    let (id, ts) = (got[0].header("webhook-id").unwrap(), got[0].header("webhook-timestamp").unwrap());
    let sig = got[0].header("webhook-signature").unwrap();
    assert!(sig.starts_with("v1a,") && !sig.contains("v1,"), "{sig}");
    assert!(verify_ed25519(&public_key, id, ts.parse().unwrap(), &got[0].body, sig));
    assert!(!verify_ed25519(&public_key, id, ts.parse().unwrap(), b"{}", sig), "the body is signed");
    assert!(got[0].hex_valid, "X-Webhook-Signature stays the guide's hex HMAC");

    // The key is the endpoint's for good: reading or changing the endpoint keeps it.
    let (_, again) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!(again["public_key"], public_key.as_str());
    let (_, hex) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"signature_format": "hex"}))).await;
    assert_eq!(hex["signature_format"], "hex");
    let (_, back) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"signature_format": "ed25519"}))).await;
    assert_eq!(back["public_key"], public_key.as_str());

    // An endpoint created with HMAC gets a key when it switches.
    let other = s.endpoint(&r, "/o", json!({})).await;
    let (_, o) = s.control(Method::GET, &format!("/api/v1/webhooks/{other}"), None).await;
    assert_eq!(o["public_key"], Value::Null);
    let (_, o) = s
        .control(Method::PATCH, &format!("/api/v1/webhooks/{other}"), Some(json!({"signature_format": "ed25519"})))
        .await;
    let other_key = o["public_key"].as_str().unwrap();
    assert!(other_key.starts_with("whpk_") && other_key != public_key);
    let (status, p) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{other}"), Some(json!({"signature_format": "rsa"}))).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("signature_format")));
}
