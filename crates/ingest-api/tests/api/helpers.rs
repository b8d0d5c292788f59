use std::sync::Arc;

use hookline_ingest_api::IngestState;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_test_support::{http, serve, TestEnv, TestServer, OPERATOR_TOKEN};
use reqwest::{Client, Response};
use serde_json::{json, Value};

/// An ingest API and a control API sharing one environment.
pub struct TestApp {
    pub env: TestEnv,
    pub ingest: TestServer,
    pub control: TestServer,
    pub state: Arc<IngestState>,
    pub client: Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let env = TestEnv::new().await;
        let conns = env.connect(extra).await;
        let auth = AuthState::build(&conns);
        let (ingest, state) = start_ingest(&conns, auth.clone());
        let control_state = hookline_control_api::ControlState::new(&conns, auth);
        let control = serve(&conns.cancel, hookline_control_api::server_spec(&conns, control_state));
        Self { env, ingest, control, state, client: http() }
    }

    /// Another ingest instance on the same database, vhost and Redis prefix.
    pub async fn second_ingest(&self) -> (TestServer, Arc<IngestState>) {
        let c = self.env.connect(&[]).await;
        start_ingest(&c, AuthState::build(&c))
    }

    pub async fn org(&self, name: &str) -> String {
        let v: Value = self
            .client
            .post(self.control.url("/api/v1/orgs"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["api_key"]["key"].as_str().unwrap().to_owned()
    }

    pub async fn control_post(&self, key: &str, path: &str, body: Value) -> Value {
        let res = self.client.post(self.control.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    pub async fn endpoint(&self, key: &str, body: Value) -> String {
        self.control_post(key, "/api/v1/webhooks", body).await["id"].as_str().unwrap().to_owned()
    }

    pub async fn send(&self, key: &str, path: &str, body: &Value) -> Response {
        self.client.post(self.ingest.url(path)).bearer_auth(key).json(body).send().await.unwrap()
    }
}

pub fn lead(id: &str) -> Value {
    json!({"id": id, "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+441234567890", "source": "website"})
}

pub async fn problem(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    (status, res.json().await.unwrap())
}

pub fn start_ingest(c: &Connections, auth: Arc<AuthState>) -> (TestServer, Arc<IngestState>) {
    let state = IngestState::new(c, auth);
    (serve(&c.cancel, hookline_ingest_api::server_spec(c, state.clone())), state)
}
