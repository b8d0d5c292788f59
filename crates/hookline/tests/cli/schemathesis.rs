//! The served OpenAPI document, fuzzed with schemathesis (from PyPI) using a
//! real admin key: no 5xx, and every answer matches the documented status
//! codes, content types, headers and schemas. Bounded so it runs in CI.

use std::process::Command;

use hookline_test_support::{create_org, serve, TestEnv};

pub fn schemathesis() -> String {
    std::env::var("HOOKLINE_TEST_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into())
}

#[tokio::test]
async fn the_documented_api_holds_under_schemathesis() {
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, _) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    let (_, key) = create_org(&server.addr, "Fuzz").await;
    let spec = server.url("/openapi.json");
    let auth = format!("Authorization: Bearer {key}");
    // schemathesis keeps a cache in its working directory: not in the checkout.
    let scratch = std::env::temp_dir().join(format!("hookline-schemathesis-{}", env.id));
    std::fs::create_dir_all(&scratch).unwrap();
    let cwd = scratch.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .current_dir(cwd)
            .args([
                "run",
                &spec,
                "-H",
                &auth,
                "--max-examples",
                "12",
                "--phases",
                "examples,coverage,fuzzing",
                "--generation-deterministic",
                "--request-timeout",
                "20",
                "--no-color",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {} (pip install schemathesis): {e}", schemathesis()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout.lines().filter(|l| l.contains("generated")).collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("passed"), "{stdout}");

    // Creating keys, fuzzed longer with a fixed seed: among what it sends is
    // a key name holding NUL, which Postgres cannot store.
    let har = scratch.join("har");
    let (cwd, spec, auth, report) =
        (scratch.clone(), server.url("/openapi.json"), format!("Authorization: Bearer {key}"), har.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .current_dir(cwd)
            .args(["run", &spec, "-H", &auth, "--include-operation-id", "create_key", "--max-examples", "100"])
            .args([
                "--seed",
                "1",
                "--mode",
                "positive",
                "--phases",
                "fuzzing",
                "--generation-database",
                "none",
                "--no-color",
            ])
            .args(["--checks", "not_a_server_error,status_code_conformance,response_schema_conformance"])
            .args(["--report", "har", "--report-dir"])
            .arg(report)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems creating keys:\n{stdout}");
    let report = std::fs::read_dir(&har).unwrap().next().expect("a HAR report").unwrap().path();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let with_nul: Vec<u64> = report["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let body = e["request"]["postData"]["text"].as_str().unwrap_or("");
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|b| b["name"].as_str().is_some_and(|n| n.contains('\0')))
        })
        .map(|e| e["response"]["status"].as_u64().unwrap())
        .collect();
    assert!(!with_nul.is_empty(), "the seeded run no longer sends a NUL key name: choose another --seed");
    assert!(with_nul.iter().all(|s| *s == 422), "NUL key names answered {with_nul:?}");
    let _ = std::fs::remove_dir_all(&scratch);
    conns.cancel.cancel();
}
