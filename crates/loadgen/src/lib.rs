//! The load generator behind `hookline bench`: drives a running Hookline the way an evaluator would,
//! through the real ingest API with a real key, into a built-in receiver,
//! and reports ingest and end-to-end figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where Hookline's APIs answer (the gateway or `run all`).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// The operator token (default: HOOKLINE_OPERATOR_TOKEN).
    #[arg(long)]
    pub operator_token: Option<String>,
    /// Events to send.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Requests in flight when saturating.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Fixed send rate in events per second; 0 saturates.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Healthy endpoints subscribed to every event (fan-out).
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// Endpoints that never answer (each with a 5 s timeout).
    #[arg(long, default_value_t = 0)]
    pub hanging: usize,
    /// Leads the events are spread over (their `id`), round robin; 0: each event its own lead.
    #[arg(long, default_value_t = 0)]
    pub keys: usize,
    /// The healthy endpoints deliver each lead's events in order (`ordering: {"key": "/id"}`).
    #[arg(long)]
    pub ordered: bool,
    /// Share of first attempts the receiver fails with 500 (a retry storm), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// How long to wait for deliveries after the last send.
    #[arg(long, default_value_t = 120)]
    pub drain_seconds: u64,
    /// Directory for the JSON result.
    #[arg(long, default_value = "bench-results")]
    pub out: String,
    /// A name for this run in the report.
    #[arg(long, default_value = "custom")]
    pub scenario: String,
    /// Skip measuring the built-in receiver's own ceiling with wrk.
    #[arg(long)]
    pub skip_receiver_ceiling: bool,
    /// The JSON report of a calm run to set this run against: the report
    /// gives the ratio of the two runs' first-attempt p99 (the retry storm's
    /// and the hanging endpoint's targets).
    #[arg(long)]
    pub compare_with: Option<String>,
}

#[derive(Default)]
struct Receipts {
    /// delivery id -> (first receipt latency from send in µs, receipts, first receipt time in µs)
    deliveries: HashMap<String, (u64, u32, u64)>,
    /// Deliveries whose first attempt was the one that succeeded.
    first_try: std::collections::HashSet<String>,
    first_attempt_failures: usize,
}

struct Receiver {
    start: Instant,
    fail_rate: f64,
    receipts: Mutex<Receipts>,
    total: AtomicUsize,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One second of the run, by time of receipt.
#[derive(Debug, Serialize)]
pub struct Second {
    /// Seconds since the first send.
    pub second: u64,
    pub deliveries: usize,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Latency per second of receipt: a tail that comes from one stall shows as
/// one bad second, a tail spread over the run as a raised line.
fn per_second(samples: &[(u64, u64)]) -> Vec<Second> {
    let end = samples.iter().map(|(at, _)| at / 1_000_000).max().map_or(0, |s| s + 1);
    let mut bins: Vec<Vec<u64>> = vec![Vec::new(); end as usize];
    for (at, latency) in samples {
        bins[(at / 1_000_000) as usize].push(*latency);
    }
    bins.into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, v)| {
            let n = v.len();
            let p = percentiles(v);
            Second { second: i as u64, deliveries: n, p99_ms: p.p99_ms, max_ms: p.max_ms }
        })
        .collect()
}

fn percentiles(mut v: Vec<u64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles { p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, max_ms: 0.0 };
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    Percentiles { p50_ms: at(0.5), p90_ms: at(0.9), p99_ms: at(0.99), max_ms: *v.last().unwrap() as f64 / 1000.0 }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub events: usize,
    pub concurrency: usize,
    pub rate: u64,
    pub endpoints: usize,
    pub hanging: usize,
    pub fail_rate: f64,
    pub keys: usize,
    pub ordered: bool,
    pub ingest_seconds: f64,
    pub ingest_events_per_second: f64,
    pub ingest_202: Percentiles,
    pub ingest_errors: usize,
    pub expected_deliveries: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicates: usize,
    pub deliveries_per_second: f64,
    pub end_to_end: Percentiles,
    /// Send to receipt of the deliveries that succeeded at their first
    /// attempt: in a retry storm, the healthy traffic that retries must not slow.
    pub first_attempt_end_to_end: Percentiles,
    /// The same deliveries, second by second of receipt.
    pub first_attempt_per_second: Vec<Second>,
    /// What the built-in receiver answers per second under wrk alone (when wrk is installed).
    pub receiver_ceiling_per_second: Option<f64>,
    /// This run set against a calm one (`--compare-with`).
    pub against_calm: Option<Comparison>,
}

