//! The fault suite: the services run as separate processes against the
//! machine's Postgres, RabbitMQ and Redis, a steady load of events goes to a
//! recording receiver, and one fault is injected at a time. After the load
//! drains the invariant is checked from the database and the receiver's log:
//! every accepted event's every delivery was received at least once or is
//! `dead_letter` with all its attempts recorded, and nothing is left pending.
//! Each run prints its tally; a run that loses one delivery fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::proxy::TcpProxy;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{close_vhost_connections, create_org, eventually, http, TestEnv, OPERATOR_TOKEN};
use serde_json::{json, Value};

use crate::hookline;

const LOAD_SECS: u64 = 12;
const RATE: u64 = 40;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Service {
    name: &'static str,
    port: u16,
    child: Child,
}

struct Chaos {
    env: TestEnv,
    redis: TcpProxy,
    /// The ingest APIs reach RabbitMQ through this (the other services directly).
    amqp: TcpProxy,
    services: Vec<Service>,
    key: String,
    receiver: TestReceiver,
}

impl Chaos {
    async fn start(ingest_instances: usize, workers: usize) -> Self {
        let env = TestEnv::new().await;
        let redis = TcpProxy::start(hookline_test_support::redis_server().trim_start_matches("redis://")).await;
        let broker = hookline_test_support::amqp_server();
        let amqp = TcpProxy::start(broker.rsplit('@').next().unwrap()).await;
        let mut c =
            Chaos { env, redis, amqp, services: vec![], key: String::new(), receiver: TestReceiver::start().await };
        c.spawn("control-api").await;
        for _ in 0..ingest_instances {
            c.spawn("ingest-api").await;
        }
        for _ in 0..workers {
            c.spawn("worker").await;
        }
        c.spawn("alerting").await;
        c.key = create_org(&c.url("control-api", ""), "Chaos").await.1;
        c
    }

    fn command(&self, service: &str, port: u16) -> std::process::Command {
        let mut cmd = hookline(
            &self.env,
            &[
                ("HOOKLINE_LISTEN", &format!("127.0.0.1:{port}")),
                ("HOOKLINE_OPERATOR_TOKEN", OPERATOR_TOKEN),
                ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true"),
                ("HOOKLINE_REDIS_URL", &format!("redis://{}", self.redis.addr())),
                ("HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR", "10000000"),
                ("HOOKLINE_DATABASE_POOL_SIZE", "8"),
                ("RUST_LOG", "warn"),
            ],
        );
        if service == "ingest-api" {
            let broker = hookline_test_support::amqp_server();
            let credentials = broker.trim_start_matches("amqp://").split('@').next().unwrap().to_owned();
            cmd.env("HOOKLINE_AMQP_URL", format!("amqp://{credentials}@{}/{}", self.amqp.addr(), self.env.vhost));
        }
        cmd.args(["run", service]).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    async fn spawn(&mut self, name: &'static str) {
        let port = free_port();
        let child = self.command(name, port).spawn().unwrap();
        wait_healthy(name, port).await;
        self.services.push(Service { name, port, child });
    }

    fn url(&self, name: &str, path: &str) -> String {
        let s = self.services.iter().find(|s| s.name == name).unwrap();
        format!("http://127.0.0.1:{}{path}", s.port)
    }

    fn ingest_urls(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.name == "ingest-api")
            .map(|s| format!("http://127.0.0.1:{}/api/v1/events/leads", s.port))
            .collect()
    }

    /// SIGKILLs the first `name` process and starts a fresh one on the same port.
    async fn kill_and_restart(&mut self, name: &'static str) {
        let i = self.services.iter().position(|s| s.name == name).unwrap();
        let mut s = self.services.remove(i);
        let _ = s.child.kill();
        let _ = s.child.wait();
        let child = self.command(name, s.port).spawn().unwrap();
        wait_healthy(name, s.port).await;
        self.services.push(Service { name, port: s.port, child });
    }

    async fn endpoint(&self, body: Value) -> String {
        let mut b = json!({"url": self.receiver.url("/hook"), "events": ["*"]});
        b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        let v: Value = http()
            .post(self.url("control-api", "/api/v1/webhooks"))
            .bearer_auth(&self.key)
            .json(&b)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        self.receiver.set_secrets(&[v["secret"].as_str().unwrap()]);
        v["id"].as_str().unwrap().to_owned()
    }
}

