//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for end-to-end tests of the admin UI. Each
//! [`Browser`] runs its own chromedriver and profile, so tests run in
//! parallel without sharing cookies.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::eventually;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn chromium() -> String {
    std::env::var("HOOKLINE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

pub fn chromedriver() -> String {
    std::env::var("HOOKLINE_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// Where screenshots go: `HOOKLINE_SCREENSHOT_DIR`, else
/// `$CARGO_TARGET_DIR/admin-screenshots`, else the workspace's `target/`.
pub fn screenshot_dir() -> PathBuf {
    if let Ok(d) = std::env::var("HOOKLINE_SCREENSHOT_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("admin-screenshots")
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempdir::Dir,
}

/// A WebDriver element reference.
#[derive(Clone, Debug)]
pub struct Element(String);

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so dropping the browser ends Chromium too.
        let driver = Command::new(chromedriver())
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (install chromium-driver): {e}", chromedriver()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        eventually(Duration::from_secs(20), "chromedriver to listen", || {
            let (http, url) = (http.clone(), format!("{base}/status"));
            async move { http.get(url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        let profile = std::env::temp_dir().join(format!("hookline-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-extensions", "--password-store=basic",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ]
            }
        }}});
        let v: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused to start a session: {v}"))
            .to_owned();
        Browser { driver, base, session, http, _profile: tempdir::Dir(profile) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = v["value"].get("error") {
            panic!("webdriver {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        match v["value"].get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(v["value"].clone()),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        let what = format!("an element matching `{css}`");
        eventually(Duration::from_secs(10), &what, || async { self.try_find(css).await }).await
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let v = self
            .try_call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
            .await
            .ok()?;
        v[ELEMENT].as_str().map(|s| Element(s.to_owned()))
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_owned()))).collect())
            .unwrap_or_default()
    }

    pub async fn click(&self, el: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", el.0), Some(json!({}))).await;
    }

    /// Finds and clicks the first element matching `css`, finding it again
    /// if a live region replaced it in between.
    pub async fn click_on(&self, css: &str) {
        let what = format!("a clickable `{css}`");
        eventually(Duration::from_secs(10), &what, || async {
            let el = self.try_find(css).await?;
            self.try_call(reqwest::Method::POST, &format!("/element/{}/click", el.0), Some(json!({})))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// Makes the frame `el` the context of later calls (cross-origin frames too).
    pub async fn enter_frame(&self, el: &Element) {
        self.call(reqwest::Method::POST, "/frame", Some(json!({"id": {ELEMENT: el.0}}))).await;
    }

    /// Back to the top-level page.
    pub async fn leave_frames(&self) {
        self.call(reqwest::Method::POST, "/frame", Some(json!({"id": null}))).await;
    }

    pub async fn type_into(&self, el: &Element, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{}/clear", el.0), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{}/value", el.0), Some(json!({"text": text}))).await;
    }

    pub async fn text(&self, el: &Element) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{}/text", el.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text of the first element matching `css`, if there is one now
    /// (a live region may replace it at any moment, so this never panics).
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let el = self.try_find(css).await?;
        let v = self.try_call(reqwest::Method::GET, &format!("/element/{}/text", el.0), None).await.ok()?;
        v.as_str().map(str::to_owned)
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.text(&body).await
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page and returns its result.
    pub async fn run_js(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Accepts the open `confirm()` dialog, waiting for it to appear.
    pub async fn accept_dialog(&self) {
        eventually(Duration::from_secs(10), "a confirmation dialog", || async {
            self.try_call(reqwest::Method::POST, "/alert/accept", Some(json!({}))).await.ok().map(|_| ())
        })
        .await;
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) {
        let what = format!("the page to show `{needle}`");
        eventually(timeout, &what, || async {
            let v = self
                .try_call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})),
                )
                .await
                .ok()?;
            v.as_str().is_some_and(|t| t.contains(needle)).then_some(())
        })
        .await;
    }

    /// Saves a PNG of the viewport as `<screenshot_dir>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser's cookies, as `(name, value, http_only, same_site, secure)`.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.call(
            reqwest::Method::POST,
            "/cookie",
            Some(json!({"cookie": {"name": name, "value": value, "path": "/admin"}})),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
