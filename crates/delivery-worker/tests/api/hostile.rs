//! What a tenant or a receiver sends never stops a delivery from reaching a
//! final state, and never costs another tenant's deliveries.

use std::time::Duration;

use hookline_test_support::receiver::{Behaviour, TestReceiver};
use hookline_test_support::{create_org, eventually};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::helpers::{wait_received, Stack};

#[tokio::test]
async fn a_receiver_answering_nul_and_broken_bytes_still_settles_the_delivery() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let mut body = b"{\"ok\":true}\0\xff\xfe".to_vec();
    body.extend((0u8..=255).cycle().take(10_000));
    // A NUL in a header is a protocol error hyper refuses: bytes above 0x7f are not.
    r.set(Behaviour::Raw { status: 200, body, header: b"a\xffb\x80".to_vec() });
    let ep = s.endpoint(&r, "/hook", json!({})).await;
    s.send_lead("lead_nul").await;
    let d = s.wait_status(&ep, 1, "delivered", Duration::from_secs(20)).await;
    assert_eq!(d[0]["attempts"], 1, "{}", d[0]);
    assert_eq!(r.count(), 1, "delivered once, not retried");
    let (_, detail) =
        s.control(Method::GET, &format!("/api/v1/webhooks/deliveries/{}", d[0]["id"].as_str().unwrap()), None).await;
    let attempt = &detail["attempt_log"][0];
    assert_eq!(attempt["status_code"], 200);
    let stored = attempt["response_body"].as_str().unwrap();
    assert!(stored.starts_with("{\"ok\":true}\u{FFFD}"), "{stored:.40}");
    assert!(!stored.contains('\0'));
    assert!(stored.len() <= 4096, "capped: {}", stored.len());
    let header = attempt["response_headers"]["x-raw"].as_str().unwrap();
    assert!(header.starts_with('a') && header.contains('\u{FFFD}'), "{header}");
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", " ", "\"", "\\", "\u{0}", "\u{1}", "\u{7f}", "é", "日本", "😀", "\u{FFFD}", "\n", "/", "'",
            "%00", "\\u0000",
        ];
        (0..self.below(6)).map(|_| PIECES[self.below(PIECES.len() as u64) as usize]).collect()
    }

    fn value(&mut self, depth: u32) -> Value {
        match if depth > 3 { self.below(5) } else { self.below(7) } {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 => json!((self.next() % 1_000_000) as f64 / 7.0),
            4 => Value::String(self.string()),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(self.string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Any document the ingest API accepts is stored and delivered byte for
/// byte in meaning; one it cannot store is a 422, never a 500, and never
/// fails the documents written beside it.
#[tokio::test]
async fn any_accepted_document_is_stored_and_delivered_whatever_the_receiver_answers() {
    let s = Stack::start().await;
    let (status, v) =
        s.control(Method::POST, "/api/v1/event-types", Some(json!({"name": "anything", "schema": {}}))).await;
    assert_eq!(status, 201, "{v}");
    let r = TestReceiver::start().await;
    r.set(Behaviour::Raw { status: 200, body: b"\0\xc3\x28 \xf0\x28\x8c\xbc".to_vec(), header: b"\xfe".to_vec() });
    let ep = s.endpoint(&r, "/hook", json!({"events": ["anything"]})).await;
    let mut g = Gen(0x5eed_1234_abcd_ef01);
    let documents: Vec<Value> = (0..60).map(|_| g.value(0)).collect();
    let sends = documents.iter().map(|data| {
        s.client
            .post(s.ingest.url("/api/v1/events"))
            .bearer_auth(&s.key)
            .json(&json!({"event_type": "anything", "data": data}))
            .send()
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut accepted = Vec::new();
    for (data, res) in documents.iter().zip(answers) {
        let res = res.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        if has_nul(data) {
            assert_eq!(status, 422, "{data} -> {body}");
            assert!(body["errors"][0]["field"].as_str().unwrap().starts_with("data"), "{body}");
        } else {
            assert_eq!(status, 202, "{data} -> {body}");
            accepted.push(data.clone());
        }
    }
    assert!(
        accepted.len() >= 20 && accepted.len() < documents.len(),
        "the sample mixes both kinds: {}",
        accepted.len()
    );
    s.wait_status(&ep, accepted.len(), "delivered", Duration::from_secs(30)).await;
    let got = wait_received(&r, accepted.len(), Duration::from_secs(5)).await;
    let mut delivered: Vec<String> = got.iter().map(|g| g.json()["data"].to_string()).collect();
    let mut expected: Vec<String> = accepted.iter().map(Value::to_string).collect();
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected);
}

#[tokio::test]
async fn one_orgs_hanging_endpoints_leave_another_orgs_deliveries_on_time() {
    // Eight slots in the worker, four per endpoint, four per organisation.
    let s = Stack::start_with(&[
        ("HOOKLINE_WORKER_CONCURRENCY", "8"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_ORG_CONCURRENCY", "4"),
    ])
    .await;
    // Four endpoints that accept and never answer could hold 16 requests.
    let hanging = TestReceiver::start().await;
    hanging.set(Behaviour::Hang);
    for i in 0..4 {
        s.endpoint(&hanging, &format!("/hang{i}"), json!({"timeout": 30})).await;
    }
    for i in 0..10 {
        s.send_lead(&format!("stuck{i}")).await;
    }
    eventually(Duration::from_secs(15), "the hanging org to hold its share", || async {
        (hanging.count() >= 4).then_some(())
    })
    .await;

    let (_, other_key) = create_org(&s.control.addr, "Other").await;
    let healthy = TestReceiver::start().await;
    let res = s
        .client
        .post(s.control.url("/api/v1/webhooks"))
        .bearer_auth(&other_key)
        .json(&json!({"url": healthy.url("/hook"), "events": ["new_lead"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    healthy.set_secrets(&[created["secret"].as_str().unwrap()]);
    for i in 0..10 {
        let res = s
            .client
            .post(s.ingest.url("/api/v1/events/leads"))
            .bearer_auth(&other_key)
            .json(&json!({"id": format!("fine{i}"), "name": "Ada", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    // The hanging requests time out after 30 s: the other org's deliveries
    // must not wait for them.
    wait_received(&healthy, 10, Duration::from_secs(15)).await;
    assert!(hanging.count() <= 4, "the org's share holds: {} requests in flight", hanging.count());
}