async fn wait_healthy(name: &str, port: u16) {
    let url = format!("http://127.0.0.1:{port}/health");
    eventually(Duration::from_secs(30), &format!("{name} to answer /health"), || async {
        http().get(&url).send().await.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await;
}

/// Terminates every Postgres backend connected to `database`.
async fn terminate_backends(database: &str) {
    let admin = format!("{}/postgres", hookline_test_support::postgres_server());
    let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind::<diesel::sql_types::Text, _>(database)
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Waits until the load generator has had `n` answers, so a fault lands at a
/// point of the load rather than at a point of the clock.
async fn after_sent(sent: &Mutex<Sent>, n: usize) {
    eventually(Duration::from_secs(60), &format!("{n} events to be sent"), || async {
        (sent.lock().unwrap().attempted >= n).then_some(())
    })
    .await;
}

impl Drop for Chaos {
    fn drop(&mut self) {
        for s in &mut self.services {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// What the load generator saw.
#[derive(Default)]
struct Sent {
    attempted: usize,
    accepted: BTreeSet<String>,
    refused: BTreeMap<String, usize>,
}

/// Sends `RATE` events a second for `LOAD_SECS` seconds, round-robin over
/// the ingest instances, recording which were accepted (202).
fn load(urls: Vec<String>, key: String) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Sent>>) {
    load_for(urls, key, LOAD_SECS, RATE)
}

fn load_for(urls: Vec<String>, key: String, secs: u64, rate: u64) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Sent>>) {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let out = sent.clone();
    let handle = tokio::spawn(async move {
        let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let start = Instant::now();
        let total = rate * secs;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let due = start + Duration::from_millis(i * 1000 / rate);
            tokio::time::sleep_until(due.into()).await;
            let (c, url, key, sent) = (c.clone(), urls[i as usize % urls.len()].clone(), key.clone(), sent.clone());
            tasks.spawn(async move {
                let res = c
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"id": format!("lead-{i}"), "name": "Ada", "email": "ada@example.com"}))
                    .send()
                    .await;
                let outcome = match res {
                    Ok(r) if r.status() == 202 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        Ok(v["event_id"].as_str().unwrap_or_default().to_owned())
                    }
                    Ok(r) => Err(r.status().to_string()),
                    Err(_) => Err("connection".to_owned()),
                };
                let mut s = sent.lock().unwrap();
                s.attempted += 1;
                match outcome {
                    Ok(id) => {
                        s.accepted.insert(id);
                    }
                    Err(why) => *s.refused.entry(why).or_default() += 1,
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    (handle, out)
}

#[derive(diesel::QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    delivery_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempt_count: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    recorded_attempts: i64,
}

async fn deliveries(env: &TestEnv) -> Vec<Row> {
    let mut conn = AsyncPgConnection::establish(&env.database_url()).await.unwrap();
    diesel::sql_query(
        "SELECT 'evt_' || replace(d.event_id::text, '-', '') AS event_id, \
                'dlv_' || replace(d.id::text, '-', '') AS delivery_id, d.status, d.attempt_count, \
                (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) AS recorded_attempts \
         FROM deliveries d",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// Waits for the load to drain, then checks the invariant and prints the tally.
async fn verify(c: &Chaos, fault: &str, sent: &Mutex<Sent>, drain: Duration) {
    let (attempted, accepted, refused) = {
        let s = sent.lock().unwrap();
        (s.attempted, s.accepted.clone(), s.refused.clone())
    };
    assert!(accepted.len() * 2 > attempted, "{fault}: most events should be accepted ({refused:?})");
    let rows = eventually(drain, &format!("{fault}: every delivery to settle"), || async {
        let rows = deliveries(&c.env).await;
        let mine: Vec<&Row> = rows.iter().filter(|r| accepted.contains(&r.event_id)).collect();
        let settled =
            mine.len() >= accepted.len() && mine.iter().all(|r| r.status == "delivered" || r.status == "dead_letter");
        settled.then_some(rows)
    })
    .await;
    let received = c.receiver.received();
    // Receipts per delivery id, and of those the ones the receiver accepted
    // (a 500, a reset or a hang is a failed attempt, not a duplicate).
    let mut receipts: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted_receipts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        if let Some(id) = r.header("x-webhook-delivery-id") {
            *receipts.entry(id.to_owned()).or_default() += 1;
            if (200..300).contains(&r.answered) {
                *accepted_receipts.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    let mine: Vec<&Row> = rows.iter().filter(|r| accepted.contains(&r.event_id)).collect();
    let events_with_deliveries: BTreeSet<&str> = mine.iter().map(|r| r.event_id.as_str()).collect();
    let mut missing = Vec::new();
    for e in &accepted {
        if !events_with_deliveries.contains(e.as_str()) {
            missing.push(format!("{e}: accepted but has no delivery"));
        }
    }
    let (mut delivered, mut dead) = (0, 0);
    for r in &mine {
        match r.status.as_str() {
            "delivered" => {
                delivered += 1;
                if !accepted_receipts.contains_key(&r.delivery_id) {
                    missing.push(format!("{}: delivered but never received", r.delivery_id));
                }
            }
            "dead_letter" => {
                dead += 1;
                if r.recorded_attempts != i64::from(r.attempt_count) {
                    missing.push(format!(
                        "{}: dead_letter with {} of {} attempts recorded",
                        r.delivery_id, r.recorded_attempts, r.attempt_count
                    ));
                }
            }
            other => missing.push(format!("{}: left {other}", r.delivery_id)),
        }
    }
    let pending = rows.iter().filter(|r| r.status == "pending" || r.status == "failed").count();
    let duplicates: usize = accepted_receipts.values().map(|n| n - 1).sum();
    eprintln!(
        "chaos[{fault}]: sent={attempted} accepted={} refused={refused:?} deliveries={} delivered={delivered} \
         dead_letter={dead} receipts={} duplicates={duplicates} pending={pending} missing={}",
        accepted.len(),
        mine.len(),
        received.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{fault}: lost deliveries: {missing:#?}");
    assert_eq!(pending, 0, "{fault}: deliveries left pending");
}

#[tokio::test]
async fn a_worker_sigkilled_three_times_mid_load() {
    let mut c = Chaos::start(1, 2).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    for n in [120, 240, 360] {
        after_sent(&sent, n).await;
        c.kill_and_restart("worker").await;
    }
    load.await.unwrap();
    verify(&c, "worker SIGKILL x3", &sent, Duration::from_secs(90)).await;
}

#[tokio::test]
async fn every_broker_connection_force_closed_mid_load() {
    let c = Chaos::start(1, 1).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    for n in [160, 320] {
        after_sent(&sent, n).await;
        // The management API lists a connection a few seconds after it opens.
        eventually(Duration::from_secs(20), "broker connections to close", || async {
            close_vhost_connections(&c.env.vhost).await.ok().filter(|n| *n > 0)
        })
        .await;
    }
    load.await.unwrap();
    verify(&c, "broker connections closed x2", &sent, Duration::from_secs(90)).await;
}

#[tokio::test]
async fn postgres_backends_terminated_mid_load() {
    let c = Chaos::start(1, 1).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    for n in [160, 320] {
        after_sent(&sent, n).await;
        terminate_backends(&c.env.database).await;
    }
    load.await.unwrap();
    verify(&c, "postgres backends terminated x2", &sent, Duration::from_secs(90)).await;
}

#[tokio::test]
async fn redis_unreachable_for_a_while_mid_load() {
    let c = Chaos::start(1, 1).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    // Cut for the next 160 events (about four seconds of load).
    after_sent(&sent, 120).await;
    c.redis.cut();
    after_sent(&sent, 280).await;
    c.redis.restore();
    load.await.unwrap();
    let refused = sent.lock().unwrap().refused.clone();
    assert!(refused.is_empty(), "the APIs keep serving under their fallback limiter: {refused:?}");
    verify(&c, "redis unreachable 4 s", &sent, Duration::from_secs(90)).await;
}

#[tokio::test]
async fn a_receiver_that_fails_resets_hangs_and_floods() {
    let c = Chaos::start(1, 1).await;
    c.receiver.set(Behaviour::Chaotic);
    c.endpoint(json!({
        "timeout": 2,
        "max_retries": 12,
        "retry_policy": {"initial_delay_ms": 200, "multiplier": 1.5, "max_delay_ms": 2000}
    }))
    .await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    load.await.unwrap();
    verify(&c, "receiver 30% 500, resets, hangs, 50 MiB bodies", &sent, Duration::from_secs(150)).await;
}

#[tokio::test]
async fn an_ingest_api_sigkilled_mid_load_is_healed_by_the_relay() {
    let mut c = Chaos::start(2, 1).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load(c.ingest_urls(), c.key.clone());
    for n in [160, 320] {
        after_sent(&sent, n).await;
        c.kill_and_restart("ingest-api").await;
    }
    load.await.unwrap();
    verify(&c, "ingest-api SIGKILL x2", &sent, Duration::from_secs(90)).await;
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn an_ingest_api_killed_between_commit_and_publish_is_healed_by_the_relay() {
    let mut c = Chaos::start(1, 1).await;
    c.endpoint(json!({})).await;
    // The ingest API loses the broker: it keeps committing, but cannot publish.
    c.amqp.cut();
    let mut sent = Sent::default();
    let url = c.ingest_urls()[0].clone();
    for i in 0..40 {
        let res = http()
            .post(&url)
            .bearer_auth(&c.key)
            .json(&json!({"id": format!("lead-{i}"), "name": "Ada", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        sent.attempted += 1;
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        sent.accepted.insert(v["event_id"].as_str().unwrap().to_owned());
    }
    let mut conn = AsyncPgConnection::establish(&c.env.database_url()).await.unwrap();
    let unpublished: Count = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(unpublished.n > 0, "committed rows wait in the outbox");
    // Killed with them unpublished; the next instance's relay must send them.
    c.amqp.restore();
    c.kill_and_restart("ingest-api").await;
    verify(&c, "ingest-api SIGKILL between commit and publish", &Mutex::new(sent), Duration::from_secs(60)).await;
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// One line per service of (seconds, MiB) points, as an SVG page.
fn memory_svg(series: &BTreeMap<String, Vec<(f64, f64)>>, title: &str) -> String {
    let (w, h, pad) = (900.0, 360.0, 50.0);
    let max_t = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_m = series.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let colours = ["#2450c8", "#d64545", "#2f9e62", "#9a5b00", "#7b3fb8", "#1c8c9c", "#555555"];
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <text x=\"{pad}\" y=\"20\" font-size=\"14\">{title}</text>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"5\" y=\"{}\">{max_m:.0} MiB</text><text x=\"5\" y=\"{}\">0</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max_t:.0} s</text>",
        h - pad,
        w - 10.0,
        h - pad,
        pad,
        h - pad,
        w - 10.0,
        h - pad + 18.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let pts: Vec<String> = points
            .iter()
            .map(|(t, m)| {
                format!("{:.1},{:.1}", pad + (w - pad - 10.0) * t / max_t, (h - pad) - (h - pad - 30.0) * m / max_m)
            })
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{c}\">{name}</text>",
            pts.join(" "),
            w - 200.0,
            40.0 + 15.0 * i as f64
        ));
    }
    out.push_str("</svg>");
    out
}

/// `make soak`: HOOKLINE_SOAK_SECS (default 1800) of steady load with a
/// fault every three minutes, every service's memory sampled every five
/// seconds and plotted, and the invariant checked at the end.
#[tokio::test]
#[ignore = "a 30-minute soak; run with make soak"]
async fn soak() {
    let secs: u64 = std::env::var("HOOKLINE_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1800);
    let rate: u64 = std::env::var("HOOKLINE_SOAK_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let every: u64 = std::env::var("HOOKLINE_SOAK_FAULT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(180);
    let mut c = Chaos::start(2, 2).await;
    c.endpoint(json!({})).await;
    let (load, sent) = load_for(c.ingest_urls(), c.key.clone(), secs, rate);
    let start = Instant::now();
    let mut memory: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut next_fault = Duration::from_secs(every);
    let mut faults = 0usize;
    let mut sample = tokio::time::interval(Duration::from_secs(5));
    sample.tick().await;
    while start.elapsed() < Duration::from_secs(secs) {
        sample.tick().await;
        let t = start.elapsed().as_secs_f64();
        // A restarted service keeps its port, so its line continues.
        for s in &c.services {
            memory.entry(format!("{}:{}", s.name, s.port)).or_default().push((t, rss_mib(s.child.id())));
        }
        if start.elapsed() >= next_fault {
            next_fault += Duration::from_secs(every);
            match faults % 5 {
                0 => c.kill_and_restart("worker").await,
                1 => {
                    let _ = close_vhost_connections(&c.env.vhost).await;
                }
                2 => terminate_backends(&c.env.database).await,
                3 => {
                    // Cut for about five seconds of load.
                    let sent_so_far = sent.lock().unwrap().attempted;
                    c.redis.cut();
                    after_sent(&sent, sent_so_far + 5 * rate as usize).await;
                    c.redis.restore();
                }
                _ => c.kill_and_restart("ingest-api").await,
            }
            faults += 1;
            eprintln!("soak: fault {faults} at {t:.0} s");
        }
    }
    load.await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut csv = String::from("service,seconds,rss_mib\n");
    for (name, points) in &memory {
        for (t, m) in points {
            csv.push_str(&format!("{name},{t:.1},{m:.1}\n"));
        }
    }
    std::fs::write(dir.join(format!("soak-{stamp}.csv")), csv).unwrap();
    let svg = memory_svg(&memory, &format!("Hookline soak: RSS per service over {secs} s, {faults} faults"));
    std::fs::write(dir.join(format!("soak-{stamp}.svg")), svg).unwrap();
    for (name, points) in &memory {
        let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
        eprintln!("soak: {name} peak RSS {peak:.1} MiB");
    }
    verify(&c, &format!("soak {secs} s, {faults} faults"), &sent, Duration::from_secs(300)).await;
}
