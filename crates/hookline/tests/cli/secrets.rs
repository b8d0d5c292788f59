//! No secret in clear: after a run that creates, uses and rotates every kind
//! of secret, neither a full dump of the database nor any log line of the
//! service contains one.

use std::process::Stdio;
use std::time::Duration;

use hookline_test_support::receiver::TestReceiver;
use hookline_test_support::{create_org, eventually, http, TestEnv, OPERATOR_TOKEN};
use serde_json::{json, Value};

use crate::hookline;

async fn call(base: &str, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = http().request(method, format!("{base}{path}")).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn no_key_or_webhook_secret_reaches_the_database_or_the_logs_in_clear() {
    let env = TestEnv::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("hookline-secrets-{}.log", env.id));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = hookline(
        &env,
        &[
            ("HOOKLINE_LISTEN", &listen),
            ("HOOKLINE_OPERATOR_TOKEN", OPERATOR_TOKEN),
            ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true"),
            ("RUST_LOG", "debug,h2=info,hyper=info,lapin=info,tokio_postgres=info,rustls=info"),
        ],
    )
    .args(["run", "all"])
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap();
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(30), "run all to answer /health", || async {
        http().get(format!("{base}/health")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;

    let mut secrets: Vec<String> = vec![OPERATOR_TOKEN.into(), env.master_key.clone()];
    let (_, admin) = create_org(&base, "Acme").await;
    secrets.push(admin.clone());
    let key =
        call(&base, &admin, reqwest::Method::POST, "/api/v1/keys", Some(json!({"name": "crm", "role": "read_write"})))
            .await;
    let writer = key["key"].as_str().unwrap().to_owned();
    secrets.push(writer.clone());
    let rotated = call(
        &base,
        &admin,
        reqwest::Method::POST,
        &format!("/api/v1/keys/{}/rotate", key["id"].as_str().unwrap()),
        Some(json!({"grace_period_seconds": 3600})),
    )
    .await;
    let writer2 = rotated["key"].as_str().unwrap().to_owned();
    secrets.push(writer2.clone());

    let r = TestReceiver::start().await;
    let header_value = "Bearer header-secret-9f8e7d6c5b4a";
    secrets.push(header_value.into());
    let hook = call(
        &base,
        &admin,
        reqwest::Method::POST,
        "/api/v1/webhooks",
        Some(json!({"url": r.url("/hook"), "events": ["*"], "headers": {"Authorization": header_value}})),
    )
    .await;
    secrets.push(hook["secret"].as_str().unwrap().to_owned());
    let again = call(
        &base,
        &admin,
        reqwest::Method::POST,
        &format!("/api/v1/webhooks/{}/rotate-secret", hook["id"].as_str().unwrap()),
        Some(json!({"grace_period_seconds": 3600})),
    )
    .await;
    secrets.push(again["secret"].as_str().unwrap().to_owned());

    // Use the keys (old and new secret) so they pass through every layer, and deliver.
    for k in [&writer, &writer2] {
        call(
            &base,
            k,
            reqwest::Method::POST,
            "/api/v1/events/leads",
            Some(json!({"id": "l1", "name": "Ada", "email": "ada@example.com"})),
        )
        .await;
    }
    let refused = http().get(format!("{base}/api/v1/me")).bearer_auth(format!("{admin}x")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    eventually(Duration::from_secs(30), "both deliveries to arrive", || async { (r.count() >= 2).then_some(()) }).await;
    assert!(r.received().iter().all(|x| x.header("authorization") == Some(header_value)));

    // An admin UI session too.
    let session = hookline_test_support::admin_session(&base, &admin).await.expect("signed in");
    secrets.push(session);

    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());

    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", &env.database_url()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("webhook_endpoints") && dump.contains("api_keys"), "the dump has the tables");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.lines().count() > 10, "the service logged: {logs}");
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "a secret ({}…) is in the database dump", &s[..8]);
        for line in logs.lines() {
            assert!(!line.contains(s.as_str()), "a secret ({}…) is in a log line: {line}", &s[..8]);
        }
    }
    let _ = std::fs::remove_file(&log_path);
}
