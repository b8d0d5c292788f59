//! The admin UI, end to end in a real headless Chromium against the whole
//! stack (both APIs, the relay, a delivery worker and the alerting service),
//! plus the refusals a browser cannot easily show: forged and cross-tenant
//! requests, sent with a real session cookie. Screenshots of each page go to
//! `$CARGO_TARGET_DIR/admin-screenshots` (or `HOOKLINE_SCREENSHOT_DIR`).

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_service_kit::deps::Connections;
use hookline_test_support::browser::Browser;
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{create_org, eventually, http, serve, TestEnv};
use serde_json::{json, Value};

pub(crate) struct Stack {
    env: TestEnv,
    conns: Connections,
    pub(crate) url: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.conns.cancel.cancel();
    }
}

pub(crate) async fn stack() -> Stack {
    let env = TestEnv::new().await;
    let conns = env.connect(&[("HOOKLINE_ALERT_RENOTIFY_SECS", "1")]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
    hookline_delivery_worker::start(hookline_delivery_worker::state::WorkerState::new(&conns)).unwrap();
    hookline_alerting::start(&conns).unwrap();
    Stack { url: server.addr.clone(), conns, env }
}

impl Stack {
    /// A new organisation; answers its id and admin key.
    pub(crate) async fn org(&self, name: &str) -> (String, String) {
        create_org(&self.url, name).await
    }

    pub(crate) async fn api(
        &self,
        method: reqwest::Method,
        key: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http().request(method, format!("{}{path}", self.url)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn key(&self, admin: &str, role: &str) -> String {
        let (st, v) =
            self.api(reqwest::Method::POST, admin, "/api/v1/keys", Some(json!({"name": role, "role": role}))).await;
        assert_eq!(st, 201, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    async fn webhook(&self, key: &str, url: &str, extra: Value) -> (String, String) {
        let mut body = json!({"url": url, "events": ["*"]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (st, v) = self.api(reqwest::Method::POST, key, "/api/v1/webhooks", Some(body)).await;
        assert_eq!(st, 201, "{v}");
        (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    }
}

/// A session driven without a browser: the cookie and CSRF token a real
/// sign-in hands out.
struct Session {
    base: String,
    cookie: String,
    csrf: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap()[name.len() + 1..].to_owned())
}

fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

async fn sign_in(base: &str, key: &str) -> Session {
    let c = no_redirects();
    let form = c.get(format!("{base}/admin/login")).send().await.unwrap();
    let nonce = cookie_value(&form, "hookline_login").expect("login cookie");
    let res = c
        .post(format!("{base}/admin/login"))
        .header("cookie", format!("hookline_login={nonce}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf_token", nonce.as_str()), ("api_key", key)]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let cookie = cookie_value(&res, "hookline_session").expect("session cookie");
    let mut s = Session { base: base.to_owned(), cookie, csrf: String::new() };
    let page = s.get("/admin").await.1;
    s.csrf = between(&page, r#"<meta name="csrf-token" content=""#, "\"").expect("csrf meta").to_owned();
    s
}

impl Session {
    async fn get(&self, path: &str) -> (u16, String) {
        let res = no_redirects()
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("hookline_session={}", self.cookie))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)], with_csrf: bool) -> (u16, String) {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        if with_csrf {
            f.push(("csrf_token", &self.csrf));
        }
        let res = no_redirects()
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("hookline_session={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&f))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
}

async fn sign_in_browser(b: &Browser, base: &str, key: &str) {
    b.goto(&format!("{base}/admin")).await;
    let input = b.find("#api_key").await;
    b.type_into(&input, key).await;
    b.click_on("form button[type=submit]").await;
    b.wait_for_text("Last 24 hours", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_admin_manages_keys_webhooks_deliveries_and_alerts_in_the_browser() {
    let s = stack().await;
    let (_, admin) = s.org("Acme").await;
    let r = TestReceiver::start().await;
    let b = Browser::start(1280, 1000).await;

    // Signing in.
    b.goto(&format!("{}/admin", s.url)).await;
    assert!(b.url().await.ends_with("/admin/login"), "an anonymous visit goes to the sign-in page");
    b.screenshot("01-sign-in").await;
    let input = b.find("#api_key").await;
    b.type_into(&input, &admin).await;
    b.click_on("form button[type=submit]").await;
    b.wait_for_text("Last 24 hours", Duration::from_secs(10)).await;
    b.screenshot("02-dashboard").await;
    let cookies = b.cookies().await;
    let session = cookies.iter().find(|c| c["name"] == "hookline_session").expect("session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/admin");
    assert!(!b.source().await.contains(&admin), "the key never comes back in a page");

    // An API key, its secret shown once.
    b.goto(&format!("{}/admin/keys", s.url)).await;
    b.type_into(&b.find("#name").await, "Reporting").await;
    b.run_js("document.getElementById('role').value = 'read_only'", json!([])).await;
    b.type_into(&b.find("#allowed_ips").await, "127.0.0.1").await;
    b.click_on("input[name=scopes][value='deliveries:read']").await;
    b.click_on("input[name=scopes][value='keys:read']").await;
    b.click_on("form[action='/admin/keys'] button[type=submit]").await;
    b.wait_for_text("Key created", Duration::from_secs(10)).await;
    let secret = b.text(&b.find("[data-testid=secret]").await).await;
    assert!(secret.starts_with("sk_"), "{secret}");
    b.screenshot("03-key-created").await;
    let (st, me) = s.api(reqwest::Method::GET, &secret, "/api/v1/me", None).await;
    assert_eq!(st, 200, "the shown key works: {me}");
    assert_eq!(me["role"], "read_only");
    assert_eq!(me["scopes"], json!(["keys:read", "deliveries:read"]), "narrowed to the ticked scopes");
    b.goto(&format!("{}/admin/keys", s.url)).await;
    b.wait_for_text("Reporting", Duration::from_secs(5)).await;
    assert!(!b.source().await.contains(&secret), "the secret is not shown again");
    b.screenshot("04-keys").await;

    // A webhook pointing at the test receiver.
    b.goto(&format!("{}/admin/webhooks/new", s.url)).await;
    b.type_into(&b.find("#url").await, &r.url("/hook")).await;
    b.type_into(&b.find("#description").await, "CRM receiver").await;
    b.click_on("input[name=events][value='*']").await;
    b.type_into(&b.find("[id='max_retries']").await, "0").await;
    b.screenshot("05-new-webhook").await;
    b.click_on("form.webhook button[type=submit]").await;
    b.wait_for_text("Webhook created", Duration::from_secs(10)).await;
    let whsec = b.text(&b.find("[data-testid=secret]").await).await;
    assert!(whsec.starts_with("whsec_"), "{whsec}");
    r.set_secrets(&[&whsec]);
    b.click_on("main a[href^='/admin/webhooks/ep_']").await;
    b.wait_for_text("Last 24 hours", Duration::from_secs(10)).await;
    let webhook_url = b.url().await;
    let webhook_id = webhook_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    b.screenshot("06-webhook").await;

    // A delivery appears in the open list without a reload.
    b.goto(&format!("{}/admin/deliveries", s.url)).await;
    b.wait_for_text("No deliveries match.", Duration::from_secs(5)).await;
    b.run_js("window.hooklineMarker = 'same page'", json!([])).await;
    let (st, _) = s.api(reqwest::Method::POST, &admin, &format!("/api/v1/webhooks/{webhook_id}/test"), None).await;
    assert_eq!(st, 202);
    let row = eventually(Duration::from_secs(20), "the delivery to show up delivered", || async {
        let text = b.text_of("#deliveries tr[data-delivery]").await?;
        text.contains("delivered").then_some(text)
    })
    .await;
    assert!(row.contains("webhook.test"), "{row}");
    assert_eq!(b.run_js("return window.hooklineMarker", json!([])).await, "same page", "the list updated in place");
    assert_eq!(r.count(), 1, "the receiver got the test event");
    b.screenshot("07-deliveries-live").await;

    // Alert on the first failure.
    b.goto(&format!("{}/admin/alerts", s.url)).await;
    b.type_into(&b.find("#endpoint_failing_threshold").await, "1").await;
    b.click_on("form[action='/admin/alerts/settings'] button[type=submit]").await;
    b.wait_for_text("The alert settings were saved.", Duration::from_secs(10)).await;

    // The receiver fails; the test event from the UI is dead-lettered, shown live.
    r.set(Behaviour::Status(500));
    b.goto(&webhook_url).await;
    b.click_on(&format!("form[action='/admin/webhooks/{webhook_id}/test'] button")).await;
    b.wait_for_text("A test event was queued.", Duration::from_secs(10)).await;
    b.wait_for_text("dead_letter", Duration::from_secs(20)).await;
    b.wait_for_text("HTTP 500", Duration::from_secs(10)).await;
    b.screenshot("08-dead-letter").await;
    let delivery_url = b.url().await;

    // The dead-letter view and the alert it raised, acknowledged.
    b.goto(&format!("{}/admin/dead-letters", s.url)).await;
    b.screenshot("09-dead-letters").await;
    eventually(Duration::from_secs(20), "an open alert", || async {
        b.goto(&format!("{}/admin/alerts?state=open", s.url)).await;
        b.try_find("form[action$='/acknowledge'] button").await
    })
    .await;
    b.screenshot("10-alerts").await;
    b.click_on("form[action$='/acknowledge'] button").await;
    b.wait_for_text("The alert was acknowledged.", Duration::from_secs(10)).await;
    let (_, alerts) = s.api(reqwest::Method::GET, &admin, "/api/v1/alerts?state=acknowledged", None).await;
    assert!(!alerts["data"].as_array().unwrap().is_empty(), "{alerts}");

    // Fixed, and retried from the UI.
    r.set(Behaviour::Ok);
    b.goto(&delivery_url).await;
    b.click_on("form[action$='/retry'] button").await;
    b.wait_for_text("A new attempt was queued.", Duration::from_secs(10)).await;
    eventually(Duration::from_secs(20), "the retry to be delivered", || async {
        (b.text_of("[data-testid=delivery-status]").await? == "delivered").then_some(())
    })
    .await;
    assert_eq!(r.count(), 3, "first test, failed attempt, successful retry");
    b.screenshot("11-retried").await;

    // Audit log, then revoking the reporting key with its confirmation.
    b.goto(&format!("{}/admin/audit", s.url)).await;
    b.wait_for_text("alert.acknowledged", Duration::from_secs(5)).await;
    b.screenshot("12-audit").await;
    b.goto(&format!("{}/admin/keys", s.url)).await;
    b.click_on("main table a[href^='/admin/keys/key_']").await;
    b.wait_for_text("Limits and access", Duration::from_secs(5)).await;
    b.screenshot("13-key").await;
    b.click_on("form[action$='/revoke'] button").await;
    b.accept_dialog().await;
    b.wait_for_text("The key was revoked.", Duration::from_secs(10)).await;
    let (st, _) = s.api(reqwest::Method::GET, &secret, "/api/v1/me", None).await;
    assert_eq!(st, 401, "the revoked key is refused");

    // A phone-width window still has every section reachable.
    b.run_js("window.resizeTo && window.resizeTo(390, 844)", json!([])).await;

    // Signing out.
    b.click_on("header form[action='/admin/logout'] button").await;
    b.wait_for_text("You are signed out.", Duration::from_secs(10)).await;
    b.screenshot("14-signed-out").await;
    b.goto(&format!("{}/admin/keys", s.url)).await;
    assert!(b.url().await.ends_with("/admin/login"), "signed out means signed out");
}

#[tokio::test]
async fn tenant_data_shows_as_text_and_a_phone_width_window_works() {
    let s = stack().await;
    let (_, admin) = s.org("Acme").await;
    let r = TestReceiver::start().await;
    let (id, whsec) = s.webhook(&admin, &r.url("/hook"), json!({"description": "<img src=x onerror=alert(2)>"})).await;
    r.set_secrets(&[&whsec]);
    let (st, v) = s
        .api(
            reqwest::Method::POST,
            &admin,
            "/api/v1/events/leads",
            Some(json!({"id": "l1", "name": "<script>alert(1)</script>", "email": "x@example.com"})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let b = Browser::start(390, 844).await;
    sign_in_browser(&b, &s.url, &admin).await;
    b.screenshot("20-dashboard-phone").await;
    let (_, list) =
        s.api(reqwest::Method::GET, &admin, &format!("/api/v1/webhooks/deliveries?webhook_id={id}"), None).await;
    let delivery = list["data"][0]["id"].as_str().unwrap().to_owned();
    b.goto(&format!("{}/admin/deliveries/{delivery}", s.url)).await;
    b.wait_for_text("<script>alert(1)</script>", Duration::from_secs(10)).await;
    b.screenshot("21-delivery-phone").await;
    b.goto(&format!("{}/admin/webhooks", s.url)).await;
    b.wait_for_text("<img src=x onerror=alert(2)>", Duration::from_secs(10)).await;
    let scripts = b.run_js("return document.querySelectorAll('main script, main img').length", json!([])).await;
    assert_eq!(scripts, 0, "tenant data never becomes markup");
    let width = b.run_js("return document.documentElement.scrollWidth <= window.innerWidth + 1", json!([])).await;
    assert_eq!(width, true, "no sideways scrolling of the page at phone width");
    b.screenshot("22-webhooks-phone").await;
    b.goto(&format!("{}/admin/webhooks/{id}", s.url)).await;
    assert_eq!(b.text_of("[data-testid=flow]").await.as_deref(), Some("normal"), "flow control shows its state");
    b.click_on("form[action$='/delete'] button").await;
    b.accept_dialog().await;
    b.wait_for_text("The webhook was deleted.", Duration::from_secs(10)).await;
    let (st, _) = s.api(reqwest::Method::GET, &admin, &format!("/api/v1/webhooks/{id}"), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn forged_cross_tenant_and_read_only_requests_are_refused() {
    let s = stack().await;
    let (_, admin) = s.org("Acme").await;
    let (_, other_admin) = s.org("Globex").await;
    let r = TestReceiver::start().await;
    let (mine, _) = s.webhook(&admin, &r.url("/a"), json!({})).await;
    let (theirs, _) = s.webhook(&other_admin, &r.url("/b"), json!({})).await;
    let (_, their_keys) = s.api(reqwest::Method::GET, &other_admin, "/api/v1/keys", None).await;
    let their_key = their_keys["data"][0]["id"].as_str().unwrap().to_owned();

    let a = sign_in(&s.url, &admin).await;

    // No CSRF token, or a wrong one: refused, nothing changed.
    let (st, _) = a.post(&format!("/admin/webhooks/{mine}/disable"), &[], false).await;
    assert_eq!(st, 403);
    let (st, _) = a.post(&format!("/admin/webhooks/{mine}/disable"), &[("csrf_token", "forged")], false).await;
    assert_eq!(st, 403);
    let (_, w) = s.api(reqwest::Method::GET, &admin, &format!("/api/v1/webhooks/{mine}"), None).await;
    assert_eq!(w["is_active"], true, "a refused form changes nothing");
    let (st, _) = a.post("/admin/keys", &[("name", "x"), ("role", "admin")], false).await;
    assert_eq!(st, 403);
    let (st, _) = a.post(&format!("/admin/webhooks/{mine}/disable"), &[], true).await;
    assert_eq!(st, 303, "the same form with its token works");

    // Another organisation's ids are not found, to read or to change.
    for path in [format!("/admin/webhooks/{theirs}"), format!("/admin/keys/{their_key}")] {
        let (st, body) = a.get(&path).await;
        assert_eq!(st, 404, "{path}: {body}");
    }
    let (st, _) = a.post(&format!("/admin/keys/{their_key}/revoke"), &[], true).await;
    assert_eq!(st, 404);
    let (st, _) = a.post(&format!("/admin/webhooks/{theirs}/test"), &[], true).await;
    assert_eq!(st, 404);
    let (_, k) = s.api(reqwest::Method::GET, &other_admin, &format!("/api/v1/keys/{their_key}"), None).await;
    assert!(k["revoked_at"].is_null(), "the other organisation's key is untouched");

    // A read_only session sees no write controls and its forged posts fail.
    let viewer_key = s.key(&admin, "read_only").await;
    let v = sign_in(&s.url, &viewer_key).await;
    for path in ["/admin", "/admin/keys", &format!("/admin/webhooks/{mine}"), "/admin/alerts", "/admin/deliveries"] {
        let (st, body) = v.get(path).await;
        assert_eq!(st, 200, "{path}");
        let forms = body.matches("method=\"post\"").count();
        assert_eq!(forms, 1, "{path}: only the sign-out form, got {forms}");
    }
    let (st, _) = v.post("/admin/keys", &[("name", "sneaky"), ("role", "admin")], true).await;
    assert_eq!(st, 403);
    let (st, _) = v.post(&format!("/admin/webhooks/{mine}/enable"), &[], true).await;
    assert_eq!(st, 403);
    let (st, _) = v.post("/admin/alerts/settings", &[("endpoint_failing_threshold", "1")], true).await;
    assert_eq!(st, 403);
    let (_, keys) = s.api(reqwest::Method::GET, &admin, "/api/v1/keys", None).await;
    assert!(keys["data"].as_array().unwrap().iter().all(|k| k["name"] != "sneaky"));

    // A read_write key cannot sign in at all.
    let writer = s.key(&admin, "read_write").await;
    let c = no_redirects();
    let form = c.get(format!("{}/admin/login", s.url)).send().await.unwrap();
    let nonce = cookie_value(&form, "hookline_login").unwrap();
    let res = c
        .post(format!("{}/admin/login", s.url))
        .header("cookie", format!("hookline_login={nonce}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf_token", nonce.as_str()), ("api_key", writer.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(cookie_value(&res, "hookline_session").is_none());
}

#[tokio::test]
async fn sessions_end_on_sign_out_idle_timeout_and_key_revocation() {
    let s = stack().await;
    let (_, admin) = s.org("Acme").await;

    // A session token planted before sign-in is never accepted (no fixation),
    // and sign-in always mints a new one.
    let c = no_redirects();
    let planted = "planted-by-an-attacker";
    let res =
        c.get(format!("{}/admin", s.url)).header("cookie", format!("hookline_session={planted}")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let one = sign_in(&s.url, &admin).await;
    let two = sign_in(&s.url, &admin).await;
    assert_ne!(one.cookie, two.cookie);
    assert_ne!(one.cookie, planted);
    assert_ne!(one.csrf, two.csrf, "each session has its own CSRF token");

    // The login form itself needs its token.
    let res = c
        .post(format!("{}/admin/login", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("api_key", admin.as_str()), ("csrf_token", "guess")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Sign-out ends only that session.
    let (st, _) = one.post("/admin/logout", &[], true).await;
    assert_eq!(st, 303);
    assert_eq!(one.get("/admin").await.0, 303);
    assert_eq!(two.get("/admin").await.0, 200);

    // Idle past the timeout: refused.
    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    diesel::sql_query("UPDATE admin_sessions SET last_seen_at = now() - interval '2 hours'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(two.get("/admin").await.0, 303);

    // Revoking the key ends its sessions at once.
    let viewer = s.key(&admin, "admin").await;
    let v = sign_in(&s.url, &viewer).await;
    assert_eq!(v.get("/admin/keys").await.0, 200);
    let (_, me) = s.api(reqwest::Method::GET, &viewer, "/api/v1/me", None).await;
    let id = me["key_id"].as_str().unwrap().to_owned();
    let (st, _) = s.api(reqwest::Method::DELETE, &admin, &format!("/api/v1/keys/{id}"), None).await;
    assert_eq!(st, 204);
    assert_eq!(v.get("/admin/keys").await.0, 303);

    // Only hashes are stored.
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        token_hash: Vec<u8>,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT token_hash FROM admin_sessions").load(&mut conn).await.unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r.token_hash.len(), 32);
        for token in [&one.cookie, &two.cookie, &v.cookie] {
            assert!(!r.token_hash.windows(token.len().min(32)).any(|w| w == &token.as_bytes()[..token.len().min(32)]));
        }
    }

    // Security headers on every admin page.
    let res = c.get(format!("{}/admin/login", s.url)).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn dead_letters_are_resolved_and_replayed_from_the_admin_ui() {
    let s = stack().await;
    let (_, admin) = s.org("Acme").await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::Status(500));
    let (id, whsec) = s.webhook(&admin, &r.url("/hook"), json!({"max_retries": 0})).await;
    r.set_secrets(&[&whsec]);
    for lead in ["l1", "l2"] {
        let (st, _) = s
            .api(
                reqwest::Method::POST,
                &admin,
                "/api/v1/events/leads",
                Some(json!({"id": lead, "name": "Ada", "email": "ada@example.com"})),
            )
            .await;
        assert_eq!(st, 202);
    }
    let dead: Vec<String> = eventually(Duration::from_secs(20), "two dead letters", || async {
        let (_, v) = s.api(reqwest::Method::GET, &admin, "/api/v1/dead-letters", None).await;
        let ids: Vec<String> =
            v["data"].as_array()?.iter().map(|d| d["delivery_id"].as_str().unwrap().to_owned()).collect();
        (ids.len() == 2).then_some(ids)
    })
    .await;
    let a = sign_in(&s.url, &admin).await;
    let (st, page) = a.get("/admin/dead-letters").await;
    assert_eq!(st, 200);
    assert!(dead.iter().all(|d| page.contains(d.as_str())), "both are listed as open");
    // Forms need their CSRF token.
    let (st, _) = a.post(&format!("/admin/dead-letters/{}/resolve", dead[0]), &[], false).await;
    assert_eq!(st, 403);
    let (st, _) = a.post(&format!("/admin/dead-letters/{}/resolve", dead[0]), &[], true).await;
    assert_eq!(st, 303);
    let (_, open) = a.get("/admin/dead-letters").await;
    assert!(!open.contains(dead[0].as_str()) && open.contains(dead[1].as_str()));
    let (_, resolved) = a.get("/admin/dead-letters?show=resolved").await;
    assert!(resolved.contains(dead[0].as_str()) && !resolved.contains(dead[1].as_str()));
    // Replaying every open one queues only the other, which now succeeds.
    r.set(Behaviour::Ok);
    let (st, _) = a.post("/admin/dead-letters/replay", &[("webhook_id", id.as_str())], true).await;
    assert_eq!(st, 303);
    eventually(Duration::from_secs(60), "the replayed one delivered", || async {
        let (_, v) =
            s.api(reqwest::Method::GET, &admin, &format!("/api/v1/webhooks/deliveries/{}", dead[1]), None).await;
        (v["status"] == "delivered").then_some(())
    })
    .await;
    let (_, v) = s.api(reqwest::Method::GET, &admin, &format!("/api/v1/webhooks/deliveries/{}", dead[0]), None).await;
    assert_eq!(v["status"], "dead_letter", "a resolved one stays as it was");
}
