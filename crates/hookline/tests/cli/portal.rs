//! The embeddable portal in a real headless Chromium, inside an iframe of a
//! host page served from another origin, against the whole stack: the round
//! trip a customer makes, and the links and origins that must not work.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_test_support::browser::Browser;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{eventually, http, OPERATOR_TOKEN};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin_ui::{stack, Stack};

/// A host application's page on its own origin, embedding whatever link it is given.
struct HostPage {
    origin: String,
    src: Arc<Mutex<String>>,
}

impl HostPage {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let src = Arc::new(Mutex::new(String::new()));
        let shared = src.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    // Read when the request has come: a browser opens spare
                    // connections ahead, before the test says what to embed.
                    let src = shared.lock().unwrap().clone();
                    let page = format!(
                        "<!doctype html><html><head><meta name=viewport content=\"width=device-width\"><title>Host CRM</title></head>\
                         <body style=\"margin:0\"><h1>Host CRM</h1>\
                         <iframe id=\"portal\" src=\"{src}\" style=\"width:100%;height:760px;border:0\"></iframe></body></html>"
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        page.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(page.as_bytes()).await;
                });
            }
        });
        Self { origin, src }
    }

    fn embed(&self, url: &str) {
        *self.src.lock().unwrap() = url.to_owned();
    }
}

async fn link(s: &Stack, key: &str, body: Value) -> (String, String) {
    let (st, v) = s.api(reqwest::Method::POST, key, "/api/v1/portal-sessions", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (v["id"].as_str().unwrap().to_owned(), v["url"].as_str().unwrap().to_owned())
}

/// Opens the host page (a new URL each time, so nothing comes from a cache)
/// and enters its iframe.
async fn open(b: &Browser, host: &HostPage) {
    static OPENED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    b.leave_frames().await;
    b.goto(&format!("{}/?open={n}", host.origin)).await;
    let frame = b.find("iframe#portal").await;
    b.enter_frame(&frame).await;
}

#[tokio::test]
async fn the_portal_works_in_a_frame_of_an_allowed_origin_and_nowhere_else() {
    let s = stack().await;
    let (org, admin) = s.org("Acme").await;
    let (host, foreign) = (HostPage::start().await, HostPage::start().await);
    let res = http()
        .patch(format!("{}/api/v1/orgs/{org}", s.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"portal_origins": [host.origin], "portal_accent_color": "#7a1fa2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let r = TestReceiver::start().await;
    let (link_id, url) = link(&s, &admin, json!({"mode": "manage", "ttl_seconds": 900})).await;
    host.embed(&url);
    foreign.embed(&url);

    // Phone width: the host product's mobile view.
    let b = Browser::start(390, 844).await;
    open(&b, &host).await;
    b.wait_for_text("No endpoints yet.", Duration::from_secs(10)).await;
    let accent =
        b.run_js("return getComputedStyle(document.querySelector('header.top')).backgroundColor", json!([])).await;
    assert_eq!(accent, "rgb(122, 31, 162)", "the org's accent colour");

    // Add an endpoint; its secret is shown once.
    b.click_on("a[href$='/endpoints/new']").await;
    let field = b.find("input#url").await;
    b.type_into(&field, &r.url("/portal-hook")).await;
    b.click_on("form button.primary").await;
    b.wait_for_text("Copy the signing secret now", Duration::from_secs(10)).await;
    let secret = b.text_of("[data-testid=secret]").await.unwrap();
    assert!(secret.starts_with("whsec_"));
    r.set_secrets(&[&secret]);
    let (_, hooks) = s.api(reqwest::Method::GET, &admin, "/api/v1/webhooks", None).await;
    assert_eq!(hooks["data"][0]["url"], r.url("/portal-hook"));
    let width = b.run_js("return document.documentElement.scrollWidth <= window.innerWidth + 1", json!([])).await;
    assert_eq!(width, true, "no sideways scrolling in the frame at 390 px");
    b.screenshot("40-portal-endpoint-phone").await;

    // Send a test: the receiver's answer is shown, and it was signed.
    b.click_on("form[action$='/test'] button").await;
    b.wait_for_text("Test result", Duration::from_secs(30)).await;
    let result = b.text_of("[data-testid=test-result]").await.unwrap();
    assert!(result.contains("HTTP 200"), "{result}");
    let got = r.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].hex_valid && got[0].standard_valid, "signed with the secret shown");
    assert_eq!(got[0].header("x-webhook-event"), Some("webhook.test"));

    // A failing answer, then a retry from the delivery's page.
    r.set(Behaviour::Status(500));
    b.click_on("form[action$='/test'] button").await;
    b.wait_for_text("HTTP 500", Duration::from_secs(30)).await;
    r.set(Behaviour::Ok);
    b.click_on("table a[href*='/deliveries/']").await;
    b.wait_for_text("Attempt 1", Duration::from_secs(10)).await;
    assert!(b.page_text().await.contains("HTTP 500"));
    b.screenshot("41-portal-delivery-phone").await;
    b.click_on("form[action$='/retry'] button").await;
    b.wait_for_text("A new attempt was queued.", Duration::from_secs(10)).await;
    eventually(Duration::from_secs(20), "the retried test delivered", || async {
        (r.received().iter().filter(|g| g.answered == 200).count() == 2).then_some(())
    })
    .await;

    // The event catalogue with its schemas.
    b.click_on("a[href$='/event-types']").await;
    b.wait_for_text("new_lead", Duration::from_secs(10)).await;
    assert!(b.page_text().await.contains("\"email\""), "schemas are shown");

    // Another origin's frame is refused by the browser.
    open(&b, &foreign).await;
    let (href, text) = eventually(Duration::from_secs(10), "the refused frame to settle", || async {
        let v = b
            .run_js(
                "return [location.href, document.readyState, document.body ? document.body.innerText : '']",
                json!([]),
            )
            .await;
        let href = v[0].as_str().unwrap_or_default().to_owned();
        (v[1] == "complete" && href != "about:blank").then(|| (href, v[2].as_str().unwrap_or_default().to_owned()))
    })
    .await;
    assert!(!text.contains("Event types"), "a foreign origin shows nothing of the portal: {href}: {text}");
    b.leave_frames().await;
    assert!(b.page_text().await.contains("Host CRM"));

    // Revoked: the allowed origin's frame says the link is closed.
    let (st, _) = s.api(reqwest::Method::DELETE, &admin, &format!("/api/v1/portal-sessions/{link_id}"), None).await;
    assert_eq!(st, 204);
    open(&b, &host).await;
    b.wait_for_text("expired or was revoked", Duration::from_secs(10)).await;

    // A view link shows the endpoint and its log, and nothing to press.
    let (_, view) = link(&s, &admin, json!({"mode": "view"})).await;
    host.embed(&view);
    open(&b, &host).await;
    b.wait_for_text("Endpoints", Duration::from_secs(10)).await;
    b.click_on("table a[href*='/endpoints/']").await;
    b.wait_for_text("Recent deliveries", Duration::from_secs(10)).await;
    assert!(b.try_find("form").await.is_none(), "a view link has no forms");
    assert!(b.try_find("button").await.is_none(), "and no buttons");
    assert_eq!(b.text_of("[data-testid=mode]").await.as_deref(), Some("view"));
    b.screenshot("42-portal-view-phone").await;
}
