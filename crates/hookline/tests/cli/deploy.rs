//! The deployment files parse, and every metric they chart or alert on is
//! really exported by a running Hookline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hookline_test_support::{http, serve, TestEnv};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn compose_kustomize_prometheus_and_grafana_files_parse() {
    let mut files = vec![root().join("docker-compose.yml")];
    yaml_files(&root().join("deploy"), &mut files);
    yaml_files(&root().join(".github"), &mut files);
    assert!(files.len() >= 15, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!docs.is_empty(), "{} is empty", f.display());
    }
    // Every pull request builds the image and runs the compose smoke job.
    let ci = &yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(root().join(".github/workflows/ci.yml")).unwrap(),
    )
    .unwrap()[0];
    assert!(!ci["on"]["pull_request"].is_badvalue());
    for job in ["test", "image", "compose-smoke"] {
        assert!(!ci["jobs"][job].is_badvalue(), "the workflow lacks the {job} job");
    }
    let smoke = format!("{:?}", ci["jobs"]["compose-smoke"]["steps"]);
    assert!(smoke.contains("scripts/compose_smoke.py") && root().join("scripts/compose_smoke.py").exists());
    let compose =
        &yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(root().join("docker-compose.yml")).unwrap())
            .unwrap()[0];
    for svc in [
        "postgres",
        "rabbitmq",
        "redis",
        "prometheus",
        "grafana",
        "gateway",
        "control-api",
        "ingest-api",
        "worker",
        "alerting",
    ] {
        assert!(!compose["services"][svc].is_badvalue(), "compose lacks {svc}");
    }
    let kustomization = &yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(root().join("deploy/k8s/base/kustomization.yaml")).unwrap(),
    )
    .unwrap()[0];
    for r in kustomization["resources"].as_vec().unwrap() {
        assert!(root().join("deploy/k8s/base").join(r.as_str().unwrap()).exists(), "{r:?} listed but missing");
    }
    for d in std::fs::read_dir(root().join("deploy/grafana/dashboards")).unwrap() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.unwrap().path()).unwrap()).unwrap();
        assert!(!v["panels"].as_array().unwrap().is_empty());
        // Imported into any Grafana: the Prometheus data source is chosen, not assumed.
        assert_eq!(v["templating"]["list"][0]["type"], "datasource");
        assert!(!v.to_string().contains(r#""uid":"prometheus""#), "a panel names a fixed data source");
    }
    // The broker's queues, from RabbitMQ's own per-queue endpoint, which Prometheus scrapes.
    let overview = std::fs::read_to_string(root().join("deploy/grafana/dashboards/hookline-overview.json")).unwrap();
    assert!(
        overview.contains("rabbitmq_detailed_queue_messages_ready")
            && overview.contains("rabbitmq_detailed_queue_consumers")
    );
    let prometheus = std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("metrics_path: /metrics/detailed") && prometheus.contains("queue_coarse_metrics"));
}

/// Metric names used in the dashboards and alert rules.
fn referenced_metrics() -> BTreeSet<String> {
    let mut text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    for d in std::fs::read_dir(root().join("deploy/grafana/dashboards")).unwrap() {
        text.push_str(&std::fs::read_to_string(d.unwrap().path()).unwrap());
    }
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_lowercase() || bytes[i] == b'_' || bytes[i].is_ascii_digit()) {
            i += 1;
        }
        let word = &text[start..i];
        if ["webhook_", "hookline_", "http_", "process_"].iter().any(|p| word.starts_with(p)) && word.len() > 8 {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            names.insert(base.to_owned());
        }
        i = i.max(start + 1);
    }
    names
}

#[tokio::test]
async fn every_metric_in_the_dashboards_and_alerts_is_exported() {
    let names = referenced_metrics();
    assert!(names.len() >= 15, "{names:?}");
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
    hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&conns)).unwrap();
    hookline_alerting::start(&conns).unwrap();
    // One request so the HTTP metrics have a sample.
    http().get(server.url("/health")).send().await.unwrap();
    let text = http().get(server.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let exported: BTreeSet<&str> =
        text.lines().filter(|l| l.starts_with("# TYPE ")).filter_map(|l| l.split(' ').nth(2)).collect();
    let missing: Vec<_> = names.iter().filter(|n| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "referenced but not exported: {missing:?}");
    conns.cancel.cancel();
}

