//! Hookline's test harness.
//!
//! [`TestEnv::new`] gives a test its own world on the machine's real
//! services: a fresh Postgres database (cloned from a migrated template, so
//! migrations run once per migration set, not once per test), a fresh
//! RabbitMQ vhost (through the management API), and a Redis key prefix. All
//! three are removed when the `TestEnv` drops. Tests therefore run in
//! parallel and never see each other.
//!
//! [`receiver::TestReceiver`] is a real HTTP server on port 0 that records
//! what it receives and can be told to fail, hang, or answer slowly.

pub mod browser;
pub mod proxy;
pub mod rabbit_cluster;
pub mod receiver;
pub mod smtp;
pub mod tls_sink;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hookline_service_kit::config::Settings;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::server::ServerSpec;
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

pub fn postgres_server() -> String {
    env_or("HOOKLINE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")
}
pub fn amqp_server() -> String {
    env_or("HOOKLINE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
}
pub fn rabbitmq_api() -> String {
    env_or("HOOKLINE_TEST_RABBITMQ_API", "http://127.0.0.1:15672")
}
pub fn redis_server() -> String {
    env_or("HOOKLINE_TEST_REDIS", "redis://127.0.0.1:6379")
}

/// Installs the rustls crypto provider and a test log subscriber, once.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ))
            .with_test_writer()
            .try_init();
    }
}

/// One test's private database, vhost and Redis prefix.
pub struct TestEnv {
    pub id: String,
    pub database: String,
    pub vhost: String,
    pub redis_prefix: String,
    pub master_key: String,
    cleaned: bool,
}

impl TestEnv {
    pub async fn new() -> Self {
        init();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = format!("hltest_{id}");
        let vhost = format!("hltest-{id}");
        let template =
            ensure_template().await.expect("migrated template database (is Postgres running on 127.0.0.1:5432?)");
        let admin = format!("{}/postgres", postgres_server());
        let mut attempt = 0;
        loop {
            match hookline_store::db::create_database_from_template(&admin, &database, &template).await {
                Ok(()) => break,
                Err(e) if attempt < 20 => {
                    // Another test may be cloning the template at this instant.
                    attempt += 1;
                    tracing::debug!(error = %e, "template busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50 + 25 * attempt)).await;
                }
                Err(e) => panic!("creating test database: {e:#}"),
            }
        }
        create_vhost(&vhost).await.expect("RabbitMQ vhost (is the management plugin enabled on :15672?)");
        Self {
            redis_prefix: format!("hltest:{id}:"),
            master_key: hookline_domain::crypto::MasterKey::generate_base64(),
            id,
            database,
            vhost,
            cleaned: false,
        }
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", postgres_server(), self.database)
    }

    pub fn amqp_url(&self) -> String {
        format!("{}/{}", amqp_server(), self.vhost)
    }

    /// Settings for a service in this environment; `extra` overrides any variable.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("HOOKLINE_DATABASE_URL".into(), self.database_url());
        env.insert("HOOKLINE_DATABASE_POOL_SIZE".into(), "8".into());
        env.insert("HOOKLINE_AMQP_URL".into(), self.amqp_url());
        env.insert("HOOKLINE_REDIS_URL".into(), redis_server());
        env.insert("HOOKLINE_REDIS_PREFIX".into(), self.redis_prefix.clone());
        env.insert("HOOKLINE_MASTER_KEY".into(), self.master_key.clone());
        env.insert("HOOKLINE_OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into());
        env.insert("HOOKLINE_ALLOW_PRIVATE_TARGETS".into(), "true".into());
        // Tests poll the API; rate limits are tested with explicit per-key limits.
        env.insert("HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR".into(), "1000000".into());
        // Tests knock with many bad keys from one address on purpose.
        env.insert("HOOKLINE_AUTH_FAILURES_PER_MINUTE".into(), "100000".into());
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Settings::from_sources(None, &env).expect("test settings")
    }

    /// Connections to this environment's database, vhost and Redis prefix,
    /// with their own cancellation token.
    pub async fn connect(&self, extra: &[(&str, &str)]) -> Connections {
        Connections::open(self.settings(extra), "test", CancellationToken::new()).await.expect("connections open")
    }

    /// Removes the database, vhost and Redis keys now (also done on drop).
    pub async fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let admin = format!("{}/postgres", postgres_server());
        let _ = hookline_store::db::drop_database(&admin, &self.database).await;
        let _ = delete_vhost(&self.vhost).await;
        let _ = delete_redis_prefix(&self.redis_prefix).await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let mut me = TestEnv {
            id: self.id.clone(),
            database: self.database.clone(),
            vhost: self.vhost.clone(),
            redis_prefix: self.redis_prefix.clone(),
            master_key: String::new(),
            cleaned: false,
        };
        self.cleaned = true;
        // Drop cannot await; clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(me.cleanup());
            }
        })
        .join();
    }
}

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";

