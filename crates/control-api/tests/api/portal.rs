//! Portal links over HTTP: what they open, for whom, and when they stop.
//! (The browser round trip in an iframe is in the CLI suite's admin UI tests.)

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::{http, OPERATOR_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, TestApp};

async fn webhook(app: &TestApp, key: &str, path: &str) -> String {
    let res = app
        .call(
            Method::POST,
            "/api/v1/webhooks",
            key,
            Some(json!({"url": format!("https://93.184.216.34{path}"), "events": ["*"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn portal(app: &TestApp, key: &str, body: Value) -> Value {
    let res = app.call(Method::POST, "/api/v1/portal-sessions", key, Some(body)).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

/// A portal path of the link `url` (absolute, as the API gives it).
fn at(url: &str, rest: &str) -> String {
    format!("{url}{rest}")
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn post_form(url: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    http().post(url).header("content-type", "application/x-www-form-urlencoded").body(form(pairs)).send().await.unwrap()
}

#[tokio::test]
async fn a_portal_link_is_validated_and_can_do_no_more_than_its_key() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let ep = webhook(&app, &admin, "/a").await;
    for (body, field) in [
        (json!({"mode": "admin"}), "mode"),
        (json!({"ttl_seconds": 10}), "ttl_seconds"),
        (json!({"ttl_seconds": 86_401}), "ttl_seconds"),
        (json!({"webhook_ids": []}), "webhook_ids"),
        (json!({"webhook_ids": ["nope"]}), "webhook_ids[0]"),
        (json!({"webhook_ids": [ep, "ep_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e"]}), "webhook_ids[1]"),
    ] {
        let (status, p) =
            problem(app.call(Method::POST, "/api/v1/portal-sessions", &admin, Some(body.clone())).await).await;
        assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some(field)), "{body}: {p}");
    }
    let ro = app.create_key(&admin, json!({"name": "ro", "role": "read_only"})).await;
    let ro = ro["key"].as_str().unwrap();
    let (status, _) =
        problem(app.call(Method::POST, "/api/v1/portal-sessions", ro, Some(json!({"mode": "manage"}))).await).await;
    assert_eq!(status, 403, "a read-only key cannot hand out a manage link");
    let view = portal(&app, ro, json!({"mode": "view", "ttl_seconds": 600})).await;
    assert_eq!(view["mode"], "view");
    assert!(view["id"].as_str().unwrap().starts_with("ps_"));
    let url = view["url"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/portal/pst_")), "{url}");
    let expires: chrono::DateTime<chrono::Utc> = view["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - chrono::Utc::now()).num_seconds() > 590);

    // Listed without the URL, which was shown once.
    let res = app.call(Method::GET, "/api/v1/portal-sessions", &admin, None).await;
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], view["id"]);
    assert!(list["data"][0].get("url").is_none(), "{list}");
    assert!(!list.to_string().contains("pst_"));
}

#[tokio::test]
async fn a_link_opens_only_its_org_and_endpoints_and_frames_only_where_allowed() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let (_, other_admin) = app.create_org("Globex").await;
    let (a, b) = (webhook(&app, &admin, "/a").await, webhook(&app, &admin, "/b").await);
    let theirs = webhook(&app, &other_admin, "/theirs").await;
    let res = http()
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"portal_origins": ["https://crm.example.com", "http://127.0.0.1:9999/"], "portal_accent_color": "#c82450",
            "portal_logo_url": "https://cdn.example.com/logo.png"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["portal_origins"], json!(["https://crm.example.com", "http://127.0.0.1:9999"]));
    let (status, p) = problem(
        http()
            .patch(app.url(&format!("/api/v1/orgs/{org}")))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"portal_origins": ["https://crm.example.com/app"], "portal_accent_color": "red"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["portal_origins[0]", "portal_accent_color"]);

    let link = portal(&app, &admin, json!({"webhook_ids": [a]})).await;
    let url = link["url"].as_str().unwrap();
    let res = http().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors https://crm.example.com http://127.0.0.1:9999;"), "{csp}");
    assert!(
        csp.contains("img-src 'self' data: https://cdn.example.com;") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(res.headers().get("x-frame-options").is_none());
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    let page = res.text().await.unwrap();
    assert!(page.contains("https://93.184.216.34/a") && !page.contains("https://93.184.216.34/b"), "only its endpoint");
    assert!(page.contains(r#"src="https://cdn.example.com/logo.png""#), "the org's logo");
    let theme = http().get(at(url, "/theme.css")).send().await.unwrap().text().await.unwrap();
    assert!(theme.contains("--accent: #c82450"), "{theme}");

    // Another endpoint of the org, and another org's, are not there.
    for id in [&b, &theirs, &"ep_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e".to_owned()] {
        let res = http().get(at(url, &format!("/endpoints/{id}"))).send().await.unwrap();
        assert_eq!(res.status(), 404, "{id}");
        let res = post_form(&at(url, &format!("/endpoints/{id}/disable")), &[]).await;
        assert_eq!(res.status(), 404, "{id}");
    }
    let res = http().get(at(url, "/endpoints/new")).send().await.unwrap();
    assert_eq!(res.status(), 403, "a link for some endpoints adds none");
    let all = portal(&app, &admin, json!({})).await;
    let res = http().get(at(all["url"].as_str().unwrap(), &format!("/endpoints/{theirs}"))).send().await.unwrap();
    assert_eq!(res.status(), 404, "another org's id");
    let them = app.call(Method::GET, &format!("/api/v1/webhooks/{theirs}"), &other_admin, None).await;
    assert_eq!(them.json::<Value>().await.unwrap()["is_active"], true);
}

#[tokio::test]
async fn a_view_link_changes_nothing_and_closed_links_open_nothing() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    let ep = webhook(&app, &admin, "/a").await;
    let view = portal(&app, &admin, json!({"mode": "view"})).await;
    let url = view["url"].as_str().unwrap();
    let page = http().get(at(url, &format!("/endpoints/{ep}"))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<form"), "a view link shows no forms");
    for action in ["disable", "rotate-secret", "test", "replay"] {
        let res = post_form(&at(url, &format!("/endpoints/{ep}/{action}")), &[]).await;
        assert_eq!(res.status(), 403, "{action}");
    }
    let res =
        post_form(&at(url, &format!("/endpoints/{ep}")), &[("url", "https://93.184.216.34/changed"), ("events", "*")])
            .await;
    assert_eq!(res.status(), 403);
    let res = post_form(&at(url, "/endpoints"), &[("url", "https://93.184.216.34/new"), ("events", "*")]).await;
    assert_eq!(res.status(), 403);
    let res = app.call(Method::GET, "/api/v1/webhooks", &admin, None).await;
    let hooks: Value = res.json().await.unwrap();
    assert_eq!(hooks["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        (hooks["data"][0]["url"].as_str(), hooks["data"][0]["is_active"].as_bool()),
        (Some("https://93.184.216.34/a"), Some(true))
    );

    // A manage link changes what it is for, then stops when revoked.
    let manage = portal(&app, &admin, json!({})).await;
    let murl = manage["url"].as_str().unwrap();
    let res = post_form(&at(murl, &format!("/endpoints/{ep}/disable")), &[]).await;
    assert_eq!(res.status(), 200, "redirected to the endpoint");
    assert!(res.text().await.unwrap().contains("The endpoint was disabled."));
    let res = app
        .call(Method::DELETE, &format!("/api/v1/portal-sessions/{}", manage["id"].as_str().unwrap()), &admin, None)
        .await;
    assert_eq!(res.status(), 204);
    for u in [murl.to_owned(), at(murl, &format!("/endpoints/{ep}"))] {
        let res = http().get(&u).send().await.unwrap();
        assert_eq!(res.status(), 401, "{u}");
        assert!(res.text().await.unwrap().contains("expired or was revoked"));
    }
    let res = post_form(&at(murl, &format!("/endpoints/{ep}/enable")), &[]).await;
    assert_eq!(res.status(), 401);
    let res = app
        .call(Method::DELETE, &format!("/api/v1/portal-sessions/{}", manage["id"].as_str().unwrap()), &admin, None)
        .await;
    assert_eq!(res.status(), 204, "revoking twice is harmless");

    // Expired.
    let mut conn = AsyncPgConnection::establish(&app.env.database_url()).await.unwrap();
    diesel::sql_query("UPDATE portal_sessions SET expires_at = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(http().get(url).send().await.unwrap().status(), 401);
    // A made-up token.
    assert_eq!(http().get(app.url("/portal/pst_madeup")).send().await.unwrap().status(), 401);
    let (_, other) = app.create_org("Globex").await;
    let res = app
        .call(Method::DELETE, &format!("/api/v1/portal-sessions/{}", view["id"].as_str().unwrap()), &other, None)
        .await;
    assert_eq!(res.status(), 404, "another org's link");
}
