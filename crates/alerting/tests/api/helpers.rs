use std::time::Duration;

use hookline_broker::messages::{DeliveryOutcome, OutcomeKind, MESSAGE_VERSION};
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_test_support::receiver::TestReceiver;
use hookline_test_support::{eventually, http, serve, TestEnv, TestServer, OPERATOR_TOKEN};
use prost::Message;
use reqwest::{Client, Method};
use serde_json::{json, Value};

/// Every service in this process: control, ingest + relay, worker, alerting.
pub struct Stack {
    pub env: TestEnv,
    pub conns: Connections,
    pub control: TestServer,
    pub ingest: TestServer,
    pub key: String,
    pub client: Client,
}

impl Stack {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let env = TestEnv::new().await;
        let conns = env.connect(extra).await;
        let auth = AuthState::build(&conns);
        let control_state = hookline_control_api::ControlState::new(&conns, auth.clone());
        let control = serve(&conns.cancel, hookline_control_api::server_spec(&conns, control_state));
        let ingest_state = hookline_ingest_api::IngestState::new(&conns, auth);
        let ingest = serve(&conns.cancel, hookline_ingest_api::server_spec(&conns, ingest_state.clone()));
        hookline_ingest_api::relay::spawn(ingest_state);
        hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&conns)).unwrap();
        hookline_alerting::start(&conns).unwrap();
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
        Self { env, conns, control, ingest, key, client }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.control.url(path)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn settings(&self, body: Value) {
        let (status, v) = self.call(Method::PUT, "/api/v1/alert-settings", Some(body)).await;
        assert_eq!(status, 200, "{v}");
    }

    pub async fn endpoint(&self, r: &TestReceiver, body: Value) -> String {
        let mut b = json!({"url": r.url("/hook"), "events": ["*"]});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, v) = self.call(Method::POST, "/api/v1/webhooks", Some(b)).await;
        assert_eq!(status, 201, "{v}");
        r.set_secrets(&[v["secret"].as_str().unwrap()]);
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn send_lead(&self, id: &str) {
        let res = self
            .client
            .post(self.ingest.url("/api/v1/events/leads"))
            .bearer_auth(&self.key)
            .json(&json!({"id": id, "name": "Ada", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }

    pub async fn alerts(&self, query: &str) -> Vec<Value> {
        let (status, v) = self.call(Method::GET, &format!("/api/v1/alerts?{query}"), None).await;
        assert_eq!(status, 200, "{v}");
        v["data"].as_array().unwrap().clone()
    }

    /// Waits for an alert matching `query` whose `count` reaches `count`.
    pub async fn wait_alert(&self, query: &str, count: i64) -> Value {
        eventually(Duration::from_secs(30), &format!("an alert {query} with count {count}"), || async {
            self.alerts(query).await.into_iter().find(|a| a["count"].as_i64().unwrap_or(0) >= count)
        })
        .await
    }

    /// An outcome message for the endpoint's latest delivery, as a worker would publish it.
    pub async fn outcome(&self, webhook: &str, kind: OutcomeKind, attempt: u32) -> Vec<u8> {
        let (_, v) = self.call(Method::GET, &format!("/api/v1/webhooks/deliveries?webhook_id={webhook}"), None).await;
        let delivery_id = v["data"][0]["id"].as_str().expect("a delivery").to_owned();
        let row = {
            let mut conn = self.conns.pool.get().await.unwrap();
            let id = hookline_domain::id::DeliveryId::parse(&delivery_id).unwrap().as_uuid();
            hookline_store::deliveries::get(&mut conn, id).await.unwrap().unwrap()
        };
        let failed = kind != OutcomeKind::Delivered;
        DeliveryOutcome {
            version: MESSAGE_VERSION,
            delivery_id,
            org_id: hookline_domain::id::OrgId::from_uuid(row.org_id).to_string(),
            endpoint_id: webhook.to_owned(),
            event_type: "new_lead".into(),
            attempt,
            kind: kind as i32,
            status_code: if failed { 500 } else { 200 },
            error_class: if failed { "http_5xx".into() } else { String::new() },
            latency_ms: 1,
            occurred_at_ms: 0,
        }
        .encode_to_vec()
    }

    pub async fn wait_status(&self, webhook: &str, n: usize, status: &str) {
        eventually(Duration::from_secs(30), &format!("{n} deliveries {status}"), || async {
            let (_, v) = self
                .call(Method::GET, &format!("/api/v1/webhooks/deliveries?webhook_id={webhook}&status={status}"), None)
                .await;
            (v["data"].as_array().map(|a| a.len()).unwrap_or(0) >= n).then_some(())
        })
        .await
    }
}

/// Fast retries, so rules trigger within a test's time.
pub fn fast(max_retries: u32) -> Value {
    json!({"max_retries": max_retries, "retry_policy": {"initial_delay_ms": 100, "multiplier": 1.0, "max_delay_ms": 100}})
}
