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

#[tokio::test]
async fn a_default_key_lifetime_bounds_keys_created_without_an_expiry() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let patch = |body: serde_json::Value| {
        http().patch(app.url(&format!("/api/v1/orgs/{org}"))).bearer_auth(OPERATOR_TOKEN).json(&body).send()
    };
    let (status, p) = problem(patch(json!({"default_key_lifetime_days": 0})).await.unwrap()).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("default_key_lifetime_days")), "{p}");
    let v: serde_json::Value = patch(json!({"default_key_lifetime_days": 30})).await.unwrap().json().await.unwrap();
    assert_eq!((v["default_key_lifetime_days"].as_i64(), v["strict_event_types"].as_bool()), (Some(30), Some(true)));

    let key = app.create_key(&admin, json!({"name": "ci", "role": "read_only"})).await;
    let expires: chrono::DateTime<chrono::Utc> = key["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.0).contains(&days), "{days}");
    // An explicit expiry is the caller's choice, even beyond the default.
    let later = (chrono::Utc::now() + chrono::Duration::days(90)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let key = app.create_key(&admin, json!({"name": "long", "role": "read_only", "expires_at": later})).await;
    assert_eq!(
        key["expires_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
        later.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    );

    let v: serde_json::Value = patch(json!({"default_key_lifetime_days": null})).await.unwrap().json().await.unwrap();
    assert_eq!(v["default_key_lifetime_days"], serde_json::Value::Null);
    let key = app.create_key(&admin, json!({"name": "forever", "role": "read_only"})).await;
    assert_eq!(key["expires_at"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_erasure_goes_through_a_long_history_in_batches() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let app = TestApp::spawn().await;
    let (org, admin) = app.create_org("Acme").await;
    let org_uuid = org.trim_start_matches("org_");
    let mut conn = AsyncPgConnection::establish(&app.env.database_url()).await.unwrap();
    // 3,500 events, one lead's spread through them: more than three batches.
    diesel::sql_query(format!(
        "INSERT INTO events (id, org_id, event_type, data, occurred_at) \
         SELECT gen_random_uuid(), '{}'::uuid, 'new_lead', \
           jsonb_build_object('id', CASE WHEN i % 1000 = 7 THEN 'lead_x' ELSE 'lead_' || i END, 'email', 'p' || i || '@example.com'), now() \
         FROM generate_series(1, 3500) i",
        uuid::Uuid::parse_str(org_uuid).unwrap()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let res = app
        .call(reqwest::Method::POST, "/api/v1/erasures", &admin, Some(json!({"path": "/id", "value": "lead_x"})))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({"events": 4, "attempts": 0, "dead_letters": 0}));
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: N = diesel::sql_query("SELECT count(*) AS n FROM events WHERE data::text LIKE '%lead_x%'")
        .get_result(&mut conn)
        .await
        .unwrap();
    let kept: N = diesel::sql_query("SELECT count(*) AS n FROM events WHERE data <> '{}'::jsonb")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((left.n, kept.n), (0, 3496));
    // A key without events:write may not erase.
    let ro = app.create_key(&admin, json!({"name": "ro", "role": "read_only"})).await;
    let res = app
        .call(
            reqwest::Method::POST,
            "/api/v1/erasures",
            ro["key"].as_str().unwrap(),
            Some(json!({"path": "/id", "value": "lead_1"})),
        )
        .await;
    assert_eq!(problem(res).await.0, 403);
}
