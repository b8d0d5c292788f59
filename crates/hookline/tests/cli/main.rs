//! The `hookline` binary, run as a real process against the machine's services.

mod access;
mod admin_ui;
mod bench;
mod chaos;
mod deploy;
mod example;
mod faults;
mod portal;
mod readme;
mod schemathesis;
mod secrets;

use std::process::{Command, Stdio};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::{eventually, http, TestEnv};

const BIN: &str = env!("CARGO_BIN_EXE_hookline");

/// Kills and reaps a child process when dropped, so a failing test leaves none behind.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hookline run all` with these variables, listening on a free port of
/// loopback (returned), killed when dropped.
fn run_all(env: &TestEnv, extra: &[(&str, &str)]) -> (Kill, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut vars = extra.to_vec();
    vars.push(("HOOKLINE_LISTEN", &listen));
    let child = hookline(env, &vars).args(["run", "all"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    (Kill(child), listen)
}

pub fn hookline(env: &TestEnv, extra: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKLINE_DATABASE_URL", env.database_url())
        .env("HOOKLINE_AMQP_URL", env.amqp_url())
        .env("HOOKLINE_REDIS_URL", hookline_test_support::redis_server())
        .env("HOOKLINE_REDIS_PREFIX", &env.redis_prefix)
        .env("HOOKLINE_MASTER_KEY", &env.master_key)
        .env("HOOKLINE_LOG_FORMAT", "json");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

#[derive(diesel::QueryableByName)]
struct Table {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
}

#[tokio::test]
async fn migrate_creates_the_database_and_every_table() {
    let env = TestEnv::new().await;
    let name = format!("hlcli_{}", env.id);
    let url = format!("{}/{name}", hookline_test_support::postgres_server());
    let out = hookline(&env, &[("HOOKLINE_DATABASE_URL", &url)]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Running it again is a no-op.
    let again = hookline(&env, &[("HOOKLINE_DATABASE_URL", &url)]).arg("migrate").output().unwrap();
    assert!(again.status.success());
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let names: Vec<_> = tables.iter().map(|t| t.table_name.as_str()).collect();
    for t in [
        "organisations",
        "api_keys",
        "webhook_endpoints",
        "event_types",
        "events",
        "deliveries",
        "delivery_attempts",
        "outbox",
        "alerts",
        "alert_settings",
        "audit_log",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    drop(conn);
    hookline_store::db::drop_database(&format!("{}/postgres", hookline_test_support::postgres_server()), &name)
        .await
        .unwrap();
}

#[tokio::test]
async fn org_create_prints_a_working_key_once() {
    let env = TestEnv::new().await;
    let out = hookline(&env, &[]).args(["org", "create", "--name", "Acme", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("org_"));
    let key = v["api_key"]["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_"));
    let plain = hookline(&env, &[]).args(["org", "create", "--name", "Beta"]).output().unwrap();
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(text.contains("sk_live_") && text.contains("org_"), "{text}");
    // The printed key authenticates against a running API of the same install.
    let conns = env.connect(&[]).await;
    let (spec, _) = hookline::all_in_one(&conns);
    let server = hookline_test_support::serve(&conns.cancel, spec);
    let res = http().get(server.url("/api/v1/keys")).bearer_auth(key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let out = hookline(&env, &[])
        .args(["key", "create", "--org", v["id"].as_str().unwrap(), "--name", "ci", "--role", "read_only", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(k["role"], "read_only");
    conns.cancel.cancel();
}

#[tokio::test]
async fn run_all_serves_health_and_ready_and_stops_cleanly_on_sigterm() {
    let env = TestEnv::new().await;
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{}", free());
    let ops = format!("127.0.0.1:{}", free());
    let mut child = hookline(&env, &[("HOOKLINE_LISTEN", &listen), ("HOOKLINE_OPS_LISTEN", &ops)])
        .args(["run", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = http();
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(30), "run all to answer /health", || async {
        c.get(format!("{base}/health")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let ready = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Metrics are served on the operations listener only.
    let metrics = c.get(format!("http://{ops}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("http_requests_total"));
    assert_eq!(c.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);
    // The broker topology was declared on start-up.
    let api = hookline_test_support::rabbitmq_api();
    for (kind, name) in [
        ("exchanges", "deliveries"),
        ("exchanges", "deliveries.dlx"),
        ("exchanges", "outcomes"),
        ("queues", "deliveries.work"),
        ("queues", "deliveries.dead"),
    ] {
        let res = c
            .get(format!("{api}/api/{kind}/{}/{name}", env.vhost))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{kind} {name}");
        if name == "deliveries.work" {
            let q: serde_json::Value = res.json().await.unwrap();
            assert_eq!(q["arguments"]["x-queue-type"], "quorum");
            assert_eq!(q["arguments"]["x-dead-letter-exchange"], "deliveries.dlx");
        }
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn an_unreachable_service_is_named_in_one_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(TestEnv::new());
    let out =
        hookline(&env, &[("HOOKLINE_REDIS_URL", "redis://127.0.0.1:1")]).args(["run", "control-api"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("Redis is not reachable") && line.contains("HOOKLINE_REDIS_URL"), "{line}");
    drop(env);
}

#[test]
fn split_services_refuse_to_start_without_a_master_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(TestEnv::new());
    let out = hookline(&env, &[("HOOKLINE_MASTER_KEY", "")]).args(["run", "worker"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKLINE_MASTER_KEY"));
    drop(env);
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = serde_json::to_value(hookline::platform_spec()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/openapi.json exists (make openapi)"))
            .unwrap();
    assert!(generated == committed, "docs/openapi.json is stale: run `make openapi` and commit it");
}

#[tokio::test]
async fn only_run_all_makes_the_development_master_key_and_every_directory_shares_it() {
    let env = TestEnv::new().await;
    let data = std::env::temp_dir().join(format!("hookline-data-{}", env.id));
    let data_home = data.to_str().unwrap().to_owned();
    let unset = [("HOOKLINE_MASTER_KEY", ""), ("XDG_DATA_HOME", data_home.as_str())];
    let key_file = data.join("hookline/master.key");

    let out = hookline(&env, &unset).args(["org", "create", "--name", "Early"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(key_file.to_str().unwrap()) && line.contains("HOOKLINE_MASTER_KEY"), "{line}");
    assert!(!key_file.exists(), "an admin command made a key of its own");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = hookline(&env, &[unset[0], unset[1], ("HOOKLINE_LISTEN", &listen)])
        .args(["run", "all"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = http();
    eventually(Duration::from_secs(30), "run all to answer /health", || async {
        c.get(format!("http://{listen}/health")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(key_file.exists(), "run all made the development key");
    // From another directory, the printed key works against that server.
    let out = hookline(&env, &unset)
        .args(["org", "create", "--name", "Later", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["api_key"]["key"].as_str().unwrap();
    let res = c.get(format!("http://{listen}/api/v1/keys")).bearer_auth(key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_split_service_refuses_a_schema_older_than_it_needs() {
    let env = TestEnv::new().await;
    let (admin, name) = hookline_store::db::split_database_url(&env.database_url()).unwrap();
    let bare_name = format!("{name}_bare");
    let bare = env.database_url().replace(&name, &bare_name);
    assert!(hookline_store::db::create_database_if_missing(&bare).await.unwrap());
    let run = |args: &'static [&'static str]| {
        let out = hookline(&env, &[("HOOKLINE_DATABASE_URL", &bare)]).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = run(&["run", "control-api"]);
    assert!(!ok);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("older than this version needs") && line.contains("hookline migrate"), "{line}");
    let (ok, stderr) = run(&["migrate"]);
    assert!(ok, "{stderr}");
    assert!(hookline_store::db::pending_migrations(&bare).await.unwrap().is_empty());
    hookline_store::db::drop_database(&admin, &bare_name).await.unwrap();
}

#[tokio::test]
async fn run_all_speaks_tls_to_postgres_when_the_url_asks() {
    let env = TestEnv::new().await;
    let (_, name) = hookline_store::db::split_database_url(&env.database_url()).unwrap();
    let url = format!("{}?sslmode=require", env.database_url());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = hookline(&env, &[("HOOKLINE_DATABASE_URL", &url), ("HOOKLINE_LISTEN", &listen)])
        .args(["run", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = http();
    eventually(Duration::from_secs(30), "run all to be ready", || async {
        c.get(format!("http://{listen}/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    // Every connection the process holds to its database is encrypted.
    let mut conn = AsyncPgConnection::establish(&env.database_url()).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Tally {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        encrypted: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        plain: i64,
    }
    let t: Tally = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE s.ssl) AS encrypted, count(*) FILTER (WHERE NOT s.ssl) AS plain \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind::<diesel::sql_types::Text, _>(&name)
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(t.encrypted >= 1 && t.plain == 0, "{} encrypted, {} plain", t.encrypted, t.plain);
    let _ = child.kill();
    let _ = child.wait();
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn test_ca(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hookline-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test]
async fn run_all_speaks_tls_to_a_tls_only_redis() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("hookline-redis-tls-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    // No plain port at all: whatever reaches this Redis speaks TLS.
    let _redis = Kill(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &tls_port, "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"])
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", "."])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed"),
    );
    let cli = |tls: bool, cmd: &[&str]| {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &tls_port]).current_dir(&dir);
        if tls {
            c.args(["--tls", "--cacert", "ca.pem"]);
        }
        c.args(cmd).output().unwrap()
    };
    eventually(Duration::from_secs(10), "the TLS-only Redis to answer", || async {
        (String::from_utf8_lossy(&cli(true, &["PING"]).stdout).trim() == "PONG").then_some(())
    })
    .await;
    let plain = cli(false, &["PING"]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("PONG"), "the port refuses plain Redis");

    let redis_url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = dir.join("ca.pem");
    let (_stack, listen) =
        run_all(&env, &[("HOOKLINE_REDIS_URL", &redis_url), ("HOOKLINE_TLS_CA_FILE", ca.to_str().unwrap())]);
    let c = http();
    let ready: serde_json::Value =
        eventually(Duration::from_secs(30), "run all to be ready on Redis over TLS", || async {
            let v: serde_json::Value = c.get(format!("http://{listen}/ready")).send().await.ok()?.json().await.ok()?;
            (v["status"] == "ready" && v["degraded"].is_null()).then_some(v)
        })
        .await;
    assert_eq!(ready["rate_limiter"]["mode"], "redis", "{ready}");
    // Its connections are there, on the only port there is: TLS.
    let clients = String::from_utf8_lossy(&cli(true, &["CLIENT", "LIST"]).stdout).lines().count();
    assert!(clients >= 2, "hookline's connection and this one: {clients}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn run_all_finds_the_writable_postgres_of_a_multi_host_url_with_the_first_host_down() {
    let env = TestEnv::new().await;
    // Port 1 refuses connections: the first host is down, the second is the real server.
    let url = env.database_url().replacen("127.0.0.1:5432", "127.0.0.1:1,127.0.0.1:5432", 1);
    assert!(url.contains(",127.0.0.1:5432"), "{url}");
    let url = format!("{url}?target_session_attrs=read-write");
    let (_stack, listen) = run_all(
        &env,
        &[("HOOKLINE_DATABASE_URL", &url), ("HOOKLINE_OPERATOR_TOKEN", hookline_test_support::OPERATOR_TOKEN)],
    );
    let c = http();
    eventually(Duration::from_secs(30), "run all to be ready through the second host", || async {
        c.get(format!("http://{listen}/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    // And it writes there: an organisation made through the API is in the database.
    let created = hookline_test_support::create_org(&format!("http://{listen}"), "Acme").await;
    let mut conn = AsyncPgConnection::establish(&env.database_url()).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM organisations WHERE name = 'Acme'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.n, 1, "{created:?}");
}

#[tokio::test]
async fn run_all_speaks_tls_to_a_tls_only_rabbitmq() {
    use hookline_test_support::rabbit_cluster::RabbitCluster;
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("hookline-amqps-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    // One node with no plain listener at all: whatever reaches it speaks TLS.
    let node = {
        let dir = dir.clone();
        std::sync::Arc::new(tokio::task::spawn_blocking(move || RabbitCluster::start_tls(&dir)).await.unwrap())
    };
    // A plain AMQP client's greeting gets no Connection.Start (a method frame, type 1).
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", node.port(0))).await.unwrap();
        s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        let mut first = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|n| (n, first[0]))
    };
    assert!(!matches!(answer, Some((1, 1))), "the port answered plain AMQP: {answer:?}");

    let ca = dir.join("ca.pem");
    let (_stack, listen) =
        run_all(&env, &[("HOOKLINE_AMQP_URL", &node.urls()), ("HOOKLINE_TLS_CA_FILE", ca.to_str().unwrap())]);
    let c = http();
    let ready: serde_json::Value =
        eventually(Duration::from_secs(60), "run all to be ready on RabbitMQ over TLS", || async {
            let v: serde_json::Value = c.get(format!("http://{listen}/ready")).send().await.ok()?.json().await.ok()?;
            (v["status"] == "ready" && v["checks"]["rabbitmq"]["status"] == "up").then_some(v)
        })
        .await;
    assert!(ready["degraded"].is_null(), "{ready}");
    // The broker's own view: the publisher and every consumer, all over TLS.
    let conns = {
        let node = node.clone();
        eventually(Duration::from_secs(30), "the worker and alerting to connect", || {
            let node = node.clone();
            async move {
                let out = tokio::task::spawn_blocking(move || {
                    node.ctl(0, &["list_connections", "ssl", "client_properties", "--quiet", "--no-table-headers"])
                })
                .await
                .unwrap();
                let ours: Vec<String> = out.lines().filter(|l| l.contains("hookline-")).map(str::to_owned).collect();
                (["hookline-all", "hookline-worker", "hookline-alerting"]
                    .iter()
                    .all(|name| ours.iter().any(|l| l.contains(&format!("\"{name}\"")))))
                .then_some(ours)
            }
        })
        .await
    };
    for line in &conns {
        assert!(line.trim_start().starts_with("true"), "a plain connection: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn traces_go_to_an_https_collector_over_tls() {
    use hookline_test_support::tls_sink::TlsPrefaceSink;
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("hookline-otlp-tls-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    let collector = TlsPrefaceSink::start(&dir).await;
    let endpoint = format!("https://127.0.0.1:{}", collector.port);
    let ca = dir.join("ca.pem");
    let (_stack, listen) = run_all(
        &env,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("HOOKLINE_TLS_CA_FILE", ca.to_str().unwrap()),
            ("HOOKLINE_OPERATOR_TOKEN", hookline_test_support::OPERATOR_TOKEN),
        ],
    );
    let c = http();
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(30), "run all to be ready", || async {
        c.get(format!("{base}/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let (_, key) = hookline_test_support::create_org(&base, "Acme").await;
    // Each accepted event makes a span; the exporter sends within its 100 ms schedule.
    eventually(Duration::from_secs(60), "the exporter to reach the collector over TLS", || async {
        let lead = serde_json::json!({"id": "l1", "name": "Ada", "email": "ada@example.com"});
        let _ = c.post(format!("{base}/api/v1/events/leads")).bearer_auth(&key).json(&lead).send().await;
        (collector.grpc_connections() > 0).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
