//! The README's tour, run as written in a fresh clone against a running
//! stack: an organisation, a key, a webhook, the Python receiver verifying a
//! real signed delivery, and the delivery listed. Only the ports change, so
//! that tests run side by side.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookline_test_support::{eventually, http, TestEnv};
use serde_json::Value;

use crate::{hookline, Kill, BIN};

/// The shell block of the README section headed `heading`.
fn shell_block(readme: &str, heading: &str) -> String {
    let section = readme.split(&format!("## {heading}\n")).nth(1).unwrap_or_else(|| panic!("no `{heading}` section"));
    let section = section.split("\n## ").next().unwrap();
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("\n```").next().unwrap().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Stops a process group (the tour's shell and the receiver it started) on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_readme_tour_delivers_a_signed_lead_to_the_example_receiver() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let env = TestEnv::new().await;
    let scratch = std::env::temp_dir().join(format!("hookline-readme-{}", env.id));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let clone = scratch.join("hookline");
    run(&scratch, "git", &["clone", "-q", root.to_str().unwrap(), clone.to_str().unwrap()]);

    // What `make dev` leaves behind: the binary where a bare cargo builds it,
    // and the venv (this checkout's, when `make test` made it).
    std::fs::create_dir_all(clone.join("target/debug")).unwrap();
    std::os::unix::fs::symlink(BIN, clone.join("target/debug/hookline")).unwrap();
    if root.join(".venv/bin/python").exists() {
        std::os::unix::fs::symlink(root.join(".venv"), clone.join(".venv")).unwrap();
    }
    run(&clone, "scripts/setup.sh", &["dev"]);

    let (api, receiver) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{api}");
    let _stack = Kill(
        hookline(&env, &[("HOOKLINE_LISTEN", &listen), ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "true")])
            .args(["run", "all"])
            .current_dir(&clone)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = http();
    eventually(Duration::from_secs(30), "the stack to answer /health", || async {
        c.get(format!("http://{listen}/health")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;

    let readme = std::fs::read_to_string(clone.join("README.md")).unwrap();
    let script = shell_block(&readme, "A five-minute tour")
        .replace("localhost:8000", &format!("localhost:{api}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{receiver}"))
        .replace("localhost:3000", &format!("localhost:{receiver}"))
        .replace("PORT=3000", &format!("PORT={receiver}"));
    assert!(!script.contains("3000") && !script.contains("8000"), "a port was missed:\n{script}");
    let log = scratch.join("tour.log");
    // The shell gets the stack's settings, as a terminal beside `make dev` would.
    let mut shell = Command::new("bash");
    shell.env_clear();
    for (k, v) in hookline(&env, &[]).get_envs() {
        if let Some(v) = v {
            shell.env(k, v);
        }
    }
    let tour = Group(
        shell
            .args(["-c", &format!("{script}\necho; echo \"TOUR_KEY=$KEY\"")])
            .current_dir(&clone)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let key = eventually(Duration::from_secs(60), "the tour to run to its end", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("TOUR_KEY=")).map(str::to_owned)
    })
    .await;
    assert!(key.starts_with("sk_live_"), "the tour's key: {key:?}");

    // The receiver verified both signatures before recording the lead.
    let verified: Vec<Value> = eventually(Duration::from_secs(60), "the receiver to verify the lead", || async {
        let got: Vec<Value> =
            c.get(format!("http://127.0.0.1:{receiver}/received")).send().await.ok()?.json().await.ok()?;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(verified[0]["event"], "new_lead", "{verified:?}");
    let listed: Value = eventually(Duration::from_secs(30), "the delivery to be listed as delivered", || async {
        let v: Value = c
            .get(format!("http://{listen}/api/v1/webhooks/deliveries"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["data"][0]["status"] == "delivered").then_some(v)
    })
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], verified[0]["delivery_id"]);
    // The portal link the tour printed opens the portal.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let start = log_text
        .find(&format!("http://localhost:{api}/portal/pst_"))
        .unwrap_or_else(|| panic!("the tour prints a portal link:\n{log_text}"));
    let portal = log_text[start..].split_whitespace().next().unwrap();
    let page = c.get(portal).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("http://127.0.0.1:"), "the portal lists the tour's endpoint");
    drop(tour);
    let _ = std::fs::remove_dir_all(&scratch);
}
