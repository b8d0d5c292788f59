//! Worker processes killed and stopped mid-work.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{create_org, eventually, http, serve, TestEnv};
use serde_json::{json, Value};

use crate::hookline;

struct Stack {
    env: TestEnv,
    url: String,
    key: String,
}

async fn stack() -> Stack {
    let env = TestEnv::new().await;
    let kit = env.kit(&[]).await;
    let server = serve(kit.clone(), hookline::all_in_one_spec(&kit));
    hookline_ingest_api::relay::spawn(kit.clone());
    let (_, key) = create_org(&server.addr, "Acme").await;
    Stack { url: server.addr.clone(), key, env }
}

impl Stack {
    fn worker(&self) -> Child {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        hookline(
            &self.env,
            &[("HOOKLINE_LISTEN", &format!("127.0.0.1:{port}")), ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true")],
        )
        .args(["run", "worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    }

    async fn endpoint(&self, r: &TestReceiver) -> String {
        let v: Value = http()
            .post(format!("{}/api/v1/webhooks", self.url))
            .bearer_auth(&self.key)
            .json(&json!({"url": r.url("/hook"), "events": ["*"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r.set_secrets(&[v["secret"].as_str().unwrap()]);
        v["id"].as_str().unwrap().to_owned()
    }

    async fn send(&self, n: usize) {
        let c = http();
        for i in 0..n {
            let res = c
                .post(format!("{}/api/v1/events/leads", self.url))
                .bearer_auth(&self.key)
                .json(&json!({"id": format!("l{i}"), "name": "Ada", "email": "ada@example.com"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
        }
    }

    async fn statuses(&self, webhook: &str) -> Vec<String> {
        let v: Value = http()
            .get(format!("{}/api/v1/webhooks/deliveries?limit=200&webhook_id={webhook}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_owned()).collect()
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

#[tokio::test]
async fn a_worker_sigkilled_during_a_burst_loses_no_delivery() {
    let s = stack().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Slow(Duration::from_millis(100)));
    let ep = s.endpoint(&r).await;
    let mut worker = s.worker();
    s.send(60).await;
    for round in 1..=3 {
        eventually(Duration::from_secs(30), "the worker to make progress", || async {
            (r.count() >= round * 12).then_some(())
        })
        .await;
        signal(&worker, "-KILL");
        let _ = worker.wait();
        worker = s.worker();
    }
    let got = eventually(Duration::from_secs(60), "every delivery to arrive", || async {
        let ids: BTreeSet<String> =
            r.received().iter().map(|x| x.header("x-webhook-delivery-id").unwrap().to_owned()).collect();
        (ids.len() == 60).then_some(ids)
    })
    .await;
    assert_eq!(got.len(), 60);
    eventually(Duration::from_secs(30), "every delivery to be recorded delivered", || async {
        let st = s.statuses(&ep).await;
        (st.len() == 60 && st.iter().all(|x| x == "delivered")).then_some(())
    })
    .await;
    let duplicates = r.count() - 60;
    eprintln!("duplicate receipts after 3 SIGKILLs: {duplicates}");
    signal(&worker, "-KILL");
    let _ = worker.wait();
}

#[tokio::test]
async fn sigterm_lets_in_flight_deliveries_finish_then_exits_zero() {
    let s = stack().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Slow(Duration::from_secs(2)));
    let ep = s.endpoint(&r).await;
    let mut worker = s.worker();
    s.send(3).await;
    eventually(Duration::from_secs(30), "three requests in flight", || async { (r.count() == 3).then_some(()) }).await;
    signal(&worker, "-TERM");
    let status = tokio::task::spawn_blocking(move || worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    // The three in-flight deliveries finished and were recorded before the exit.
    let st = s.statuses(&ep).await;
    assert_eq!(st, ["delivered", "delivered", "delivered"]);
    assert_eq!(r.count(), 3);
}
