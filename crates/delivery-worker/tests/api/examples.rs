//! The receiver examples in docs/examples verify real deliveries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookline_test_support::eventually;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::Stack;

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn verify_with(program: &str, script: PathBuf) {
    let s = Stack::start().await;
    let port = free_port();
    let (status, ep) = s
        .control(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": format!("http://127.0.0.1:{port}/webhook"), "events": ["*"]})),
        )
        .await;
    assert_eq!(status, 201);
    let secret = ep["secret"].as_str().unwrap();
    let _child = Receiver(
        Command::new(program)
            .arg(&script)
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}")),
    );
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/received");
    eventually(Duration::from_secs(20), "the example receiver to listen", || async {
        c.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    for i in 0..3 {
        s.send_lead(&format!("l{i}")).await;
    }
    // Rotation: during the grace period the example verifies with its old secret.
    let (status, _) =
        s.control(Method::POST, &format!("/api/v1/webhooks/{}/rotate-secret", ep["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    let got: Value = eventually(Duration::from_secs(30), "3 verified deliveries", || async {
        let v: Value = c.get(&url).send().await.ok()?.json().await.ok()?;
        (v.as_array()?.len() >= 3).then_some(v)
    })
    .await;
    assert!(got.as_array().unwrap().iter().all(|d| d["event"] == "new_lead"));
    let delivered = s.wait_status(ep["id"].as_str().unwrap(), 3, "delivered", Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 3, "the example answered 2xx only after verifying");
}

#[tokio::test]
async fn the_flask_example_verifies_real_deliveries() {
    verify_with("python3", examples().join("python/receiver.py")).await;
}

#[tokio::test]
async fn the_express_example_verifies_real_deliveries() {
    let dir = examples().join("node");
    assert!(dir.join("node_modules/express").exists(), "run `npm ci` in docs/examples/node (.ci/run does)");
    verify_with("node", dir.join("receiver.js")).await;
}
