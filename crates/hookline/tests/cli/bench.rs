//! The bench tool itself, on a tiny scenario: the report's counts, never its speed.

use hookline_loadgen::{run, BenchArgs};
use hookline_test_support::{serve, TestEnv, OPERATOR_TOKEN};

#[tokio::test]
async fn a_tiny_bench_run_reports_every_delivery_and_writes_its_report() {
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
    hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&conns)).unwrap();
    let out = std::env::temp_dir().join(format!("hookline-bench-{}", env.id));
    let args = BenchArgs {
        url: server.addr.clone(),
        operator_token: Some(OPERATOR_TOKEN.into()),
        events: 150,
        concurrency: 8,
        rate: 0,
        endpoints: 2,
        hanging: 0,
        keys: 0,
        ordered: false,
        fail_rate: 0.2,
        drain_seconds: 60,
        out: out.display().to_string(),
        scenario: "tiny".into(),
        skip_receiver_ceiling: true,
        compare_with: None,
    };
    let report = run(args.clone()).await.unwrap();
    assert_eq!(report.ingest_errors, 0);
    assert_eq!(report.expected_deliveries, 300, "150 events to 2 endpoints");
    assert_eq!(report.delivered, 300);
    assert_eq!(report.missing, 0);
    // The per-second breakdown covers the first-attempt successes and nothing else.
    let seconds = &report.first_attempt_per_second;
    let counted: usize = seconds.iter().map(|s| s.deliveries).sum();
    assert!(counted > 0 && counted < 300, "some of 300 first attempts failed on purpose; {counted} counted");
    assert!(seconds.windows(2).all(|w| w[0].second < w[1].second), "seconds in order: {seconds:?}");
    assert!(seconds.iter().all(|s| s.p99_ms <= s.max_ms), "{seconds:?}");
    assert_eq!(seconds[0].second, 0, "counted from the first send: {seconds:?}");
    let worst = seconds.iter().map(|s| s.max_ms).fold(0.0, f64::max);
    assert_eq!(worst, report.first_attempt_end_to_end.max_ms, "the slowest delivery lies in some second");
    let files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for ext in ["json", "md", "svg"] {
        assert!(files.iter().any(|f| f.ends_with(&format!("tiny.{ext}"))), "{ext} report in {files:?}");
    }
    let md = std::fs::read_to_string(out.join(files.iter().find(|f| f.ends_with(".md")).unwrap())).unwrap();
    assert!(md.contains("| deliveries | 300 of 300 (0 missing"), "{md}");
    assert!(md.contains("| their slowest second | at "), "{md}");
    assert!(report.against_calm.is_none() && !md.contains("against the calm run"), "{md}");

    // A second run set against the first: the ratio of their first-attempt p99.
    let calm = out.join(files.iter().find(|f| f.ends_with("tiny.json")).unwrap()).display().to_string();
    let again = run(BenchArgs {
        scenario: "tiny-again".into(),
        events: 50,
        fail_rate: 0.0,
        compare_with: Some(calm.clone()),
        ..args.clone()
    })
    .await
    .unwrap();
    let c = again.against_calm.as_ref().expect("a comparison");
    assert_eq!((c.calm_report.as_str(), c.calm_scenario.as_str()), (calm.as_str(), "tiny"));
    assert_eq!(c.calm_p99_ms, report.first_attempt_end_to_end.p99_ms);
    assert_eq!(c.p99_ms, again.first_attempt_end_to_end.p99_ms);
    assert!((c.ratio - c.p99_ms / c.calm_p99_ms).abs() < 1e-9, "{c:?}");
    let md = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("tiny-again.md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("the second run's report");
    assert!(md.contains("| their p99 against the calm run | ") && md.contains("in the calm run (tiny)"), "{md}");

    // A calm report that cannot be read stops the run before it sends anything.
    let missing = out.join("no-such-report.json").display().to_string();
    let err = run(BenchArgs { compare_with: Some(missing.clone()), ..args }).await.unwrap_err();
    assert!(format!("{err:#}").contains(&missing), "{err:#}");
    let _ = std::fs::remove_dir_all(&out);
    conns.cancel.cancel();
}
