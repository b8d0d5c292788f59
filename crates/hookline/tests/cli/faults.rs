//! Worker processes killed and stopped mid-work.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{create_org, eventually, http, serve, TestEnv};
use serde_json::{json, Value};

use crate::{hookline, Kill};

struct Stack {
    env: TestEnv,
    url: String,
    key: String,
}

/// Creates an endpoint from `body` and teaches the receiver its secret; returns its id.
async fn create_endpoint(base: &str, key: &str, r: &TestReceiver, body: Value) -> String {
    let v: Value = http()
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r.set_secrets(&[v["secret"].as_str().unwrap_or_else(|| panic!("{v}"))]);
    v["id"].as_str().unwrap().to_owned()
}

async fn stack() -> Stack {
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
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
        self.endpoint_with(r, json!({"url": r.url("/hook"), "events": ["*"]})).await
    }

    async fn endpoint_with(&self, r: &TestReceiver, body: Value) -> String {
        create_endpoint(&self.url, &self.key, r, body).await
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

/// Ordered delivery under load and faults: 2,000 events over 50 leads, a
/// receiver failing one request in ten, two worker processes and one of
/// them killed midway. Every lead's events arrive in the order they were
/// sent, each only once the one before it was answered 2xx.
#[tokio::test]
async fn ordered_deliveries_arrive_in_order_per_lead_through_failures_and_a_killed_worker() {
    const LEADS: usize = 50;
    const PER_LEAD: usize = 40;
    let s = stack().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Flaky { percent: 10, delay: Duration::from_millis(5) });
    s.endpoint_with(
        &r,
        json!({
            "url": r.url("/ordered"), "events": ["*"], "ordering": {"key": "/id"}, "max_retries": 20,
            "retry_policy": {"initial_delay_ms": 100, "multiplier": 1.5, "max_delay_ms": 1000},
        }),
    )
    .await;
    // Killed however the test ends.
    let mut doomed = Kill(s.worker());
    let _other = Kill(s.worker());

    // Each lead's events are sent one after another; the leads side by side.
    let senders = (0..LEADS).map(|lead| {
        let (url, key) = (s.url.clone(), s.key.clone());
        tokio::spawn(async move {
            let c = http();
            for seq in 0..PER_LEAD {
                let res = c
                    .post(format!("{url}/api/v1/events/leads"))
                    .bearer_auth(&key)
                    .json(&json!({"id": format!("lead_{lead}"), "name": "Ada", "email": "ada@example.com", "seq": seq}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
            }
        })
    });
    let senders: Vec<_> = senders.collect();
    eventually(Duration::from_secs(120), "a quarter of the events to arrive", || async {
        (r.count() >= LEADS * PER_LEAD / 4).then_some(())
    })
    .await;
    signal(&doomed.0, "-KILL");
    let _ = doomed.0.wait();
    doomed = Kill(s.worker());
    for sender in senders {
        sender.await.unwrap();
    }

    let total = LEADS * PER_LEAD;
    eventually(Duration::from_secs(180), "every event to be answered 2xx", || async {
        let ok: BTreeSet<String> = r
            .received()
            .iter()
            .filter(|x| x.answered == 200)
            .map(|x| x.header("x-webhook-delivery-id").unwrap().to_owned())
            .collect();
        (ok.len() == total).then_some(())
    })
    .await;
    let mut by_lead: std::collections::BTreeMap<String, Vec<(u64, u16, String)>> = Default::default();
    for x in r.received() {
        let body = x.json();
        let lead = body["data"]["id"].as_str().unwrap().to_owned();
        let seen = format!(
            "{} {} attempt {}",
            x.header("x-webhook-delivery-id").unwrap(),
            x.answered,
            x.header("x-webhook-attempt").unwrap()
        );
        by_lead.entry(lead).or_default().push((body["data"]["seq"].as_u64().unwrap(), x.answered, seen));
    }
    assert_eq!(by_lead.len(), LEADS);
    for (lead, got) in &by_lead {
        let seqs: Vec<u64> = got.iter().map(|(seq, _, _)| *seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{lead} arrived out of order: {got:#?}");
        // Moving on to the next event only after this one was taken.
        for w in got.windows(2).filter(|w| w[0].0 != w[1].0) {
            assert_eq!(w[0].1, 200, "{lead} moved past event {} before it was delivered", w[0].0);
        }
        assert_eq!(seqs.last(), Some(&(PER_LEAD as u64 - 1)), "{lead}");
    }
    eprintln!("{} requests for {total} events (failures answered 500, and redeliveries)", r.count());
    drop(doomed);
}

/// A three-node RabbitMQ cluster under steady load loses the node leading
/// `deliveries.work`, then the node the worker consumes from, each SIGKILLed
/// and restarted: the quorum queues keep every message, the services move
/// to the surviving nodes, and every accepted event is delivered.
#[tokio::test]
async fn a_rabbitmq_cluster_loses_its_queue_leader_and_the_workers_node_and_nothing_is_lost() {
    use hookline_test_support::rabbit_cluster::RabbitCluster;
    use std::sync::Arc;
    let cluster = Arc::new(tokio::task::spawn_blocking(|| RabbitCluster::start(3)).await.unwrap());
    let env = TestEnv::new().await;
    let urls = cluster.urls();
    let (_all, listen) = crate::run_all(
        &env,
        &[
            ("HOOKLINE_AMQP_URL", &urls),
            ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true"),
            ("HOOKLINE_OPERATOR_TOKEN", hookline_test_support::OPERATOR_TOKEN),
            ("HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR", "1000000"),
        ],
    );
    let base = format!("http://{listen}");
    eventually(Duration::from_secs(60), "run all to be ready on the cluster", || async {
        http().get(format!("{base}/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let (_, key) = create_org(&base, "Acme").await;
    let r = TestReceiver::start().await;
    let body = json!({"url": r.url("/hook"), "events": ["*"], "max_retries": 20,
                      "retry_policy": {"initial_delay_ms": 200, "multiplier": 1.5, "max_delay_ms": 2000}});
    create_endpoint(&base, &key, &r, body).await;

    // A steady stream of leads, about 40 a second, all accepted, until the faults are over.
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (base, key, sent, stop) = (base.clone(), key.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let c = http();
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tick.tick().await;
                let res = c
                    .post(format!("{base}/api/v1/events/leads"))
                    .bearer_auth(&key)
                    .json(&json!({"id": format!("lead_{i}"), "name": "Ada", "email": "ada@example.com"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202, "event {i} refused");
                i += 1;
                sent.store(i, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let delivered = |r: &TestReceiver| -> BTreeSet<String> {
        r.received()
            .iter()
            .filter(|x| x.answered == 200)
            .filter_map(|x| x.header("x-webhook-delivery-id").map(str::to_owned))
            .collect()
    };

    // Kills a node, waits for deliveries to go on without it, restarts it.
    let mut tally = Vec::new();
    for what in ["the leader of deliveries.work", "the worker's node"] {
        // Kill only once deliveries keep pace, so the time to resume measures the fault, not a backlog.
        eventually(Duration::from_secs(120), "deliveries to keep pace with the stream", || async {
            let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
            (sent >= 100 && delivered(&r).len() + 20 >= sent).then_some(())
        })
        .await;
        let victim = {
            let cluster = cluster.clone();
            let leader = what.starts_with("the leader");
            tokio::task::spawn_blocking(move || {
                let asked = (0..3).find(|&i| cluster.leader_of("deliveries.work", i).is_some()).unwrap_or(0);
                if leader {
                    cluster.leader_of("deliveries.work", asked).expect("a leader")
                } else {
                    cluster.node_of_connection("hookline-worker", asked).expect("the worker's connection")
                }
            })
            .await
            .unwrap()
        };
        let killed_at = std::time::Instant::now();
        let mark = sent.load(std::sync::atomic::Ordering::SeqCst);
        let name = cluster.name(victim).to_owned();
        {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.kill(victim)).await.unwrap();
        }
        // Resumed: events accepted after the kill went through the broker and arrived.
        let after_kill = |r: &TestReceiver| {
            r.received()
                .iter()
                .filter(|x| x.answered == 200)
                .filter(|x| {
                    let id = x.json()["data"]["id"].as_str().unwrap_or_default().to_owned();
                    id.trim_start_matches("lead_").parse::<usize>().is_ok_and(|i| i >= mark)
                })
                .count()
        };
        eventually(Duration::from_secs(120), "deliveries to resume without the killed node", || async {
            (after_kill(&r) >= 20).then_some(())
        })
        .await;
        tally.push(format!(
            "killed {what} ({name}): 20 events sent after the kill delivered {:.1} s later",
            killed_at.elapsed().as_secs_f64()
        ));
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.restart(victim)).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.await.unwrap();
    let events = sent.load(std::sync::atomic::Ordering::SeqCst);
    eventually(Duration::from_secs(180), "every accepted event to be delivered", || async {
        (delivered(&r).len() == events).then_some(())
    })
    .await;
    let requests = r.count();
    eprintln!(
        "cluster fault tally: {events} events accepted, {events} delivered, 0 lost, {} repeated requests",
        requests - events
    );
    for line in tally {
        eprintln!("  {line}");
    }
}
