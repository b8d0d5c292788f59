//! Every authenticated operation of both APIs, taken from the served OpenAPI
//! document (so a new route is covered without touching this file), called
//! with bad credentials, a lower role, an address outside the key's
//! allowlist, and another organisation's ids.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::{create_org, eventually, http, serve, TestEnv};
use reqwest::Method;
use serde_json::{json, Value};

struct Op {
    method: Method,
    path: String,
    scopes: Vec<String>,
}

fn operations() -> Vec<Op> {
    let spec = serde_json::to_value(hookline::platform_spec()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let Ok(method) = m.to_uppercase().parse::<Method>() else { continue };
            let security = op["security"].as_array().cloned().unwrap_or_default();
            if security.iter().any(|s| s.get("operator_token").is_some()) {
                continue;
            }
            let scopes = security
                .iter()
                .filter_map(|s| s["api_key"].as_array())
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            ops.push(Op { method, path: path.clone(), scopes });
        }
    }
    assert!(ops.len() >= 30, "the document lists every operation ({})", ops.len());
    ops
}

/// A body the operation accepts, so that what is tested is access, not validation.
fn body(method: &Method, path: &str, receiver: &str) -> Option<Value> {
    let b = match (method.as_str(), path) {
        ("POST", "/api/v1/keys") => json!({"name": "k", "role": "read_only"}),
        ("PATCH", "/api/v1/keys/{id}") => json!({"name": "renamed"}),
        ("POST", "/api/v1/keys/{id}/rotate") => json!({}),
        ("POST", "/api/v1/webhooks") | ("PUT", "/api/v1/webhooks/{id}") => json!({"url": receiver, "events": ["*"]}),
        ("PATCH", "/api/v1/webhooks/{id}") => json!({"description": "changed"}),
        ("POST", "/api/v1/webhooks/{id}/rotate-secret") => json!({}),
        ("POST", "/api/v1/webhooks/{id}/recover") => json!({"since": "2020-01-01T00:00:00Z"}),
        ("POST", "/api/v1/dead-letters/replay") => json!({}),
        ("POST", "/api/v1/portal-sessions") => json!({"mode": "view"}),
        ("POST", "/api/v1/webhooks/filter-preview") => json!({"filter": {"path": "/event", "op": "exists"}}),
        ("POST", "/api/v1/erasures") => json!({"path": "/id", "value": "lead_nobody"}),
        ("POST", "/api/v1/webhooks/{id}/backfill") => json!({"since": "2020-01-01T00:00:00Z"}),
        ("PUT", "/api/v1/alert-settings") => json!({}),
        ("POST", "/api/v1/event-types") => {
            json!({"name": "invoice.paid", "schema": {"type": "object"}})
        }
        ("POST", "/api/v1/events/leads") => json!({"id": "l1", "name": "Ada", "email": "ada@example.com"}),
        ("POST", "/api/v1/events/leads/updates") => json!({"id": "l1", "changes": {"status": "won"}}),
        ("POST", "/api/v1/events") => {
            json!({"event_type": "new_lead", "data": {"id": "l1", "name": "Ada", "email": "ada@example.com"}})
        }
        _ => return None,
    };
    Some(b)
}

struct World {
    base: String,
    env: TestEnv,
    admin: String,
    other_admin: String,
    /// The other organisation's ids, by the path they fill.
    other_ids: BTreeMap<&'static str, String>,
    receiver: String,
    _server: hookline_test_support::TestServer,
}

