use std::sync::Arc;

use hookline_control_api::ControlState;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::deps::Connections;
use hookline_test_support::{http, serve, TestEnv, TestServer, OPERATOR_TOKEN};
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

pub struct TestApp {
    pub env: TestEnv,
    pub server: TestServer,
    pub state: Arc<ControlState>,
    pub client: Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let env = TestEnv::new().await;
        let (server, state) = start(env.connect(extra).await);
        Self { env, server, state, client: http() }
    }

    /// A second instance on the same database, vhost and Redis prefix.
    pub async fn second_instance(&self, extra: &[(&str, &str)]) -> (TestServer, Arc<ControlState>) {
        start(self.env.connect(extra).await)
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Creates an organisation through the operator route; returns (org id, admin key).
    pub async fn create_org(&self, name: &str) -> (String, String) {
        let res = self
            .client
            .post(self.url("/api/v1/orgs"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["api_key"]["key"].as_str().unwrap().to_owned())
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Response {
        call(&self.client, &self.server, method, path, key, body).await
    }

    /// Creates a key with `admin`; returns the answer.
    pub async fn create_key(&self, admin: &str, body: Value) -> Value {
        let res = self.call(Method::POST, "/api/v1/keys", admin, Some(body)).await;
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        res.json().await.unwrap()
    }
}

pub fn start(c: Connections) -> (TestServer, Arc<ControlState>) {
    let state = ControlState::new(&c, AuthState::build(&c));
    (serve(&c.cancel, hookline_control_api::server_spec(&c, state.clone())), state)
}

pub async fn call(
    client: &Client,
    server: &TestServer,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Response {
    let mut req = client.request(method, server.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

pub async fn problem(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert_eq!(
        res.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "errors are problem+json"
    );
    (status, res.json().await.unwrap())
}
