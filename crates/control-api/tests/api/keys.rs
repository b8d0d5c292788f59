use std::time::Duration;

use chrono::Utc;
use hookline_test_support::{eventually, http};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{call, problem, TestApp};
use crate::ops::{free_port, start_redis};

#[tokio::test]
async fn a_created_key_is_shown_once_and_works() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let v = app
        .create_key(
            &admin,
            json!({"name": "CRM", "role": "read_write", "rate_limit_per_hour": 500, "description": "prod"}),
        )
        .await;
    let key = v["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_") && key.len() == 48, "{key}");
    let prefix = v["prefix"].as_str().unwrap();
    assert!(prefix.starts_with(&key[..12]) && prefix.ends_with(&key[key.len() - 4..]), "{prefix}");
    assert_eq!(v["org_id"], org.as_str());
    assert_eq!(v["rate_limit_per_hour"], 500);
    let scopes: Vec<&str> = v["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(scopes.contains(&"events:write") && scopes.contains(&"webhooks:write") && !scopes.contains(&"keys:write"));
    // Never again: not in the listing, not in the single view.
    let id = v["id"].as_str().unwrap();
    let got: Value = app.call(Method::GET, &format!("/api/v1/keys/{id}"), &admin, None).await.json().await.unwrap();
    assert!(got.get("key").is_none());
    let list: Value = app.call(Method::GET, "/api/v1/keys", &admin, None).await.json().await.unwrap();
    assert!(!list.to_string().contains(key));
    // And it authenticates.
    assert_eq!(app.call(Method::GET, "/api/v1/audit-log", key, None).await.status(), 200);
}

#[tokio::test]
async fn each_role_reaches_exactly_its_routes() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let ro =
        app.create_key(&admin, json!({"name": "ro", "role": "read_only"})).await["key"].as_str().unwrap().to_owned();
    let rw =
        app.create_key(&admin, json!({"name": "rw", "role": "read_write"})).await["key"].as_str().unwrap().to_owned();
    let target =
        app.create_key(&admin, json!({"name": "t", "role": "read_only"})).await["id"].as_str().unwrap().to_owned();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/api/v1/keys".into(), Some(json!({"name": "n", "role": "read_only"}))),
        (Method::PATCH, format!("/api/v1/keys/{target}"), Some(json!({"name": "renamed"}))),
        (Method::POST, format!("/api/v1/keys/{target}/rotate"), Some(json!({}))),
    ];
    for (method, path, body) in &cases {
        for key in [&ro, &rw] {
            let (status, p) = problem(app.call(method.clone(), path, key, body.clone()).await).await;
            assert_eq!(status, 403, "{method} {path}");
            assert_eq!(p["required_scope"], "keys:write");
        }
        let res = app.call(method.clone(), path, &admin, body.clone()).await;
        assert!(res.status().is_success(), "admin {method} {path}: {}", res.status());
    }
    for key in [&ro, &rw, &admin] {
        assert_eq!(app.call(Method::GET, "/api/v1/keys", key, None).await.status(), 200);
        assert_eq!(app.call(Method::GET, &format!("/api/v1/keys/{target}/usage"), key, None).await.status(), 200);
        assert_eq!(app.call(Method::GET, "/api/v1/audit-log", key, None).await.status(), 200);
    }
    let (status, _) = problem(app.call(Method::DELETE, &format!("/api/v1/keys/{target}"), &ro, None).await).await;
    assert_eq!(status, 403);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/keys/{target}"), &admin, None).await.status(), 204);
}

