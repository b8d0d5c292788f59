//! Erasing one lead leaves nothing of it in any table, and every other lead as it was.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::receiver::{Behaviour, TestReceiver};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{wait_received, Stack};

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    row: String,
}

/// Every row of the tables that hold what was sent and answered, as text.
async fn dump(s: &Stack) -> String {
    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    let mut all = String::new();
    for table in
        ["events", "deliveries", "delivery_attempts", "dead_letters", "outbox", "audit_log", "delivery_retries"]
    {
        let rows: Vec<Row> = diesel::sql_query(format!("SELECT row_to_json(t)::text AS row FROM {table} t"))
            .load(&mut conn)
            .await
            .unwrap();
        for r in rows {
            all.push_str(table);
            all.push_str(": ");
            all.push_str(&r.row);
            all.push('\n');
        }
    }
    all
}

async fn send(s: &Stack, path: &str, idempotency: &str, body: Value) {
    let res = s
        .client
        .post(s.ingest.url(path))
        .bearer_auth(&s.key)
        .header("Idempotency-Key", idempotency)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{:?}", res.text().await);
}

#[tokio::test]
async fn erasing_a_lead_leaves_nothing_of_it_and_every_other_lead_untouched() {
    let s = Stack::start().await;
    // Receivers that echo what they were sent, as some do in their error
    // pages: one per lead, each endpoint filtered to its lead.
    let mut endpoints = Vec::new();
    let mut receivers = Vec::new();
    for (score, lead, email) in [(1, "lead_123", "ada.lovelace@example.com"), (2, "lead_456", "bob.smith@example.com")]
    {
        let r = TestReceiver::start().await;
        r.set(Behaviour::Raw {
            status: 422,
            body: format!("rejected {lead} <{email}>").into_bytes(),
            header: lead.as_bytes().to_vec(),
        });
        let filter = json!({"path": "/data/score", "op": "eq", "value": score});
        let extra = json!({"max_retries": 1, "retry_policy": {"initial_delay_ms": 100}, "filter": filter});
        endpoints.push(s.endpoint(&r, "/h", extra).await);
        receivers.push(r);
    }
    let ada = json!({"id": "lead_123", "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "phone": "+441234567890", "score": 1});
    let bob = json!({"id": "lead_456", "name": "Bob Smith", "email": "bob.smith@example.com", "score": 2});
    send(&s, "/api/v1/events/leads", "create-lead_123", ada.clone()).await;
    send(&s, "/api/v1/events/leads", "create-lead_456", bob.clone()).await;
    let mut update = ada.clone();
    update["changes"] = json!({"status": "won"});
    send(&s, "/api/v1/events/leads/updates", "update-lead_123", update).await;
    s.wait_status(&endpoints[0], 2, "dead_letter", Duration::from_secs(20)).await;
    s.wait_status(&endpoints[1], 1, "dead_letter", Duration::from_secs(20)).await;
    wait_received(&receivers[0], 4, Duration::from_secs(5)).await;
    wait_received(&receivers[1], 2, Duration::from_secs(5)).await;
    let before = dump(&s).await;
    assert!(before.contains("ada.lovelace@example.com") && before.contains("lead_123"), "the lead is there to erase");

    let (status, v) =
        s.control(Method::POST, "/api/v1/erasures", Some(json!({"path": "/id", "value": "lead_123"}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"events": 2, "attempts": 4, "dead_letters": 2}));

    let after = dump(&s).await;
    for trace in ["lead_123", "ada.lovelace", "Ada Lovelace", "+441234567890"] {
        let left: Vec<&str> = after.lines().filter(|l| l.contains(trace)).collect();
        assert!(left.is_empty(), "`{trace}` remains:\n{}", left.join("\n"));
    }
    // Counts and ids stay; the other lead is as it was, answers and all.
    assert_eq!(after.lines().filter(|l| l.starts_with("events: ")).count(), 3);
    assert_eq!(after.lines().filter(|l| l.starts_with("delivery_attempts: ")).count(), 6);
    assert_eq!(after.lines().filter(|l| l.starts_with("dead_letters: ")).count(), 3);
    let bob_rows = |text: &str| text.lines().filter(|l| l.contains("bob.smith")).count();

    assert_eq!(bob_rows(&after), bob_rows(&before), "bob's rows are untouched");
    let bobs_event = before.lines().find(|l| l.starts_with("events: ") && l.contains("lead_456")).unwrap();
    assert!(after.contains(bobs_event), "bob's event row is byte for byte the same");
    let (_, audit) = s.control(Method::GET, "/api/v1/audit-log?action=erasure.completed", None).await;
    assert_eq!(audit["data"][0]["details"]["events"], 2);

    // Again: nothing left to erase. A bad request names its field.
    let (_, v) = s.control(Method::POST, "/api/v1/erasures", Some(json!({"path": "/id", "value": "lead_123"}))).await;
    assert_eq!(v, json!({"events": 0, "attempts": 0, "dead_letters": 0}));
    for (body, field) in [
        (json!({"path": "id", "value": "x"}), "path"),
        (json!({"path": "/id", "value": null}), "value"),
        (json!({"path": "/id", "value": {"a": 1}}), "value"),
    ] {
        let (status, p) = s.control(Method::POST, "/api/v1/erasures", Some(body)).await;
        assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some(field)), "{p}");
    }
    // The idempotency key that named the lead is free: the same request is a new event.
    send(
        &s,
        "/api/v1/events/leads",
        "create-lead_123",
        json!({"id": "lead_789", "name": "C", "email": "c@example.com"}),
    )
    .await;
}
