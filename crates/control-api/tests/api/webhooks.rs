use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

fn hook(url: &str) -> Value {
    json!({"url": url, "events": ["new_lead", "lead_update"]})
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    t: String,
}

#[tokio::test]
async fn creating_an_endpoint_shows_its_secret_once_with_the_guides_defaults() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let body = json!({"url": "https://crm.example.com/hook", "description": "prod", "events": ["new_lead"], "headers": {"Authorization": "Bearer hunter2"}});
    let res = app.call(Method::POST, "/api/v1/webhooks", &admin, Some(body)).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("ep_"));
    let secret = v["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(v["max_retries"], 5);
    assert_eq!(v["timeout"], 30);
    assert_eq!(v["is_active"], true);
    assert_eq!(v["retry_policy"], json!({"initial_delay_ms": 1000, "multiplier": 2.0, "max_delay_ms": 3600000}));
    assert_eq!(v["headers"]["Authorization"], "********", "values are write-only");
    let id = v["id"].as_str().unwrap();
    let got: Value = app.call(Method::GET, &format!("/api/v1/webhooks/{id}"), &admin, None).await.json().await.unwrap();
    assert!(got.get("secret").is_none());
    // Neither the secret nor the header value is in the database in clear.
    let mut conn = AsyncPgConnection::establish(&app.env.database_url()).await.unwrap();
    let rows: Vec<Text> =
        diesel::sql_query("SELECT row_to_json(w)::text AS t FROM webhook_endpoints w").load(&mut conn).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].t.contains("whsec_") && !rows[0].t.contains(&secret[6..]) && !rows[0].t.contains("hunter2"),
        "{}",
        rows[0].t
    );
    let audit: Vec<Text> =
        diesel::sql_query("SELECT row_to_json(a)::text AS t FROM audit_log a").load(&mut conn).await.unwrap();
    assert!(audit.iter().all(|r| !r.t.contains("whsec_") && !r.t.contains("hunter2")));
}