#[tokio::test]
async fn a_key_cannot_grant_more_than_its_role_or_itself() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    // More than the role grants: 422 naming scopes.
    let (status, p) = problem(
        app.call(
            Method::POST,
            "/api/v1/keys",
            &admin,
            Some(json!({"name": "x", "role": "read_only", "scopes": ["events:write"]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"][0]["field"], "scopes");
    // A narrowed admin key cannot mint a full admin key.
    let narrow =
        app.create_key(&admin, json!({"name": "narrow", "role": "admin", "scopes": ["keys:write", "keys:read"]})).await;
    let narrow = narrow["key"].as_str().unwrap();
    let (status, _) =
        problem(app.call(Method::POST, "/api/v1/keys", narrow, Some(json!({"name": "full", "role": "admin"}))).await)
            .await;
    assert_eq!(status, 403);
    // But it can mint within itself.
    let ok = app
        .call(
            Method::POST,
            "/api/v1/keys",
            narrow,
            Some(json!({"name": "sub", "role": "read_only", "scopes": ["keys:read"]})),
        )
        .await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn invalid_input_names_every_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let body = json!({"name": "", "role": "read_only", "rate_limit_per_hour": 0, "allowed_ips": ["10.0.0.0/8", "nope"], "expires_at": "2001-01-01T00:00:00Z"});
    let (status, p) = problem(app.call(Method::POST, "/api/v1/keys", &admin, Some(body)).await).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["name", "rate_limit_per_hour", "allowed_ips[1]", "expires_at"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let (status, p) =
        problem(app.call(Method::POST, "/api/v1/keys", &admin, Some(json!({"name": "x", "role": "superuser"}))).await)
            .await;
    assert_eq!(status, 422, "{p}");
    let (status, p) = problem(
        app.call(Method::POST, "/api/v1/keys", &admin, Some(json!({"name": "x", "role": "admin", "colour": "red"})))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"][0]["field"], "colour");
    let res = http()
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 400);
    let list: Value = app.call(Method::GET, "/api/v1/keys", &admin, None).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "only the admin key exists");
}

#[tokio::test]
async fn bad_credentials_are_401_problems() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let mut typo = admin.clone().into_bytes();
    typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = hookline_domain::api_key::ApiKey::generate();
    for key in ["", "sk_live_short", typo.as_str(), unknown.expose()] {
        let (status, p) = problem(app.call(Method::GET, "/api/v1/keys", key, None).await).await;
        assert_eq!(status, 401, "{key}");
        assert_eq!(p["type"], "https://hookline.dev/problems/unauthorized");
        assert!(!p.to_string().contains(key) || key.is_empty(), "the key is not echoed");
    }
    // X-API-Key works as well as Bearer.
    let res = http().get(app.url("/api/v1/keys")).header("X-API-Key", &admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn another_orgs_keys_are_404() {
    let app = TestApp::spawn().await;
    let (_, a) = app.create_org("A").await;
    let (_, b) = app.create_org("B").await;
    let b_key = app.create_key(&b, json!({"name": "b", "role": "read_only"})).await["id"].as_str().unwrap().to_owned();
    for (m, p, body) in [
        (Method::GET, format!("/api/v1/keys/{b_key}"), None),
        (Method::PATCH, format!("/api/v1/keys/{b_key}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/api/v1/keys/{b_key}"), None),
        (Method::POST, format!("/api/v1/keys/{b_key}/rotate"), Some(json!({}))),
        (Method::GET, format!("/api/v1/keys/{b_key}/usage"), None),
    ] {
        let (status, _) = problem(app.call(m.clone(), &p, &a, body).await).await;
        assert_eq!(status, 404, "{m} {p}");
    }
    let list: Value = app.call(Method::GET, "/api/v1/keys", &a, None).await.json().await.unwrap();
    assert!(!list.to_string().contains(&b_key));
    // B's key still works: nothing was revoked by A.
    assert_eq!(app.call(Method::GET, &format!("/api/v1/keys/{b_key}"), &b, None).await.status(), 200);
}

#[tokio::test]
async fn revocation_reaches_a_second_instance_within_a_second() {
    let app = TestApp::spawn().await;
    let (other, other_state) = app.second_instance(&[]).await;
    let (_, admin) = app.create_org("Acme").await;
    let v = app.create_key(&admin, json!({"name": "victim", "role": "read_only"})).await;
    let (id, key) = (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned());
    let c = http();
    // Warm the second instance's cache.
    eventually(Duration::from_secs(5), "second instance to subscribe", || async {
        other_state.auth.authenticator.cache_active().then_some(())
    })
    .await;
    assert_eq!(call(&c, &other, Method::GET, "/api/v1/keys", &key, None).await.status(), 200);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/keys/{id}"), &admin, None).await.status(), 204);
    let revoked_at = std::time::Instant::now();
    eventually(Duration::from_secs(1), "the revocation on the second instance", || async {
        (call(&c, &other, Method::GET, "/api/v1/keys", &key, None).await.status() == 401).then_some(())
    })
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    // Revoked keys stay listed.
    let list: Value = app.call(Method::GET, "/api/v1/keys?revoked=true", &admin, None).await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(list["data"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let v = app.create_key(&admin, json!({"name": "k", "role": "read_only"})).await;
    let (id, old) = (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned());
    // With a grace period both work.
    let r: Value = app
        .call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), &admin, Some(json!({"grace_period_seconds": 3600})))
        .await
        .json()
        .await
        .unwrap();
    let new = r["key"].as_str().unwrap().to_owned();
    assert_eq!(r["id"], id.as_str());
    assert_ne!(new, old);
    assert!(r["previous_secret_expires_at"].is_string());
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &old, None).await.status(), 200);
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &new, None).await.status(), 200);
    // Without one, the replaced secret stops at once.
    let r: Value =
        app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), &admin, None).await.json().await.unwrap();
    let newest = r["key"].as_str().unwrap().to_owned();
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &new, None).await.status(), 401);
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &old, None).await.status(), 401);
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &newest, None).await.status(), 200);
    let (status, p) = problem(
        app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), &admin, Some(json!({"grace_period_seconds": -1})))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"][0]["field"], "grace_period_seconds");
    let audit: Value =
        app.call(Method::GET, &format!("/api/v1/audit-log?target_id={id}"), &admin, None).await.json().await.unwrap();
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.rotated", "key.rotated", "key.created"]);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let expires = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let v = app.create_key(&admin, json!({"name": "short", "role": "read_only", "expires_at": expires})).await;
    let key = v["key"].as_str().unwrap().to_owned();
    assert_eq!(app.call(Method::GET, "/api/v1/keys", &key, None).await.status(), 200);
    let p = eventually(Duration::from_secs(6), "the key to expire", || async {
        let res = app.call(Method::GET, "/api/v1/keys", &key, None).await;
        (res.status() == 401).then_some(res)
    })
    .await;
    let (_, body) = problem(p).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn ip_allowlists_accept_ipv4_and_ipv6_cidrs() {
    let app = TestApp::spawn_with(&[("HOOKLINE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let (_, admin) = app.create_org("Acme").await;
    let v = app
        .create_key(&admin, json!({"name": "ips", "role": "read_only", "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"]}))
        .await;
    let key = v["key"].as_str().unwrap();
    let c = http();
    for (ip, expected) in
        [("10.1.2.3", 200), ("11.0.0.1", 403), ("2001:db8::7", 200), ("2001:dead::1", 403), ("::ffff:10.9.9.9", 200)]
    {
        let res = c.get(app.url("/api/v1/keys")).bearer_auth(key).header("X-Forwarded-For", ip).send().await.unwrap();
        assert_eq!(res.status().as_u16(), expected, "{ip}");
    }
    // Without the proxy header the socket address (127.0.0.1) counts.
    assert_eq!(c.get(app.url("/api/v1/keys")).bearer_auth(key).send().await.unwrap().status(), 403);
    let id = v["id"].as_str().unwrap();
    let patched = app
        .call(Method::PATCH, &format!("/api/v1/keys/{id}"), &admin, Some(json!({"allowed_ips": ["127.0.0.1"]})))
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(c.get(app.url("/api/v1/keys")).bearer_auth(key).send().await.unwrap().status(), 200);
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).unwrap_or_else(|| panic!("{name} missing")).to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_rate_limit_is_shared_by_two_instances_and_the_next_request_is_429() {
    let app = TestApp::spawn().await;
    let (other, other_state) = app.second_instance(&[]).await;
    let (_, admin) = app.create_org("Acme").await;
    let key = app.create_key(&admin, json!({"name": "limited", "role": "read_only", "rate_limit_per_hour": 6})).await
        ["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = http();
    for i in 0..6u64 {
        let server = if i % 2 == 0 { &app.server } else { &other };
        let res = call(&c, server, Method::GET, "/api/v1/keys", &key, None).await;
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(header(&res, "x-ratelimit-limit"), "6");
        assert_eq!(header(&res, "x-ratelimit-remaining"), (5 - i).to_string());
        let reset: u64 = header(&res, "x-ratelimit-reset").parse().unwrap();
        assert!(reset >= Utc::now().timestamp() as u64);
        assert_eq!(header(&res, "ratelimit-policy"), "\"key\";q=6;w=3600");
        assert!(header(&res, "ratelimit").starts_with(&format!("\"key\";r={};t=", 5 - i)));
    }
    let res = call(&c, &other, Method::GET, "/api/v1/keys", &key, None).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = header(&res, "retry-after").parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    let (_, p) = problem(res).await;
    assert_eq!(p["type"], "https://hookline.dev/problems/rate_limited");
    // Usage shows the requests and the 429.
    let id = app.call(Method::GET, "/api/v1/keys?role=read_only", &admin, None).await.json::<Value>().await.unwrap()
        ["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    other_state.auth.usage.flush(&other_state.pool).await.unwrap();
    let usage: Value =
        app.call(Method::GET, &format!("/api/v1/keys/{id}/usage"), &admin, None).await.json().await.unwrap();
    assert_eq!(usage["total_requests"], 7, "{usage}");
    assert_eq!(usage["total_rate_limited"], 1, "{usage}");
}

#[tokio::test]
async fn with_redis_down_the_api_keeps_serving_and_returns_to_redis() {
    let port = free_port();
    let mut redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("HOOKLINE_REDIS_URL", &url)]).await;
    let (_, admin) = app.create_org("Acme").await;
    let c = http();
    redis.kill().unwrap();
    redis.wait().unwrap();
    let res = app.call(Method::GET, "/api/v1/keys", &admin, None).await;
    assert_eq!(res.status(), 200, "served by the per-process limiter");
    assert!(res.headers().contains_key("x-ratelimit-remaining"));
    assert!(app.state.auth.limiter.is_degraded());
    let ready: Value = c.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["rate_limiter"]["mode"], "local");
    let _redis = start_redis(port);
    eventually(Duration::from_secs(15), "the limiter to return to Redis", || async {
        let res = app.call(Method::GET, "/api/v1/keys", &admin, None).await;
        assert_eq!(res.status(), 200);
        (!app.state.auth.limiter.is_degraded()).then_some(())
    })
    .await;
    let mut redis = _redis;
    let _ = redis.kill();
    let _ = redis.wait();
}

#[tokio::test]
async fn fail_closed_refuses_when_redis_is_down() {
    let port = free_port();
    let mut redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("HOOKLINE_REDIS_URL", &url), ("HOOKLINE_RATE_LIMIT_FAIL_CLOSED", "true")]).await;
    let (_, admin) = app.create_org("Acme").await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    let (status, _) = problem(app.call(Method::GET, "/api/v1/keys", &admin, None).await).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn lists_paginate_with_cursors() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    for i in 0..4 {
        app.create_key(&admin, json!({"name": format!("k{i}"), "role": "read_only"})).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/keys?limit=2&cursor={c}"),
            None => "/api/v1/keys?limit=2".into(),
        };
        let page: Value = app.call(Method::GET, &path, &admin, None).await.json().await.unwrap();
        for k in page["data"].as_array().unwrap() {
            seen.push(k["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["k3", "k2", "k1", "k0", "Admin key"]);
    let (status, p) = problem(app.call(Method::GET, "/api/v1/keys?limit=500", &admin, None).await).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("limit")));
    let (status, p) = problem(app.call(Method::GET, "/api/v1/keys?cursor=garbage", &admin, None).await).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("cursor")));
}

#[tokio::test]
async fn me_describes_the_calling_key() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let v = app
        .create_key(
            &admin,
            json!({"name": "ro", "role": "read_only", "scopes": ["keys:read"], "rate_limit_per_hour": 50}),
        )
        .await;
    let me: Value = app.call(Method::GET, "/api/v1/me", v["key"].as_str().unwrap(), None).await.json().await.unwrap();
    assert_eq!(
        me,
        json!({"key_id": v["id"], "org_id": org, "role": "read_only", "scopes": ["keys:read"], "rate_limit_per_hour": 50})
    );
}