/// First-attempt p99 of this run against a calm run's.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// The calm run's JSON report.
    pub calm_report: String,
    pub calm_scenario: String,
    pub calm_p99_ms: f64,
    pub p99_ms: f64,
    /// `p99_ms / calm_p99_ms`.
    pub ratio: f64,
}

/// The scenario and first-attempt p99 of a report written by an earlier run.
fn calm_run(path: &str) -> anyhow::Result<(String, f64)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the calm run's report {path}"))?;
    let report: Value = serde_json::from_str(&text).with_context(|| format!("{path} is not a JSON report"))?;
    let p99 = report["first_attempt_end_to_end"]["p99_ms"]
        .as_f64()
        .filter(|p| *p > 0.0)
        .ok_or_else(|| anyhow!("{path} has no first_attempt_end_to_end.p99_ms above zero"))?;
    Ok((report["scenario"].as_str().unwrap_or("unnamed").to_owned(), p99))
}

impl Comparison {
    fn new(calm_report: &str, (calm_scenario, calm_p99_ms): (String, f64), p99_ms: f64) -> Self {
        Self { calm_report: calm_report.to_owned(), calm_scenario, calm_p99_ms, p99_ms, ratio: p99_ms / calm_p99_ms }
    }

    fn describe(&self) -> String {
        format!(
            "{:.1} ms against {:.1} ms in the calm run ({}), {:.2}×",
            self.p99_ms, self.calm_p99_ms, self.calm_scenario, self.ratio
        )
    }
}

/// The built-in receiver's own ceiling, measured with wrk (a 250-byte POST,
/// 2 threads, 32 connections, 5 s), so a report shows it is not the bottleneck.
async fn receiver_ceiling(port: u16) -> Option<f64> {
    let script = std::env::temp_dir().join(format!("hookline-bench-{port}.lua"));
    let body = format!("{{\"event\":\"new_lead\",\"data\":{{\"pad\":\"{}\"}}}}", "x".repeat(220));
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
    )
    .ok()?;
    let script_path = script.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t2", "-c32", "-d5s", "-s"])
            .arg(&script_path)
            .arg(format!("http://127.0.0.1:{port}/ceiling"))
            .output()
    })
    .await
    .ok()?
    .ok()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
}

fn find_u64(body: &[u8], key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let i = body.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let digits: String = body[i..].iter().take_while(|b| b.is_ascii_digit()).map(|b| *b as char).collect();
    digits.parse().ok()
}

