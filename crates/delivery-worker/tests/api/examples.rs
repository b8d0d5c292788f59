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

/// The customer's original documents, when this checkout sits beside them
/// (`HOOKLINE_SEEDS_DIR` says where otherwise).
fn seeds() -> Option<PathBuf> {
    let dir = std::env::var_os("HOOKLINE_SEEDS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds"));
    dir.is_dir().then_some(dir)
}

/// The fenced block of the seed document starting with `prefix` whose code mentions `needle`.
fn seed_block(dir: &std::path::Path, prefix: &str, fence: &str, needle: &str) -> String {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no seed {prefix}*"));
    let text = std::fs::read_to_string(file.path()).unwrap();
    text.split(&format!("```{fence}\n"))
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap().to_owned())
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no {fence} block with {needle} in seed {prefix}"))
}

#[tokio::test]
async fn the_seed_receivers_verify_sha256_prefixed_deliveries_as_written() {
    let Some(dir) = seeds() else {
        eprintln!("the seed documents are not beside this checkout; set HOOKLINE_SEEDS_DIR to run this test");
        return;
    };
    let node_modules = examples().join("node/node_modules");
    assert!(node_modules.join("express").exists(), "run `npm ci` in docs/examples/node (.ci/run does)");
    let scratch = std::env::temp_dir().join(format!("hookline-seeds-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    // Seed 003's Python check, as written, behind the smallest Flask route.
    let py = format!(
        "{}\n\nimport os\nfrom flask import Flask, request\napp = Flask(__name__)\n\
         @app.post('/webhook')\ndef hook():\n    ok = verify_signature(request.get_data(as_text=True), \
         request.headers.get('X-Webhook-Signature', ''), os.environ['WEBHOOK_SECRET_KEY'])\n    \
         return ('', 200 if ok else 401)\n\
         app.run(host='127.0.0.1', port=int(os.environ['PORT']))\n",
        seed_block(&dir, "003_", "python", "def verify_signature")
    );
    // Seed 004's Express endpoint, as written, given the app it assumes.
    let js = format!(
        "const express = require('express');\nconst app = express();\napp.use(express.json());\n{}\n\
         app.listen(Number(process.env.PORT), '127.0.0.1');\n",
        seed_block(&dir, "004_", "javascript", "verifyWebhookSignature")
    );
    std::fs::write(scratch.join("seed003.py"), py).unwrap();
    std::fs::write(scratch.join("seed004.js"), js).unwrap();

    let s = Stack::start().await;
    let mut receivers = Vec::new();
    let mut endpoints = Vec::new();
    for (program, script) in [("python3", "seed003.py"), ("node", "seed004.js")] {
        let port = free_port();
        let body = json!({"url": format!("http://127.0.0.1:{port}/webhook"), "events": ["new_lead"],
            "signature_format": "sha256_prefixed", "max_retries": 0});
        let (status, prefixed) = s.control(Method::POST, "/api/v1/webhooks", Some(body)).await;
        assert_eq!(status, 201);
        let secret = prefixed["secret"].as_str().unwrap();
        receivers.push(Receiver(
            Command::new(program)
                .arg(scratch.join(script))
                .env("WEBHOOK_SECRET_KEY", secret)
                .env("PORT", port.to_string())
                .env("NODE_PATH", &node_modules)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}")),
        ));
        let c = reqwest::Client::new();
        eventually(Duration::from_secs(20), &format!("the {script} receiver to listen"), || async {
            c.post(format!("http://127.0.0.1:{port}/webhook")).body("{}").send().await.ok().map(|_| ())
        })
        .await;
        endpoints.push(prefixed["id"].as_str().unwrap().to_owned());
    }
    s.send_lead("lead_seed").await;
    for ep in &endpoints {
        let d = s.wait_status(ep, 1, "delivered", Duration::from_secs(20)).await;
        assert_eq!(d[0]["attempts"], 1, "verified on the first attempt");
    }
    // The same receivers refuse the bare hex header: they really check.
    for ep in &endpoints {
        let (status, _) =
            s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"signature_format": "hex"}))).await;
        assert_eq!(status, 200);
    }
    s.send_lead("lead_seed_2").await;
    for ep in &endpoints {
        let d = s.wait_status(ep, 1, "dead_letter", Duration::from_secs(20)).await;
        // 401 from the Python check; the Node one throws on the longer header (500).
        let code = d[0]["last_status_code"].as_i64().unwrap();
        assert!(code == 401 || code == 500, "{code}");
    }
    drop(receivers);
    let _ = std::fs::remove_dir_all(&scratch);
}
