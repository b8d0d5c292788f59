use hookline_test_support::http;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_ready_metrics_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let c = http();
    let h = c.get(app.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = c.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    for dep in ["postgres", "rabbitmq", "redis"] {
        assert_eq!(v["checks"][dep]["status"], "up", "{dep}: {v}");
    }
    let m = c.get(app.server.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("http_requests_total"), "{m}");
    // Metrics stay off the public listener (and so off the gateway).
    assert_eq!(c.get(app.url("/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(app.server.ops_url("/health")).send().await.unwrap().status(), 200);
    for path in ["/docs/", "/redoc", "/redoc/redoc.standalone.js", "/openapi.json", "/"] {
        assert_eq!(c.get(app.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    let spec: serde_json::Value = c.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec["paths"]["/api/v1/keys"]["post"].is_object());
}

#[tokio::test]
async fn unknown_routes_are_problems() {
    let app = TestApp::spawn().await;
    let res = http().get(app.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn without_redis_the_api_stays_ready_and_names_it_degraded() {
    // A private Redis that this test stops, so the machine's stays up.
    let port = free_port();
    let mut redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("HOOKLINE_REDIS_URL", &url)]).await;
    let c = http();
    assert_eq!(c.get(app.url("/ready")).send().await.unwrap().status(), 200);
    redis.kill().unwrap();
    redis.wait().unwrap();
    // Rate limits fall back to this process and caches are bypassed: the
    // control API still does its job, and says what it lacks.
    let res = c.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["redis"]["status"], "down", "{v}");
    assert_eq!(v["checks"]["postgres"]["status"], "up");
    assert_eq!(v["degraded"], serde_json::json!(["redis"]), "{v}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn start_redis(port: u16) -> std::process::Child {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

#[tokio::test]
async fn api_routes_answer_the_same_with_a_trailing_slash() {
    use reqwest::Method;
    let app = TestApp::spawn().await;
    let (_, admin) = app.create_org("Acme").await;
    app.create_key(&admin, serde_json::json!({"name": "a", "role": "read_only"})).await;
    let res = app.call(Method::GET, "/api/v1/keys/?limit=1", &admin, None).await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "the query survives: {v}");
    assert!(v["next_cursor"].is_string(), "{v}");
    let res = app
        .call(
            Method::POST,
            "/api/v1/webhooks/",
            &admin,
            Some(serde_json::json!({"url": "https://93.184.216.34/h", "events": ["new_lead"]})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app.call(Method::GET, "/api/v1/webhooks/deliveries/", &admin, None).await;
    assert_eq!(res.status(), 200);
    // Outside the API nothing changes: the documentation keeps its own paths.
    assert_eq!(http().get(app.url("/docs/")).send().await.unwrap().status(), 200);
}