/// A migrated template database named after the migrations it holds, created
/// once (under an advisory lock, since test processes run in parallel).
async fn ensure_template() -> anyhow::Result<String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    // Only the migrations this binary holds: a directory added since it was
    // built must not name a template that lacks it.
    let embedded = hookline_store::db::embedded_migration_names();
    let mut entries: Vec<_> = walk(&dir)?
        .into_iter()
        .filter(|p| {
            let dir = p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
            dir.is_some_and(|d| embedded.iter().any(|e| d.replace('-', "") == e.replace('-', "")))
        })
        .collect();
    entries.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in &entries {
        ctx.update(p.to_string_lossy().as_bytes());
        ctx.update(&std::fs::read(p)?);
    }
    let name = format!("hltpl_{}", &hex::encode(ctx.finish().as_ref())[..16]);
    let admin = format!("{}/postgres", postgres_server());
    let mut conn = AsyncPgConnection::establish(&admin).await.context("connecting to Postgres")?;
    diesel::sql_query("SELECT pg_advisory_lock(7243002)").execute(&mut conn).await?;
    let result = async {
        #[derive(diesel::QueryableByName)]
        struct Found {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            found: bool,
        }
        let f: Found = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await?;
        if !f.found {
            let building = format!("{name}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}")).execute(&mut conn).await?;
            diesel::sql_query(format!("CREATE DATABASE {building}")).execute(&mut conn).await?;
            hookline_store::db::run_migrations(&format!("{}/{building}", postgres_server())).await?;
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}")).execute(&mut conn).await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    diesel::sql_query("SELECT pg_advisory_unlock(7243002)").execute(&mut conn).await?;
    result?;
    Ok(name)
}

fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