/// `1.89` or `1.89.0` as comparable numbers.
fn version(text: &str) -> Vec<u32> {
    let mut v: Vec<u32> = text.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    v.resize(3, 0);
    v
}

#[test]
fn the_image_and_rust_version_build_every_locked_dependency() {
    // The packages the image's Linux build compiles: what that build has
    // fetched is enough, and other platforms' crates are not needed.
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &format!("{}-unknown-linux-gnu", std::env::consts::ARCH)])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (needed, by) = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?.to_owned())))
        .max()
        .unwrap();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|t| t.split('-').next())
        .expect("the build stage is FROM rust:<version>-…");
    assert!(version(image) >= needed, "the Dockerfile's Rust {image} cannot build {by} (needs {needed:?})");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|t| t.strip_suffix('"'))
        .expect("the workspace declares rust-version");
    assert!(version(declared) >= needed, "rust-version {declared} is below what {by} needs ({needed:?})");
}

#[tokio::test]
async fn each_service_is_ready_when_it_can_do_its_job() {
    use hookline_test_support::proxy::TcpProxy;
    use hookline_test_support::{amqp_server, eventually, redis_server};
    let env = TestEnv::new().await;
    let redis = TcpProxy::start(redis_server().trim_start_matches("redis://")).await;
    let amqp = TcpProxy::start(amqp_server().rsplit('@').next().unwrap()).await;
    let amqp_url = format!("amqp://guest:guest@{}/{}", amqp.addr(), env.vhost);
    let conns = env
        .connect(&[("HOOKLINE_REDIS_URL", &format!("redis://{}", redis.addr())), ("HOOKLINE_AMQP_URL", &amqp_url)])
        .await;
    let auth = hookline_service_kit::auth::AuthState::build(&conns);
    let state = hookline_ingest_api::IngestState::new(&conns, auth);
    let ingest = serve(&conns.cancel, hookline_ingest_api::server_spec(&conns, state));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let worker_ops = format!("http://{}", listener.local_addr().unwrap());
    hookline_service_kit::ops::serve_ops(
        hookline_service_kit::ops::Probes::needing_broker(&conns),
        listener,
        conns.cancel.clone(),
    )
    .unwrap();
    let c = http();
    let ready = |base: String| {
        let c = c.clone();
        async move {
            let res = c.get(format!("{base}/ready")).send().await.unwrap();
            (res.status().as_u16(), res.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(ready(ingest.addr.clone()).await.0, 200);
    assert_eq!(ready(worker_ops.clone()).await.0, 200);

    redis.cut();
    amqp.cut();
    // The ingest API takes events with Postgres alone: a local rate limiter
    // stands in for Redis, and the outbox keeps what RabbitMQ cannot take yet.
    // (A connection cut is noticed at the next use: poll until both are.)
    let v = eventually(std::time::Duration::from_secs(20), "ingest to see both dependencies gone", || async {
        let (status, v) = ready(ingest.addr.clone()).await;
        assert_eq!(status, 200, "ingest stays ready: {v}");
        let degraded: Vec<String> =
            v["degraded"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)).collect();
        (degraded.contains(&"redis".to_owned()) && degraded.contains(&"rabbitmq".to_owned())).then_some(v)
    })
    .await;
    assert_eq!(v["checks"]["postgres"]["status"], "up");
    // The worker cannot deliver without the broker.
    let (status, v) = ready(worker_ops.clone()).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["unavailable"], serde_json::json!(["rabbitmq"]), "{v}");
    // Liveness stays up and says what is degraded, from the background probe.
    let health = eventually(std::time::Duration::from_secs(20), "/health to name the degraded", || async {
        let v: serde_json::Value = c.get(ingest.url("/health")).send().await.ok()?.json().await.ok()?;
        (v["degraded"].as_array().is_some_and(|d| d.len() == 2)).then_some(v)
    })
    .await;
    assert_eq!(health["status"], "ok");

    redis.restore();
    amqp.restore();
    eventually(std::time::Duration::from_secs(20), "the worker to be ready again", || async {
        (ready(worker_ops.clone()).await.0 == 200).then_some(())
    })
    .await;
    conns.cancel.cancel();
}

/// `kubectl kustomize` of a directory under deploy/k8s, checked against the
/// Kubernetes API schemas (`kubernetes-validate --strict`; no cluster runs
/// here). Custom resources (KEDA, Prometheus Operator) have no schema there
/// and are checked by the assertions instead.
fn render(dir: &str) -> Vec<yaml_rust2::Yaml> {
    let out = std::process::Command::new(std::env::var("HOOKLINE_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .args(["kustomize", &root().join("deploy/k8s").join(dir).to_string_lossy()])
        .output()
        .expect("kubectl runs (scripts/setup.sh test installs it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let file = std::env::temp_dir().join(format!("hookline-k8s-{}-{}.yaml", dir.replace('/', "-"), std::process::id()));
    std::fs::write(&file, &out.stdout).unwrap();
    let check = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", &file.to_string_lossy()])
        .output()
        .expect("kubernetes-validate runs (in the venv: scripts/setup.sh test)");
    let report = String::from_utf8_lossy(&check.stdout).to_string() + &String::from_utf8_lossy(&check.stderr);
    let _ = std::fs::remove_file(&file);
    let problems: Vec<&str> =
        report.lines().filter(|l| !l.trim().is_empty() && !l.contains("Couldn't find schema for kind")).collect();
    assert!(check.status.success() && problems.is_empty(), "{dir} does not validate:\n{report}");
    yaml_rust2::YamlLoader::load_from_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn kind(d: &yaml_rust2::Yaml) -> &str {
    d["kind"].as_str().unwrap_or("")
}

/// What every rendering must keep: migrations before the service, locked-down
/// pods, no replica count fighting an autoscaler, the network policies.
fn pods_migrate_first_run_locked_down_and_leave_scaling_to_the_autoscalers(dir: &str, docs: &[yaml_rust2::Yaml]) {
    let scaled: Vec<String> = docs
        .iter()
        .filter(|d| ["HorizontalPodAutoscaler", "ScaledObject"].contains(&kind(d)))
        .map(|d| d["spec"]["scaleTargetRef"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(scaled.len(), 3, "{dir}: both APIs and the workers scale");
    let deployments: Vec<&yaml_rust2::Yaml> = docs.iter().filter(|d| kind(d) == "Deployment").collect();
    assert_eq!(deployments.len(), 4, "{dir}");
    for d in deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        if scaled.iter().any(|s| s == name) {
            assert!(d["spec"]["replicas"].is_badvalue(), "{dir} {name}: replicas fights its autoscaler");
        }
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{dir} {name}");
        let init = pod["initContainers"].as_vec().unwrap_or_else(|| panic!("{dir} {name}: no init container"));
        assert_eq!(init[0]["args"][0].as_str(), Some("migrate"), "{dir} {name}: migrations run before the service");
        for c in init.iter().chain(pod["containers"].as_vec().unwrap()) {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{dir} {name}");
            assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{dir} {name}");
            assert_eq!(c["image"].as_str(), init[0]["image"].as_str(), "{dir} {name}: one image for migrate and run");
        }
    }
    assert_eq!(docs.iter().filter(|d| kind(d) == "NetworkPolicy").count(), 2, "{dir}");
    let keda = docs.iter().find(|d| kind(d) == "ScaledObject").expect("the workers' ScaledObject");
    let trigger = &keda["spec"]["triggers"][0];
    assert_eq!(trigger["metadata"]["mode"].as_str(), Some("QueueLength"), "{dir}");
    assert_eq!(
        trigger["metadata"]["queueName"].as_str(),
        Some("^deliveries\\.(work|retry\\..+)$"),
        "{dir}: the whole backlog"
    );
    let trigger_auth = trigger["authenticationRef"]["name"].as_str().unwrap();
    assert!(docs
        .iter()
        .any(|d| kind(d) == "TriggerAuthentication" && d["metadata"]["name"].as_str() == Some(trigger_auth)));
}

fn image_of(docs: &[yaml_rust2::Yaml], deployment: &str) -> String {
    let d =
        docs.iter().find(|d| kind(d) == "Deployment" && d["metadata"]["name"].as_str() == Some(deployment)).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_owned()
}

#[test]
fn kubernetes_base_and_overlays_render_validate_and_upgrade_safely() {
    let base = render("base");
    pods_migrate_first_run_locked_down_and_leave_scaling_to_the_autoscalers("base", &base);

    let dev = render("overlays/development");
    pods_migrate_first_run_locked_down_and_leave_scaling_to_the_autoscalers("development", &dev);
    assert_eq!(image_of(&dev, "worker"), "ghcr.io/hookline/hookline:latest");
    for hpa in dev.iter().filter(|d| kind(d) == "HorizontalPodAutoscaler") {
        assert_eq!(hpa["spec"]["minReplicas"].as_i64(), Some(1));
    }
    for pdb in dev.iter().filter(|d| kind(d) == "PodDisruptionBudget") {
        assert!(pdb["spec"]["minAvailable"].is_badvalue(), "one pod each must not block node drains");
    }

    let prod = render("overlays/production");
    pods_migrate_first_run_locked_down_and_leave_scaling_to_the_autoscalers("production", &prod);
    for name in ["control-api", "ingest-api", "worker", "alerting"] {
        assert_eq!(image_of(&prod, name), "ghcr.io/hookline/hookline:0.1.0", "production pins its image");
    }
    let ingress = prod.iter().find(|d| kind(d) == "Ingress").expect("an Ingress");
    assert!(ingress["spec"]["tls"][0]["secretName"].as_str().is_some(), "the ingress serves TLS");
    let backends: Vec<(&str, &str)> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["backend"]["service"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(backends, [("/api/v1/events", "ingest-api"), ("/", "control-api")]);
    // Every service is scraped on a port its Service names.
    let monitors: Vec<&yaml_rust2::Yaml> = prod.iter().filter(|d| kind(d) == "ServiceMonitor").collect();
    for svc in prod.iter().filter(|d| kind(d) == "Service") {
        let name = svc["metadata"]["labels"]["app.kubernetes.io/name"].as_str().unwrap();
        let ports: Vec<&str> =
            svc["spec"]["ports"].as_vec().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        let scraped = monitors.iter().any(|m| {
            let names = m["spec"]["selector"]["matchExpressions"][0]["values"].as_vec().unwrap();
            names.iter().any(|n| n.as_str() == Some(name))
                && ports.contains(&m["spec"]["endpoints"][0]["port"].as_str().unwrap())
        });
        assert!(scraped, "production: {name} is not scraped");
    }
    let keda = prod.iter().find(|d| kind(d) == "ScaledObject").unwrap();
    assert!(keda["spec"]["maxReplicaCount"].as_i64().unwrap() > 20, "production lets the workers scale further");
}

/// The compose smoke job's script (one lead in, one signed delivery out),
/// run here against `run all` so that it cannot rot between workflow runs.
#[tokio::test]
async fn the_compose_smoke_script_sees_one_signed_delivery() {
    let env = TestEnv::new().await;
    let token = hookline_test_support::OPERATOR_TOKEN;
    let (_all, listen) =
        crate::run_all(&env, &[("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true"), ("HOOKLINE_OPERATOR_TOKEN", token)]);
    let base = format!("http://{listen}");
    hookline_test_support::eventually(std::time::Duration::from_secs(30), "run all to be ready", || async {
        http().get(format!("{base}/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let script = root().join("scripts/compose_smoke.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args([base.as_str(), "127.0.0.1"])
            .env("HOOKLINE_OPERATOR_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("delivered and signed"), "{said}");
}
