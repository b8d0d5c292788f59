use std::sync::Arc;
use std::time::Duration;

use hookline_delivery_worker::state::WorkerState;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_test_support::receiver::{Received, TestReceiver};
use hookline_test_support::{eventually, http, serve, TestEnv, TestServer, OPERATOR_TOKEN};
use reqwest::{Client, Method};
use serde_json::{json, Value};

/// Control API, ingest API, relay and worker, all in this process.
pub struct Stack {
    pub env: TestEnv,
    pub conns: Connections,
    /// The running worker's and ingest API's states.
    pub worker: Arc<WorkerState>,
    pub ingest_state: Arc<hookline_ingest_api::IngestState>,
    pub control: TestServer,
    pub ingest: TestServer,
    pub key: String,
    pub client: Client,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let env = TestEnv::new().await;
        let conns = env.connect(extra).await;
        let control = control_api(&conns);
        let auth = AuthState::build(&conns);
        let ingest_state = hookline_ingest_api::IngestState::new(&conns, auth);
        let ingest = serve(&conns.cancel, hookline_ingest_api::server_spec(&conns, ingest_state.clone()));
        hookline_ingest_api::relay::spawn(ingest_state.clone());
        let worker = WorkerState::new(&conns);
        hookline_delivery_worker::start(worker.clone()).unwrap();
        let client = http();
        let v: Value = client
            .post(control.url("/api/v1/orgs"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = v["api_key"]["key"].as_str().unwrap().to_owned();
        Self { env, conns, worker, ingest_state, control, ingest, key, client }
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.control.url(path)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Creates an endpoint pointing at `receiver` and teaches the receiver its secret.
    pub async fn endpoint(&self, receiver: &TestReceiver, path: &str, extra: Value) -> String {
        let mut body = json!({"url": receiver.url(path), "events": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = self.control(Method::POST, "/api/v1/webhooks", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        receiver.set_secrets(&[v["secret"].as_str().unwrap()]);
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn send_lead(&self, id: &str) -> String {
        let res = self
            .client
            .post(self.ingest.url("/api/v1/events/leads"))
            .bearer_auth(&self.key)
            .json(&json!({"id": id, "name": "Ada Lovelace", "email": "ada@example.com", "source": "website"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        res.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let (status, v) =
            self.control(Method::GET, &format!("/api/v1/webhooks/deliveries?limit=200&{query}"), None).await;
        assert_eq!(status, 200);
        v["data"].as_array().unwrap().clone()
    }

    /// Waits until the endpoint's deliveries all have `status`.
    pub async fn wait_status(&self, webhook: &str, n: usize, status: &str, within: Duration) -> Vec<Value> {
        eventually(within, &format!("{n} deliveries to be {status}"), || async {
            let d = self.deliveries(&format!("webhook_id={webhook}&status={status}")).await;
            (d.len() >= n).then_some(d)
        })
        .await
    }
}

pub async fn wait_received(r: &TestReceiver, n: usize, within: Duration) -> Vec<Received> {
    eventually(within, &format!("{n} requests at the receiver"), || async {
        let got = r.received();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// A control API on `c`, as its own process would run it.
pub fn control_api(c: &Connections) -> TestServer {
    let state = hookline_control_api::ControlState::new(c, AuthState::build(c));
    serve(&c.cancel, hookline_control_api::server_spec(c, state))
}