async fn serve_receiver(rx: Arc<Receiver>, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let rx = rx.clone();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            loop {
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                    let mut chunk = [0u8; 8192];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let header = |name: &str| {
                    head.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
                };
                let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let mut chunk = [0u8; 8192];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                if path.starts_with("/hang") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                if path.starts_with("/ceiling") {
                    // The same parsing and answer, without bookkeeping: what wrk measures.
                    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}";
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    continue;
                }
                let now_us = rx.start.elapsed().as_micros() as u64;
                let id = header("x-webhook-delivery-id").unwrap_or_default();
                let attempt = header("x-webhook-attempt").unwrap_or_default();
                let fail = attempt == "1" && rx.fail_rate > 0.0 && {
                    let h = id.bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
                    (h % 10_000) as f64 / 10_000.0 < rx.fail_rate
                };
                rx.total.fetch_add(1, Ordering::Relaxed);
                {
                    let mut r = rx.receipts.lock().unwrap();
                    if fail {
                        r.first_attempt_failures += 1;
                    } else {
                        let sent = find_u64(&body, "bench_sent_us").unwrap_or(now_us);
                        if attempt == "1" && !r.deliveries.contains_key(&id) {
                            r.first_try.insert(id.clone());
                        }
                        let e = r.deliveries.entry(id).or_insert((now_us.saturating_sub(sent), 0, now_us));
                        e.1 += 1;
                    }
                }
                let status = if fail { "500 Internal Server Error" } else { "200 OK" };
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}");
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let token =
        args.operator_token.clone().or_else(|| std::env::var("HOOKLINE_OPERATOR_TOKEN").ok()).ok_or_else(|| {
            anyhow!("pass --operator-token or set HOOKLINE_OPERATOR_TOKEN (the bench creates its own organisation)")
        })?;
    // Read before the run, so a wrong path costs nothing.
    let calm = args.compare_with.as_deref().map(calm_run).transpose()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).tcp_nodelay(true).build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let rx = Arc::new(Receiver {
        start: Instant::now(),
        fail_rate: args.fail_rate,
        receipts: Mutex::new(Receipts::default()),
        total: AtomicUsize::new(0),
    });
    tokio::spawn(serve_receiver(rx.clone(), listener));
    let receiver_ceiling = if args.skip_receiver_ceiling { None } else { receiver_ceiling(port).await };
    if let Some(c) = receiver_ceiling {
        println!("built-in receiver ceiling (wrk, 2 threads, 32 connections, 5 s): {c:.0} requests/s");
    }

    let org: Value = client
        .post(format!("{}/api/v1/orgs", args.url))
        .bearer_auth(&token)
        .json(&json!({"name": format!("bench {}", chrono::Utc::now().to_rfc3339())}))
        .send()
        .await
        .context("creating the bench organisation")?
        .error_for_status()?
        .json()
        .await?;
    let admin = org["api_key"]["key"].as_str().ok_or_else(|| anyhow!("no key in {org}"))?.to_owned();
    let key: Value = client
        .post(format!("{}/api/v1/keys", args.url))
        .bearer_auth(&admin)
        // A key cannot outrank its creator: this one takes the admin key's
        // limit, `HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR` of the server.
        .json(&json!({"name": "bench", "role": "read_write"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();
    for i in 0..args.endpoints {
        let mut endpoint = json!({"url": format!("http://127.0.0.1:{port}/ok/{i}"), "events": ["new_lead"]});
        if args.ordered {
            endpoint["ordering"] = json!({"key": "/id"});
        }
        client
            .post(format!("{}/api/v1/webhooks", args.url))
            .bearer_auth(&admin)
            .json(&endpoint)
            .send()
            .await?
            .error_for_status()
            .context(
                "creating an endpoint (the server must allow private targets: HOOKLINE_ALLOW_PRIVATE_TARGETS=true)",
            )?;
    }
    for i in 0..args.hanging {
        client
            .post(format!("{}/api/v1/webhooks", args.url))
            .bearer_auth(&admin)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hang/{i}"), "events": ["new_lead"], "timeout": 5, "max_retries": 0}))
            .send()
            .await?
            .error_for_status()?;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.events)));
    let errors = Arc::new(AtomicUsize::new(0));
    let send_start = Instant::now();
    let progress = {
        let next = next.clone();
        let rx = rx.clone();
        let total = args.events;
        let expected = args.events * args.endpoints;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let sent = next.load(Ordering::Relaxed).min(total);
                let got = rx.receipts.lock().unwrap().deliveries.len();
                let bar = |n: usize, of: usize| {
                    let w = 30 * n / of.max(1);
                    format!("[{}{}] {n}/{of}", "#".repeat(w), ".".repeat(30 - w))
                };
                eprint!("\r  sent {}  delivered {}   ", bar(sent, total), bar(got, expected));
                if got >= expected && sent >= total {
                    break;
                }
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, next, latencies, errors, key, url) =
            (client.clone(), next.clone(), latencies.clone(), errors.clone(), key.clone(), args.url.clone());
        let (events, rate, start, keys) = (args.events, args.rate, send_start, args.keys);
        let clock = rx.start;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let lead = if keys > 0 { i % keys } else { i };
                let body = json!({
                    "id": format!("bench_{lead}"), "name": "Bench Lead", "email": "bench@example.com",
                    "source": "benchmark", "phone": "+15555550100",
                    "bench_sent_us": clock.elapsed().as_micros() as u64,
                });
                let t = Instant::now();
                let ok = client
                    .post(format!("{url}/api/v1/events/leads"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 202)
                    .unwrap_or(false);
                let us = t.elapsed().as_micros() as u64;
                if ok {
                    latencies.lock().unwrap().push(us);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let ingest_seconds = send_start.elapsed().as_secs_f64();
    let expected = args.events * args.endpoints - errors.load(Ordering::Relaxed) * args.endpoints;
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let mut last = (0, Instant::now());
    loop {
        let got = rx.receipts.lock().unwrap().deliveries.len();
        if got >= expected || Instant::now() > deadline {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.abort();
    eprintln!();
    let r = rx.receipts.lock().unwrap();
    let e2e: Vec<u64> = r.deliveries.values().map(|(l, _, _)| *l).collect();
    // Receipts are stamped from the receiver's start; the report counts time
    // from the first send, after the setup (and the receiver's wrk ceiling).
    let sent_from = send_start.duration_since(rx.start).as_micros() as u64;
    let first_try_at: Vec<(u64, u64)> = r
        .deliveries
        .iter()
        .filter(|(id, _)| r.first_try.contains(*id))
        .map(|(_, (l, _, t))| (t.saturating_sub(sent_from), *l))
        .collect();
    let first_try: Vec<u64> = first_try_at.iter().map(|(_, l)| *l).collect();
    let seconds = per_second(&first_try_at);
    let receipts_at: Vec<u64> = r.deliveries.values().map(|(_, _, t)| t.saturating_sub(sent_from)).collect();
    let duplicates = r.deliveries.values().map(|(_, n, _)| (*n as usize).saturating_sub(1)).sum();
    let delivered = r.deliveries.len();
    let wall = send_start.elapsed().as_secs_f64().max(ingest_seconds);
    let lat = std::mem::take(&mut *latencies.lock().unwrap());
    let svg = plot(&e2e, &receipts_at, &seconds, &args.scenario);
    let accepted = lat.len();
    let first_attempt = percentiles(first_try);
    let against_calm =
        args.compare_with.as_deref().zip(calm).map(|(path, calm)| Comparison::new(path, calm, first_attempt.p99_ms));
    let report = Report {
        scenario: args.scenario.clone(),
        events: args.events,
        concurrency: args.concurrency,
        rate: args.rate,
        endpoints: args.endpoints,
        hanging: args.hanging,
        fail_rate: args.fail_rate,
        keys: args.keys,
        ordered: args.ordered,
        ingest_seconds,
        ingest_events_per_second: accepted as f64 / ingest_seconds,
        ingest_202: percentiles(lat),
        ingest_errors: errors.load(Ordering::Relaxed),
        expected_deliveries: expected,
        delivered,
        missing: expected.saturating_sub(delivered),
        duplicates,
        deliveries_per_second: delivered as f64 / wall,
        end_to_end: percentiles(e2e),
        first_attempt_end_to_end: first_attempt,
        first_attempt_per_second: seconds,
        receiver_ceiling_per_second: receiver_ceiling,
        against_calm,
    };
    std::fs::create_dir_all(&args.out)?;
    let path = format!("{}/{}-{}.json", args.out, chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), args.scenario);
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = path.replace(".json", ".svg");
    std::fs::write(&svg_path, svg)?;
    std::fs::write(path.replace(".json", ".md"), markdown(&report, &svg_path))?;
    println!(
        "{}: ingest {:.0} events/s (202 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors); delivered {}/{} at {:.0}/s, end-to-end p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (first-attempt successes p99 {:.1} ms, slowest second {}); {} duplicates, {} missing\n  written to {path}",
        report.scenario,
        report.ingest_events_per_second,
        report.ingest_202.p50_ms,
        report.ingest_202.p99_ms,
        report.ingest_202.max_ms,
        report.ingest_errors,
        report.delivered,
        report.expected_deliveries,
        report.deliveries_per_second,
        report.end_to_end.p50_ms,
        report.end_to_end.p90_ms,
        report.end_to_end.p99_ms,
        report.end_to_end.max_ms,
        report.first_attempt_end_to_end.p99_ms,
        slowest_second(&report.first_attempt_per_second),
        report.duplicates,
        report.missing,
    );
    if let Some(c) = &report.against_calm {
        println!("  first-attempt p99 {}", c.describe());
    }
    Ok(report)
}

/// The second whose first-attempt p99 was worst, in words.
fn slowest_second(seconds: &[Second]) -> String {
    seconds.iter().max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms)).map_or_else(
        || "none".into(),
        |s| {
            format!(
                "at {} s: p99 {:.1} ms, max {:.1} ms over {} deliveries",
                s.second, s.p99_ms, s.max_ms, s.deliveries
            )
        },
    )
}

/// One page: the end-to-end latency distribution, deliveries per second over
/// time, and the first attempts' p99 and max second by second.
fn plot(latencies_us: &[u64], receipts_us: &[u64], seconds: &[Second], title: &str) -> String {
    let (w, h, pad) = (900.0_f64, 260.0_f64, 40.0_f64);
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='11'>\n<text x='{pad}' y='18' font-size='14'>{title}</text>\n",
        3.0 * h + 90.0
    );
    // Latency histogram on log-spaced bins from 0.1 ms to 100 s.
    let bins = 60usize;
    let edge = |i: usize| 100.0_f64 * 10f64.powf(i as f64 * 6.0 / bins as f64); // µs
    let mut counts = vec![0u64; bins];
    for l in latencies_us {
        let i = (((*l).max(100) as f64 / 100.0).log10() * bins as f64 / 6.0) as usize;
        counts[i.min(bins - 1)] += 1;
    }
    let max = *counts.iter().max().unwrap_or(&1).max(&1) as f64;
    let top = 30.0;
    out += &format!("<text x='{pad}' y='{}'>end-to-end latency (send to receipt), log scale</text>\n", top + 10.0);
    let bw = (w - 2.0 * pad) / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let bh = (*c as f64 / max) * (h - 50.0);
        out += &format!(
            "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='#3b82f6'/>\n",
            pad + i as f64 * bw,
            top + h - 20.0 - bh,
            bw - 1.0,
            bh
        );
    }
    for (i, label) in [(0, "0.1 ms"), (10, "1 ms"), (20, "10 ms"), (30, "100 ms"), (40, "1 s"), (50, "10 s")] {
        let _ = edge(i);
        out += &format!("<text x='{:.1}' y='{}'>{label}</text>\n", pad + i as f64 * bw, top + h);
    }
    // Deliveries per second over time.
    let top2 = top + h + 30.0;
    let end = receipts_us.iter().max().copied().unwrap_or(0) / 1_000_000 + 1;
    let mut per_s = vec![0u64; end as usize];
    for t in receipts_us {
        per_s[(*t / 1_000_000) as usize] += 1;
    }
    let maxs = *per_s.iter().max().unwrap_or(&1).max(&1) as f64;
    out += &format!("<text x='{pad}' y='{}'>deliveries per second (peak {maxs:.0})</text>\n", top2 + 10.0);
    let pts: Vec<String> = per_s
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{:.1},{:.1}",
                pad + i as f64 * (w - 2.0 * pad) / per_s.len().max(1) as f64,
                top2 + h - 20.0 - (*c as f64 / maxs) * (h - 50.0)
            )
        })
        .collect();
    out += &format!("<polyline fill='none' stroke='#10b981' stroke-width='2' points='{}'/>\n", pts.join(" "));
    out += &format!(
        "<text x='{pad}' y='{}'>0 s</text><text x='{:.1}' y='{}'>{end} s</text>\n",
        top2 + h,
        w - pad - 20.0,
        top2 + h
    );
    // First attempts' p99 and max per second, log scale from 1 ms to 10 s,
    // on the same time axis as the throughput above.
    let top3 = top2 + h + 30.0;
    out += &format!(
        "<text x='{pad}' y='{}'>deliveries that succeeded at their first attempt: p99 (blue) and max (grey) per second, log scale</text>\n",
        top3 + 10.0
    );
    let x = |second: u64| pad + second as f64 * (w - 2.0 * pad) / per_s.len().max(1) as f64;
    let y = |ms: f64| top3 + h - 20.0 - (ms.max(1.0).log10() / 4.0).min(1.0) * (h - 50.0);
    for (ms, label) in [(1.0, "1 ms"), (10.0, "10 ms"), (100.0, "100 ms"), (1000.0, "1 s"), (10000.0, "10 s")] {
        out += &format!(
            "<line x1='{pad}' x2='{:.1}' y1='{:.1}' y2='{:.1}' stroke='#e5e7eb'/><text x='2' y='{:.1}'>{label}</text>\n",
            w - pad,
            y(ms),
            y(ms),
            y(ms) + 4.0
        );
    }
    let max: Vec<f64> = seconds.iter().map(|s| s.max_ms).collect();
    let p99: Vec<f64> = seconds.iter().map(|s| s.p99_ms).collect();
    for (values, colour) in [(max, "#9ca3af"), (p99, "#3b82f6")] {
        let pts: Vec<String> =
            seconds.iter().zip(values).map(|(s, ms)| format!("{:.1},{:.1}", x(s.second), y(ms))).collect();
        out += &format!("<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>\n", pts.join(" "));
    }
    out + "</svg>\n"
}

