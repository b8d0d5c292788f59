use hookline_test_support::{http, OPERATOR_TOKEN};
use serde_json::json;

use crate::helpers::{problem, TestApp};

#[tokio::test]
async fn the_operator_creates_an_org_with_a_working_admin_key() {
    let app = TestApp::spawn().await;
    let res = http()
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(v["name"], "Acme");
    assert_eq!(v["api_key"]["role"], "admin");
    let key = v["api_key"]["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_"));
    let me = http().get(app.url("/api/v1/keys")).bearer_auth(key).send().await.unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn org_creation_needs_the_operator_token() {
    let app = TestApp::spawn().await;
    let (_, admin_key) = app.create_org("Acme").await;
    for token in ["wrong-token-xxxxxxxxxxxx", admin_key.as_str()] {
        let res =
            http().post(app.url("/api/v1/orgs")).bearer_auth(token).json(&json!({"name": "X"})).send().await.unwrap();
        assert_eq!(problem(res).await.0, 401);
    }
    let res = http()
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(res).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "name");
}

#[tokio::test]
async fn org_creation_is_refused_when_no_operator_token_is_configured() {
    let app = TestApp::spawn_with(&[("HOOKLINE_OPERATOR_TOKEN", "")]).await;
    let res = http()
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(res).await;
    assert_eq!(status, 403);
    assert_eq!(body["type"], "https://hookline.dev/problems/operator_disabled");
}