async fn call(w: &World, op: &Op, key: Option<&str>, ids: &BTreeMap<&'static str, String>) -> (u16, String) {
    let mut path = op.path.clone();
    for (pattern, id) in ids {
        if path.starts_with(pattern) {
            path = path.replace("{id}", id).replace("{name}", id).replace("{delivery_id}", id);
        }
    }
    let mut req = http().request(op.method.clone(), format!("{}{path}", w.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body(&op.method, &op.path, &w.receiver) {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

async fn post(base: &str, key: &str, path: &str, body: Value) -> Value {
    let res = http().post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let conns = env.connect(&[]).await;
    let (spec, ingest) = hookline::all_in_one(&conns);
    let server = serve(&conns.cancel, spec);
    hookline_ingest_api::relay::spawn(ingest);
    let base = server.addr.clone();
    let (_, admin) = create_org(&base, "Acme").await;
    let (_, other_admin) = create_org(&base, "Globex").await;
    let receiver = "http://127.0.0.1:9/hook".to_owned();
    // The other organisation's resources.
    let key = post(&base, &other_admin, "/api/v1/keys", json!({"name": "theirs", "role": "read_only"})).await;
    let hook = post(&base, &other_admin, "/api/v1/webhooks", json!({"url": receiver, "events": ["*"]})).await;
    post(&base, &other_admin, "/api/v1/event-types", json!({"name": "their.type", "schema": {"type": "object"}})).await;
    post(&base, &other_admin, "/api/v1/events/leads", json!({"id": "l", "name": "A", "email": "a@example.com"})).await;
    let delivery = eventually(Duration::from_secs(10), "their delivery", || async {
        let v: Value = http()
            .get(format!("{base}/api/v1/webhooks/deliveries"))
            .bearer_auth(&other_admin)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let mut other_ids = BTreeMap::new();
    other_ids.insert("/api/v1/keys/", key["id"].as_str().unwrap().to_owned());
    other_ids.insert("/api/v1/dead-letters/", delivery.clone());
    let link = post(&base, &other_admin, "/api/v1/portal-sessions", json!({"mode": "view"})).await;
    other_ids.insert("/api/v1/portal-sessions/", link["id"].as_str().unwrap().to_owned());
    other_ids.insert("/api/v1/webhooks/deliveries/", delivery);
    other_ids.insert("/api/v1/webhooks/{id}", hook["id"].as_str().unwrap().to_owned());
    other_ids.insert("/api/v1/event-types/", "their.type".to_owned());
    // No alert of theirs exists yet: a well-formed id that is not ours is the same case.
    other_ids.insert("/api/v1/alerts/", hookline_domain::id::AlertId::new().to_string());
    World { base, env, admin, other_admin, other_ids, receiver, _server: server }
}

#[tokio::test]
async fn every_operation_refuses_bad_keys_lower_roles_foreign_addresses_and_other_orgs_ids() {
    let w = world().await;
    let ops = operations();

    // Keys that must not work.
    let make = |role: &str, extra: Value| {
        let mut b = json!({"name": format!("{role} key"), "role": role});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let revoked = post(&w.base, &w.admin, "/api/v1/keys", make("admin", json!({}))).await;
    let res = http()
        .delete(format!("{}/api/v1/keys/{}", w.base, revoked["id"].as_str().unwrap()))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let expired = post(&w.base, &w.admin, "/api/v1/keys", make("admin", json!({}))).await;
    let mut conn = AsyncPgConnection::establish(&w.env.database_url()).await.unwrap();
    let expired_id = expired["id"].as_str().unwrap().trim_start_matches("key_").to_owned();
    diesel::sql_query(format!(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = '{}'",
        uuid::Uuid::parse_str(&expired_id).unwrap()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut broken = w.admin.clone();
    let last = broken.pop().unwrap();
    broken.push(if last == 'a' { 'b' } else { 'a' });
    let fenced = post(
        &w.base,
        &w.admin,
        "/api/v1/keys",
        make("admin", json!({"allowed_ips": ["203.0.113.0/24", "2001:db8::/32"]})),
    )
    .await;
    let read_only = post(&w.base, &w.admin, "/api/v1/keys", make("read_only", json!({}))).await;
    let read_write = post(&w.base, &w.admin, "/api/v1/keys", make("read_write", json!({}))).await;
    let role_scopes = |role: hookline_domain::scope::Role| -> Vec<String> {
        role.scopes().iter().map(|s| s.as_str().to_owned()).collect()
    };
    let none = BTreeMap::new();
    let mut checked = 0;
    for op in &ops {
        let what = format!("{} {}", op.method, op.path);
        for (label, key) in [
            ("no key", None),
            ("malformed key", Some("sk_live_short")),
            ("checksum-broken key", Some(broken.as_str())),
            ("revoked key", revoked["key"].as_str()),
            ("expired key", expired["key"].as_str()),
        ] {
            let (status, body) = call(&w, op, key, &none).await;
            assert_eq!(status, 401, "{what} with a {label}: {body}");
        }
        let (status, body) = call(&w, op, fenced["key"].as_str(), &none).await;
        assert_eq!(status, 403, "{what} from outside the allowlist: {body}");
        for (role, key) in [
            (hookline_domain::scope::Role::ReadOnly, &read_only),
            (hookline_domain::scope::Role::ReadWrite, &read_write),
        ] {
            let held = role_scopes(role);
            if op.scopes.iter().any(|s| !held.contains(s)) {
                let (status, body) = call(&w, op, key["key"].as_str(), &none).await;
                assert_eq!(status, 403, "{what} with a {} key: {body}", role.as_str());
                checked += 1;
            }
        }
        if op.path.contains('{') {
            let (status, body) = call(&w, op, Some(&w.admin), &w.other_ids).await;
            assert_eq!(status, 404, "{what} with another organisation's id: {body}");
        }
    }
    assert!(checked >= 20, "lower roles were refused on {checked} operations");

    // Lists never show another organisation's rows.
    for path in [
        "/api/v1/keys",
        "/api/v1/webhooks",
        "/api/v1/webhooks/deliveries",
        "/api/v1/event-types",
        "/api/v1/audit-log",
        "/api/v1/dead-letters",
    ] {
        let text =
            http().get(format!("{}{path}", w.base)).bearer_auth(&w.admin).send().await.unwrap().text().await.unwrap();
        for id in w.other_ids.values() {
            assert!(!text.contains(id.as_str()), "{path} shows another organisation's {id}");
        }
    }
    // And their resources are untouched by all of the above.
    let theirs: Value = http()
        .get(format!("{}/api/v1/webhooks/{}", w.base, w.other_ids["/api/v1/webhooks/{id}"]))
        .bearer_auth(&w.other_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["is_active"], true);
    assert!(theirs["description"].is_null(), "{theirs}");
}