#[tokio::test]
async fn every_invalid_field_is_named() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let cases = [
        (json!({"url": "ftp://x.example.com", "events": ["new_lead"]}), "url"),
        (json!({"url": "https://user:pw@x.example.com", "events": ["new_lead"]}), "url"),
        (json!({"url": "https://x.example.com", "events": []}), "events"),
        (json!({"url": "https://x.example.com", "events": ["no_such_type"]}), "events[0]"),
        (json!({"url": "https://x.example.com", "events": ["Bad Type"]}), "events[0]"),
        (json!({"url": "https://x.example.com", "events": ["*"], "max_retries": 21}), "max_retries"),
        (json!({"url": "https://x.example.com", "events": ["*"], "timeout": 0}), "timeout"),
        (json!({"url": "https://x.example.com", "events": ["*"], "timeout": 61}), "timeout"),
        (
            json!({"url": "https://x.example.com", "events": ["*"], "retry_policy": {"multiplier": 50.0}}),
            "retry_policy.multiplier",
        ),
        (
            json!({"url": "https://x.example.com", "events": ["*"], "retry_policy": {"initial_delay_ms": 1}}),
            "retry_policy.initial_delay_ms",
        ),
        (
            json!({"url": "https://x.example.com", "events": ["*"], "headers": {"X-Webhook-Signature": "forged"}}),
            "headers.X-Webhook-Signature",
        ),
        (
            json!({"url": "https://x.example.com", "events": ["*"], "headers": {"webhook-id": "x"}}),
            "headers.webhook-id",
        ),
        (json!({"url": "https://x.example.com", "events": ["*"], "rate_limit_per_second": 0}), "rate_limit_per_second"),
        (json!({"url": "https://x.example.com", "events": ["*"], "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let (status, p) = problem(app.call(Method::POST, "/api/v1/webhooks", &admin, Some(body.clone())).await).await;
        assert_eq!(status, 422, "{body}");
        let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{field} not in {fields:?} for {body}");
    }
    let list: Value = app.call(Method::GET, "/api/v1/webhooks", &admin, None).await.json().await.unwrap();
    assert!(list["data"].as_array().unwrap().is_empty(), "nothing was written");
}

/// A name on this machine that resolves to a loopback address.
async fn loopback_name() -> String {
    let mut candidates = vec!["vm".to_owned(), "runsc".to_owned()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        candidates.insert(0, h.trim().to_owned());
    }
    for c in candidates {
        let resolves_to_loopback = match tokio::net::lookup_host((c.as_str(), 80)).await {
            Ok(mut addrs) => addrs.any(|a| a.ip().is_loopback()),
            Err(_) => false,
        };
        if resolves_to_loopback && !c.is_empty() {
            return c;
        }
    }
    panic!("no host name here resolves to loopback");
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = TestApp::spawn_with(&[("HOOKLINE_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let (_, admin) = app.create_org("Acme").await;
    let name = loopback_name().await;
    for url in [
        "http://127.0.0.1:8080/hook".to_owned(),
        "http://[::1]/hook".into(),
        "http://10.0.0.8/hook".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://localhost/hook".into(),
        format!("http://{name}/hook"),
        // Other spellings of private addresses.
        "http://[fd00::1]/hook".into(),
        "http://[fe80::1]/hook".into(),
        "http://[::ffff:127.0.0.1]/hook".into(),
        "http://[::ffff:169.254.169.254]/hook".into(),
        "http://2130706433/hook".into(),
        "http://0177.0.0.1/hook".into(),
        "http://0x7f.0.0.1/hook".into(),
        "http://127.1/hook".into(),
        "http://0.0.0.0/hook".into(),
        "http://192.168.1.1/hook".into(),
        "http://100.64.0.1/hook".into(),
    ] {
        let (status, p) = problem(app.call(Method::POST, "/api/v1/webhooks", &admin, Some(hook(&url))).await).await;
        assert_eq!(status, 422, "{url}");
        assert_eq!(p["errors"][0]["field"], "url");
        assert!(p["errors"][0]["message"].as_str().unwrap().contains("private"), "{p}");
    }
    // The same URL is fine where the operator allows private targets.
    let open = TestApp::spawn().await;
    let (_, admin) = open.create_org("Dev").await;
    assert_eq!(
        open.call(Method::POST, "/api/v1/webhooks", &admin, Some(hook("http://127.0.0.1:8080/hook"))).await.status(),
        201
    );
}

#[tokio::test]
async fn put_patch_delete_and_rotate_with_an_audit_trail() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let v: Value = app
        .call(Method::POST, "/api/v1/webhooks", &admin, Some(hook("https://a.example.com/h")))
        .await
        .json()
        .await
        .unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{id}");
    let patched: Value = app
        .call(Method::PATCH, &path, &admin, Some(json!({"timeout": 10, "is_active": false})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["timeout"], 10);
    assert_eq!(patched["is_active"], false);
    assert_eq!(patched["url"], "https://a.example.com/h", "untouched fields stay");
    let replaced: Value = app
        .call(Method::PUT, &path, &admin, Some(json!({"url": "https://b.example.com/h", "events": ["*"]})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["url"], "https://b.example.com/h");
    assert_eq!(replaced["timeout"], 30, "PUT resets omitted fields to defaults");
    assert_eq!(replaced["is_active"], true);
    let rotated: Value =
        app.call(Method::POST, &format!("{path}/rotate-secret"), &admin, None).await.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != v["secret"].as_str().unwrap());
    assert!(rotated["previous_secret_expires_at"].is_string(), "24 h grace by default");
    let rotated: Value = app
        .call(Method::POST, &format!("{path}/rotate-secret"), &admin, Some(json!({"grace_period_seconds": 0})))
        .await
        .json()
        .await
        .unwrap();
    assert!(rotated["previous_secret_expires_at"].is_null());
    assert_eq!(app.call(Method::DELETE, &path, &admin, None).await.status(), 204);
    assert_eq!(problem(app.call(Method::GET, &path, &admin, None).await).await.0, 404);
    let audit: Value =
        app.call(Method::GET, &format!("/api/v1/audit-log?target_id={id}"), &admin, None).await.json().await.unwrap();
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "webhook.deleted",
            "webhook.secret_rotated",
            "webhook.secret_rotated",
            "webhook.replaced",
            "webhook.updated",
            "webhook.created"
        ]
    );
}

#[tokio::test]
async fn another_orgs_endpoints_are_404_and_roles_apply() {
    let app = TestApp::spawn().await;
    let (_, a) = app.create_org("A").await;
    let (_, b) = app.create_org("B").await;
    let v: Value = app
        .call(Method::POST, "/api/v1/webhooks", &b, Some(hook("https://b.example.com/h")))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/webhooks/{}", v["id"].as_str().unwrap());
    for (m, body) in [(Method::GET, None), (Method::PATCH, Some(json!({"timeout": 5}))), (Method::DELETE, None)] {
        assert_eq!(problem(app.call(m, &path, &a, body).await).await.0, 404);
    }
    let ro = app.create_key(&a, json!({"name": "ro", "role": "read_only"})).await["key"].as_str().unwrap().to_owned();
    let (status, p) =
        problem(app.call(Method::POST, "/api/v1/webhooks", &ro, Some(hook("https://a.example.com/h"))).await).await;
    assert_eq!((status, p["required_scope"].as_str()), (403, Some("webhooks:write")));
    assert_eq!(app.call(Method::GET, "/api/v1/webhooks", &ro, None).await.status(), 200);
}

#[tokio::test]
async fn custom_event_types_are_validated_and_can_be_subscribed_to() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let schema = json!({"type": "object", "required": ["id", "assignee"], "properties": {"id": {"type": "string"}, "assignee": {"type": "string"}}});
    let res = app
        .call(
            Method::POST,
            "/api/v1/event-types",
            &admin,
            Some(json!({"name": "lead.assigned", "description": "d", "schema": schema})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (status, p) = problem(
        app.call(Method::POST, "/api/v1/event-types", &admin, Some(json!({"name": "lead.assigned", "schema": {}})))
            .await,
    )
    .await;
    assert_eq!((status, p["type"].as_str()), (409, Some("https://hookline.dev/problems/event_type_exists")));
    let (status, _) = problem(
        app.call(Method::POST, "/api/v1/event-types", &admin, Some(json!({"name": "new_lead", "schema": {}}))).await,
    )
    .await;
    assert_eq!(status, 409);
    let (status, p) = problem(
        app.call(Method::POST, "/api/v1/event-types", &admin, Some(json!({"name": "x.y", "schema": {"type": 12}})))
            .await,
    )
    .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("schema")));
    let list: Value = app.call(Method::GET, "/api/v1/event-types", &admin, None).await.json().await.unwrap();
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "new_lead",
            "lead_update",
            "webhook.test",
            "alert.opened",
            "alert.resolved",
            "endpoint.disabled",
            "delivery.dead_lettered",
            "lead.assigned"
        ]
    );
    let res = app
        .call(
            Method::POST,
            "/api/v1/webhooks",
            &admin,
            Some(json!({"url": "https://a.example.com/h", "events": ["lead.assigned"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.call(Method::DELETE, "/api/v1/event-types/lead.assigned", &admin, None).await.status(), 204);
    assert_eq!(problem(app.call(Method::DELETE, "/api/v1/event-types/new_lead", &admin, None).await).await.0, 409);
}
