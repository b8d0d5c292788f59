//! An attacker holding one organisation's key, or none: what the control
//! API refuses, and what it never lets a key do.

use chrono::{Duration, Utc};
use hookline_control_api::admin::live::STREAMS_PER_SESSION;
use hookline_test_support::{admin_session, http, OPERATOR_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

async fn key_count(app: &TestApp, admin: &str) -> usize {
    let v: Value = app.call(Method::GET, "/api/v1/keys?limit=200", admin, None).await.json().await.unwrap();
    v["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn nul_characters_and_times_postgres_cannot_hold_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let before = key_count(&app, &admin).await;
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (Method::POST, "/api/v1/keys", json!({"name": "a\u{0}b", "role": "read_only"}), "name"),
        (
            Method::POST,
            "/api/v1/keys",
            json!({"name": "ok", "role": "read_only", "allowed_ips": ["\u{0}"]}),
            "allowed_ips[0]",
        ),
        (
            Method::POST,
            "/api/v1/keys",
            json!({"name": "ok", "role": "read_only", "expires_at": "+10000-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            Method::POST,
            "/api/v1/webhooks",
            json!({"url": "https://93.184.216.34/h", "description": "\u{0}"}),
            "description",
        ),
        (
            Method::POST,
            "/api/v1/webhooks",
            json!({"url": "https://93.184.216.34/h", "events": ["*"], "headers": {"X-A": "\u{0}"}}),
            "headers.X-A",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, p) = problem(app.call(method.clone(), path, &admin, Some(body.clone())).await).await;
        assert_eq!(status, 422, "{method} {path} {body}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    assert_eq!(key_count(&app, &admin).await, before, "nothing was written");
    let listed: Value = app.call(Method::GET, "/api/v1/webhooks", &admin, None).await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);

    let key_id =
        app.create_key(&admin, json!({"name": "k", "role": "read_only"})).await["id"].as_str().unwrap().to_owned();
    for (query, field) in [
        (format!("/api/v1/keys/{key_id}/usage?until=-262143-01-01T00:00:00Z"), "until"),
        (format!("/api/v1/keys/{key_id}/usage?since=%2B262142-01-01T00:00:00Z"), "since"),
        ("/api/v1/webhooks/deliveries?event=a%00b".to_owned(), "event"),
        ("/api/v1/webhooks/deliveries?since=-0001-01-01T00:00:00Z".to_owned(), "since"),
    ] {
        let (status, p) = problem(app.call(Method::GET, &query, &admin, None).await).await;
        assert_eq!(status, 422, "{query}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
    }
    let (status, _) = problem(app.call(Method::GET, "/api/v1/keys/key_%00", &admin, None).await).await;
    assert_eq!(status, 404);
    // An escaped backslash before `u0000` is text, not NUL.
    let res = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"name": "a\\u0000b", "role": "read_only"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "a\\u0000b");
}

#[tokio::test]
async fn a_key_cannot_touch_a_key_with_more_scopes_than_its_own() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let keys = app
        .create_key(&admin, json!({"name": "keys only", "role": "admin", "scopes": ["keys:read", "keys:write"]}))
        .await;
    let keys = keys["key"].as_str().unwrap().to_owned();
    let listed: Value = app.call(Method::GET, "/api/v1/keys", &keys, None).await.json().await.unwrap();
    let admin_id =
        listed["data"].as_array().unwrap().iter().find(|k| k["role"] == "admin" && k["name"] != "keys only").unwrap()
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
    for (method, path, body) in [
        (Method::POST, format!("/api/v1/keys/{admin_id}/rotate"), Some(json!({}))),
        (Method::PATCH, format!("/api/v1/keys/{admin_id}"), Some(json!({"name": "mine now"}))),
        (Method::DELETE, format!("/api/v1/keys/{admin_id}"), None),
    ] {
        let res = app.call(method.clone(), &path, &keys, body).await;
        let (status, p) = problem(res).await;
        assert_eq!(status, 403, "{method} {path}: {p}");
        assert!(!p.to_string().contains("sk_live_"), "no secret leaks: {p}");
    }
    // The admin key is untouched and still works.
    assert_eq!(app.call(Method::GET, "/api/v1/audit-log", &admin, None).await.status(), 200);
    // Within its own scopes it may act.
    let peer = app.create_key(&admin, json!({"name": "peer", "role": "admin", "scopes": ["keys:read"]})).await;
    let res = app
        .call(Method::POST, &format!("/api/v1/keys/{}/rotate", peer["id"].as_str().unwrap()), &keys, Some(json!({})))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_created_or_edited_key_stays_within_the_callers_rate_expiry_and_addresses() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let until = (Utc::now() + Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let limited = app
        .create_key(
            &admin,
            json!({"name": "limited", "role": "admin", "rate_limit_per_hour": 100, "expires_at": until, "allowed_ips": ["127.0.0.0/8"]}),
        )
        .await;
    let limited = limited["key"].as_str().unwrap().to_owned();
    let later = (Utc::now() + Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for body in [
        json!({"name": "n", "role": "read_only", "rate_limit_per_hour": 101}),
        json!({"name": "n", "role": "read_only", "expires_at": later}),
        json!({"name": "n", "role": "read_only", "allowed_ips": ["10.0.0.0/8"]}),
        json!({"name": "n", "role": "read_only", "allowed_ips": []}),
    ] {
        let (status, p) = problem(app.call(Method::POST, "/api/v1/keys", &limited, Some(body.clone())).await).await;
        assert_eq!(status, 403, "{body}: {p}");
    }
    // Left unset, each limit is the caller's own.
    let child = app.create_key(&limited, json!({"name": "child", "role": "read_only"})).await;
    assert_eq!(child["rate_limit_per_hour"], 100);
    assert_eq!(child["expires_at"].as_str().unwrap()[..19], until[..19]);
    assert_eq!(child["allowed_ips"], json!(["127.0.0.0/8"]));
    let narrower = app
        .create_key(
            &limited,
            json!({"name": "c2", "role": "read_only", "allowed_ips": ["127.0.0.1"], "rate_limit_per_hour": 10}),
        )
        .await;
    let id = narrower["id"].as_str().unwrap();
    for body in
        [json!({"rate_limit_per_hour": 1000}), json!({"expires_at": null}), json!({"allowed_ips": ["0.0.0.0/0"]})]
    {
        let (status, p) =
            problem(app.call(Method::PATCH, &format!("/api/v1/keys/{id}"), &limited, Some(body.clone())).await).await;
        assert_eq!(status, 403, "{body}: {p}");
    }
    assert_eq!(
        app.call(Method::PATCH, &format!("/api/v1/keys/{id}"), &limited, Some(json!({"rate_limit_per_hour": 50})))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_operators_ceiling_caps_the_rate_limits_tenants_give_their_keys() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"max_key_rate_limit_per_hour": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["max_key_rate_limit_per_hour"], 50);
    let (status, p) = problem(
        app.call(
            Method::POST,
            "/api/v1/keys",
            &admin,
            Some(json!({"name": "n", "role": "read_only", "rate_limit_per_hour": 51})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"][0]["field"], "rate_limit_per_hour");
    let k = app.create_key(&admin, json!({"name": "n", "role": "read_only"})).await;
    assert_eq!(k["rate_limit_per_hour"], 50, "the default is capped too");
    let (status, _) = problem(
        app.call(
            Method::PATCH,
            &format!("/api/v1/keys/{}", k["id"].as_str().unwrap()),
            &admin,
            Some(json!({"rate_limit_per_hour": 500})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    // A tenant's key cannot lift its own ceiling.
    let (status, _) = problem(
        app.call(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}"),
            &admin,
            Some(json!({"max_key_rate_limit_per_hour": null})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn forwarding_headers_count_only_through_trusted_proxies() {
    // The test client connects from 127.0.0.1.
    let untrusted = TestApp::spawn().await;
    let trusted = TestApp::spawn_with(&[("HOOKLINE_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;
    for (app, forged_passes) in [(&untrusted, false), (&trusted, true)] {
        let (_, admin) = app.create_org("Acme").await;
        let key =
            app.create_key(&admin, json!({"name": "k", "role": "read_only", "allowed_ips": ["203.0.113.7"]})).await;
        let key = key["key"].as_str().unwrap();
        let c = http();
        let get =
            |xff: &'static str| c.get(app.url("/api/v1/keys")).bearer_auth(key).header("X-Forwarded-For", xff).send();
        // The right-most untrusted hop is the client: what the client wrote left of it is ignored.
        assert_eq!(get("203.0.113.7, 198.51.100.1").await.unwrap().status(), 403);
        assert_eq!(get("198.51.100.1, 203.0.113.7").await.unwrap().status().is_success(), forged_passes);
        assert_eq!(get("203.0.113.7, 10.1.2.3").await.unwrap().status().is_success(), forged_passes);
        let fwd = c
            .get(app.url("/api/v1/keys"))
            .bearer_auth(key)
            .header("Forwarded", "for=\"203.0.113.7:1234\"")
            .send()
            .await
            .unwrap();
        assert_eq!(fwd.status().is_success(), forged_passes);
        // Two headers that disagree: neither is believed.
        let both = c
            .get(app.url("/api/v1/keys"))
            .bearer_auth(key)
            .header("Forwarded", "for=203.0.113.7")
            .header("X-Forwarded-For", "198.51.100.9")
            .send()
            .await
            .unwrap();
        assert_eq!(both.status(), 403);
    }
}

#[tokio::test]
async fn custom_header_values_are_write_only_and_secret_answers_are_not_cached() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let res = app
        .call(
            Method::POST,
            "/api/v1/webhooks",
            &admin,
            Some(json!({"url": "https://93.184.216.34/h", "events": ["*"], "headers": {"X-Auth": "Bearer s3cret"}})),
        )
        .await;
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let status = res.status();
    let created: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains("s3cret"), "{created}");
    let id = created["id"].as_str().unwrap();
    let got: Value = app.call(Method::GET, &format!("/api/v1/webhooks/{id}"), &admin, None).await.json().await.unwrap();
    assert_eq!(got["headers"], json!({"X-Auth": "********"}));
    let listed = app.call(Method::GET, "/api/v1/webhooks", &admin, None).await.text().await.unwrap();
    assert!(!listed.contains("s3cret"));
    // Sending the view back keeps the stored value; a new value replaces it.
    let res = app
        .call(
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            &admin,
            Some(json!({"description": "d", "headers": got["headers"]})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let stored = stored_headers(&app, id).await;
    assert_eq!(stored, vec![("X-Auth".to_owned(), "Bearer s3cret".to_owned())]);
    let res = app
        .call(
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            &admin,
            Some(json!({"headers": {"X-Auth": "Bearer new"}})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(stored_headers(&app, id).await[0].1, "Bearer new");
    // Key creation and rotation answers carry a secret: never cached.
    let res = app.call(Method::POST, "/api/v1/keys", &admin, Some(json!({"name": "n", "role": "read_only"}))).await;
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let kid = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let res = app.call(Method::POST, &format!("/api/v1/keys/{kid}/rotate"), &admin, Some(json!({}))).await;
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let res = app.call(Method::POST, &format!("/api/v1/webhooks/{id}/rotate-secret"), &admin, Some(json!({}))).await;
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
}

async fn stored_headers(app: &TestApp, id: &str) -> Vec<(String, String)> {
    let kit = &app.state;
    let mut conn = kit.pool.get().await.unwrap();
    let ep = hookline_domain::id::EndpointId::parse(id).unwrap();
    let org: Vec<uuid::Uuid> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        hookline_store::schema::webhook_endpoints::table
            .filter(hookline_store::schema::webhook_endpoints::id.eq(ep.as_uuid()))
            .select(hookline_store::schema::webhook_endpoints::org_id)
            .load(&mut conn)
            .await
            .unwrap()
    };
    let row = hookline_store::endpoints::get(&mut conn, hookline_domain::id::OrgId::from_uuid(org[0]), ep)
        .await
        .unwrap()
        .unwrap();
    hookline_service_kit::secrets::open_headers(&kit.master_key, ep.as_uuid(), &row.headers).unwrap()
}

#[tokio::test]
async fn forged_keys_are_answered_from_memory_and_an_address_that_keeps_failing_is_refused() {
    let app = TestApp::spawn_with(&[("HOOKLINE_AUTH_FAILURES_PER_MINUTE", "30")]).await;
    let (_, admin) = app.create_org("Acme").await;
    let forged = format!("{}x{}", &admin[..admin.len() - 5], &admin[admin.len() - 4..]);
    let c = http();
    let mut statuses = Vec::new();
    for _ in 0..35 {
        statuses.push(c.get(app.url("/api/v1/keys")).bearer_auth(&forged).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.iter().take(20).all(|s| *s == 401), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    let res = c.get(app.url("/api/v1/keys")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 429, "the address is refused before any look-up, even with a good key");
    assert_eq!(res.headers().get("retry-after").unwrap(), "60");
}

/// A GET of `path` in the admin UI with the session cookie: its status.
async fn admin_get(app: &TestApp, session: &str, path: &str) -> u16 {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(path))
        .header("cookie", format!("hookline_session={session}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rotating_or_revoking_a_key_ends_its_admin_sessions() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let other = app.create_key(&admin, json!({"name": "ops", "role": "admin"})).await;
    let id = other["id"].as_str().unwrap();
    // A session of another key, which no change here touches.
    let bystander = admin_session(&app.server.addr, &admin).await.expect("signed in");

    let session = admin_session(&app.server.addr, other["key"].as_str().unwrap()).await.expect("signed in");
    assert_eq!(admin_get(&app, &session, "/admin").await, 200);
    let rotated = app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), &admin, Some(json!({}))).await;
    assert_eq!(rotated.status(), 200);
    let new_key = rotated.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    assert_eq!(admin_get(&app, &session, "/admin").await, 303, "the rotated key's session is over");

    let session = admin_session(&app.server.addr, &new_key).await.expect("the new secret signs in");
    assert_eq!(admin_get(&app, &session, "/admin").await, 200);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/keys/{id}"), &admin, None).await.status(), 204);
    assert_eq!(admin_get(&app, &session, "/admin").await, 303, "the revoked key's session is over");
    assert_eq!(admin_get(&app, &bystander, "/admin").await, 200, "other keys' sessions go on");
}

#[tokio::test]
async fn a_session_holds_a_bounded_number_of_live_streams() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let session = admin_session(&app.server.addr, &admin).await.expect("signed in");
    let open = |session: String| {
        let url = app.url("/admin/stream");
        async move { http().get(url).header("cookie", format!("hookline_session={session}")).send().await.unwrap() }
    };
    let mut streams = Vec::new();
    for _ in 0..STREAMS_PER_SESSION {
        let res = open(session.clone()).await;
        assert_eq!(res.status(), 200);
        streams.push(res);
    }
    let refused = open(session.clone()).await;
    assert_eq!(refused.status(), 429);
    let page = refused.text().await.unwrap();
    assert!(page.contains("live streams open"), "{page}");
    // Another session of the same organisation has its own.
    let second = admin_session(&app.server.addr, &admin).await.expect("signed in");
    assert_eq!(open(second).await.status(), 200);
}

#[tokio::test]
async fn made_up_http_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let method = Method::from_bytes(b"HOOKLINEPROBE").unwrap();
    let res = http().request(method, app.url("/api/v1/keys")).send().await.unwrap();
    assert!(res.status().is_client_error());
    let text = http().get(app.server.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("HOOKLINEPROBE"), "a made-up method became a label value");
    assert!(text.contains(r#"method="other""#), "it is counted as other");
}