fn markdown(r: &Report, svg: &str) -> String {
    let ceiling = r
        .receiver_ceiling_per_second
        .map(|c| format!("{c:.0} requests/s (wrk, 2 threads, 32 connections)"))
        .unwrap_or_else(|| "not measured (wrk not installed)".into());
    let against = r
        .against_calm
        .as_ref()
        .map_or_else(String::new, |c| format!("| their p99 against the calm run | {} |\n", c.describe()));
    format!(
        "# Hookline benchmark: {}\n\n{} events, {} in flight, rate {} (0 = saturating), {} endpoints, {} hanging, \
         {:.0}% first attempts failed on purpose.\n\n\
         | | figure |\n|---|---|\n\
         | ingest throughput | {:.0} events/s |\n\
         | 202 latency p50 / p90 / p99 / max | {:.1} / {:.1} / {:.1} / {:.1} ms |\n\
         | ingest errors | {} |\n\
         | deliveries | {} of {} ({} missing, {} duplicates) |\n\
         | delivery throughput | {:.0} /s |\n\
         | send to receipt p50 / p90 / p99 / max | {:.1} / {:.1} / {:.1} / {:.1} ms |\n\
         | the same, deliveries that succeeded at their first attempt | {:.1} / {:.1} / {:.1} / {:.1} ms |\n\
         | their slowest second | {} |\n\
         {}\
         | built-in receiver ceiling | {} |\n\n![plots]({})\n",
        r.scenario,
        r.events,
        r.concurrency,
        r.rate,
        r.endpoints,
        r.hanging,
        r.fail_rate * 100.0,
        r.ingest_events_per_second,
        r.ingest_202.p50_ms,
        r.ingest_202.p90_ms,
        r.ingest_202.p99_ms,
        r.ingest_202.max_ms,
        r.ingest_errors,
        r.delivered,
        r.expected_deliveries,
        r.missing,
        r.duplicates,
        r.deliveries_per_second,
        r.end_to_end.p50_ms,
        r.end_to_end.p90_ms,
        r.end_to_end.p99_ms,
        r.end_to_end.max_ms,
        r.first_attempt_end_to_end.p50_ms,
        r.first_attempt_end_to_end.p90_ms,
        r.first_attempt_end_to_end.p99_ms,
        r.first_attempt_end_to_end.max_ms,
        slowest_second(&r.first_attempt_per_second),
        against,
        ceiling,
        std::path::Path::new(svg).file_name().and_then(|f| f.to_str()).unwrap_or_default()
    )
}
