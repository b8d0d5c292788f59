//! The Rust receiver example (crates/hookline/examples/receiver.rs) verifies real deliveries.

use std::process::{Command, Stdio};
use std::time::Duration;

use hookline_test_support::{create_org, eventually, http, serve, TestEnv};

use crate::Kill;
use serde_json::{json, Value};

/// `cargo test` builds examples next to the test binaries.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join("receiver");
    assert!(path.exists(), "{} was not built (cargo test builds examples)", path.display());
    path
}

#[tokio::test]
async fn the_rust_example_verifies_real_deliveries() {
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
    hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&conns)).unwrap();
    let c = http();
    let (_, key) = create_org(&server.addr, "Acme").await;
    let key = key.as_str();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ep: Value = c
        .post(server.url("/api/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/webhook"), "events": ["*"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _receiver = Kill(
        Command::new(example_binary())
            .env("WEBHOOK_SECRET", ep["secret"].as_str().unwrap())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/received");
    eventually(Duration::from_secs(20), "the example to listen", || async {
        c.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    for i in 0..3 {
        let res = c
            .post(server.url("/api/v1/events/leads"))
            .bearer_auth(key)
            .json(&json!({"id": format!("l{i}"), "name": "Ada", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let got: Value = eventually(Duration::from_secs(30), "3 verified deliveries", || async {
        let v: Value = c.get(&url).send().await.ok()?.json().await.ok()?;
        (v.as_array()?.len() >= 3).then_some(v)
    })
    .await;
    assert!(got.as_array().unwrap().iter().all(|d| d["event"] == "new_lead"));
    // A forged delivery is refused.
    let forged = c
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .header("X-Webhook-Signature", "00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    conns.cancel.cancel();
}