fn mgmt_client() -> reqwest::Client {
    init();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

async fn create_vhost(vhost: &str) -> anyhow::Result<()> {
    let c = mgmt_client();
    let base = rabbitmq_api();
    c.put(format!("{base}/api/vhosts/{vhost}")).basic_auth("guest", Some("guest")).send().await?.error_for_status()?;
    c.put(format!("{base}/api/permissions/{vhost}/guest"))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn delete_vhost(vhost: &str) -> anyhow::Result<()> {
    mgmt_client()
        .delete(format!("{}/api/vhosts/{vhost}", rabbitmq_api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await?;
    Ok(())
}

async fn delete_redis_prefix(prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_server())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Messages ready in a queue of the test's vhost, exactly (a passive declare).
pub async fn queue_depth(vhost: &str, queue: &str) -> anyhow::Result<u64> {
    use lapin::options::QueueDeclareOptions;
    let conn = hookline_broker::publisher::connect(&format!("{}/{vhost}", amqp_server()), "hookline-test").await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, Default::default())
        .await?;
    let n = q.message_count();
    let _ = conn.close(200, "done".into()).await;
    Ok(u64::from(n))
}

/// Takes every message off a queue of the test's vhost, acknowledging
/// each, and hands `read` its type and body, in queue order.
async fn drain(
    vhost: &str,
    queue: &str,
    mut read: impl FnMut(Option<&str>, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let conn = hookline_broker::publisher::connect(&format!("{}/{vhost}", amqp_server()), "hookline-test").await?;
    let ch = conn.create_channel().await?;
    while let Some(m) = ch.basic_get(queue.into(), BasicGetOptions::default()).await? {
        read(m.delivery.properties.kind().as_ref().map(|k| k.as_str()), &m.delivery.data)?;
        m.delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Takes every message off a queue and returns the delivery tasks they
/// carried, batches unpacked, in queue order.
pub async fn drain_tasks(vhost: &str, queue: &str) -> anyhow::Result<Vec<hookline_broker::messages::DeliveryTask>> {
    let mut tasks = Vec::new();
    drain(vhost, queue, |kind, body| {
        tasks.extend(hookline_broker::messages::tasks_of(kind, body)?);
        Ok(())
    })
    .await?;
    Ok(tasks)
}

/// Takes every message off a queue and returns the delivery outcomes they
/// carried, batches unpacked, in queue order.
pub async fn drain_outcomes(
    vhost: &str,
    queue: &str,
) -> anyhow::Result<Vec<hookline_broker::messages::DeliveryOutcome>> {
    let mut outcomes = Vec::new();
    drain(vhost, queue, |kind, body| {
        outcomes.extend(hookline_broker::messages::outcomes_of(kind, body)?);
        Ok(())
    })
    .await?;
    Ok(outcomes)
}

/// Closes every broker connection of a vhost (fault injection).
pub async fn close_vhost_connections(vhost: &str) -> anyhow::Result<usize> {
    let c = mgmt_client();
    let conns: Vec<serde_json::Value> = c
        .get(format!("{}/api/vhosts/{vhost}/connections", rabbitmq_api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for conn in &conns {
        if let Some(name) = conn["name"].as_str() {
            let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let encoded = encoded.replace('+', "%20");
            c.delete(format!("{}/api/connections/{encoded}", rabbitmq_api()))
                .basic_auth("guest", Some("guest"))
                .send()
                .await?;
        }
    }
    Ok(conns.len())
}

/// A server running in this process.
pub struct TestServer {
    pub addr: String,
    /// The operations listener (`/metrics`).
    pub ops_addr: String,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("{}{}", self.ops_addr, path)
    }
}

/// Serves `spec` on 127.0.0.1:0, and its operations listener on another
/// port, until `cancel` fires.
pub fn serve(cancel: &CancellationToken, spec: ServerSpec) -> TestServer {
    let ops_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ops_port = ops_listener.local_addr().expect("addr").port();
    hookline_service_kit::ops::serve_ops(spec.probes.clone(), ops_listener, cancel.clone()).expect("ops server builds");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = hookline_service_kit::server::build(spec, listener).expect("server builds");
    let handle = server.handle();
    let cancel = cancel.clone();
    tokio::spawn(server);
    tokio::spawn(async move {
        cancel.cancelled().await;
        handle.stop(false).await;
    });
    TestServer { addr: format!("http://127.0.0.1:{port}"), ops_addr: format!("http://127.0.0.1:{ops_port}") }
}

/// A new organisation through the operator API at `base`: its id and its
/// first admin key.
pub async fn create_org(base: &str, name: &str) -> (String, String) {
    let v: serde_json::Value = http()
        .post(format!("{base}/api/v1/orgs"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .expect("operator API answers")
        .json()
        .await
        .expect("an organisation as JSON");
    let id = v["id"].as_str().expect("org id").to_owned();
    (id, v["api_key"]["key"].as_str().expect("admin key").to_owned())
}

/// An HTTP client for tests.
pub fn http() -> reqwest::Client {
    init();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

/// Signs in to the admin UI at `base` with `key`: the session cookie's
/// value, or None when the sign-in is refused.
pub async fn admin_session(base: &str, key: &str) -> Option<String> {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client");
    let cookie = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap_or("").to_owned()))
    };
    let form = c.get(format!("{base}/admin/login")).send().await.expect("sign-in page");
    let nonce = cookie(&form, "hookline_login").expect("login cookie");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("csrf_token", nonce.as_str()), ("api_key", key)])
        .finish();
    let res = c
        .post(format!("{base}/admin/login"))
        .header("cookie", format!("hookline_login={nonce}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("sign-in answers");
    cookie(&res, "hookline_session").filter(|v| !v.is_empty())
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
