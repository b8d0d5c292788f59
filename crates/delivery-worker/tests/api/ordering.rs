//! Ordered delivery: one delivery out per key value, in ingest order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hookline_test_support::eventually;
use hookline_test_support::receiver::{Behaviour, Received, TestReceiver};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::Stack;

/// Sends one lead event whose data carries `seq` and, when given, `mark`; returns its event id.
async fn send(s: &Stack, lead: &str, seq: usize, mark: &str) -> String {
    let res = s
        .client
        .post(s.ingest.url("/api/v1/events/leads"))
        .bearer_auth(&s.key)
        .json(&json!({"id": lead, "name": "Ada", "email": "ada@example.com", "seq": seq, "mark": mark}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned()
}

fn lead_and_seq(r: &Received) -> (String, u64) {
    let body = r.json();
    (body["data"]["id"].as_str().unwrap().to_owned(), body["data"]["seq"].as_u64().unwrap())
}

/// Per lead, the `seq` of each request in the order they arrived, with when.
fn arrivals(received: &[Received], path: &str) -> BTreeMap<String, Vec<(u64, std::time::Instant, u16)>> {
    let mut by_lead: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in received.iter().filter(|r| r.path == path) {
        let (lead, seq) = lead_and_seq(r);
        by_lead.entry(lead).or_default().push((seq, r.at, r.answered));
    }
    by_lead
}

/// Statuses of an endpoint's deliveries by event id.
async fn statuses(s: &Stack, webhook: &str) -> HashMap<String, String> {
    s.deliveries(&format!("webhook_id={webhook}"))
        .await
        .into_iter()
        .map(|d| (d["event_id"].as_str().unwrap().to_owned(), d["status"].as_str().unwrap().to_owned()))
        .collect()
}

async fn wait_statuses(s: &Stack, webhook: &str, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want.iter().map(|(e, st)| (e.to_string(), st.to_string())).collect();
    eventually(Duration::from_secs(30), &format!("deliveries to be {want:?}"), || async {
        let got = statuses(s, webhook).await;
        want.iter().all(|(e, st)| got.get(e) == Some(st)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deliveries_sharing_a_key_go_out_one_at_a_time_in_ingest_order_and_other_keys_in_parallel() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let delay = Duration::from_millis(30);
    r.set(Behaviour::Flaky { percent: 20, delay });
    let retry = json!({"initial_delay_ms": 100, "multiplier": 1.0, "max_delay_ms": 100});
    let ep =
        s.endpoint(&r, "/ordered", json!({"ordering": {"key": "/id"}, "max_retries": 20, "retry_policy": retry})).await;
    let (status, v) = s.control(Method::GET, &format!("/api/v1/webhooks/{ep}"), None).await;
    assert_eq!((status, &v["ordering"]), (200, &json!({"key": "/id", "on_dead_letter": "skip"})));

    let (leads, per_lead) = (5, 8);
    let senders: Vec<_> = (0..leads)
        .map(|l| {
            let s = &s;
            async move {
                for seq in 0..per_lead {
                    send(s, &format!("lead_{l}"), seq, "").await;
                }
            }
        })
        .collect();
    futures_util::future::join_all(senders).await;
    s.wait_status(&ep, leads * per_lead, "delivered", Duration::from_secs(60)).await;

    let by_lead = arrivals(&r.received(), "/ordered");
    assert_eq!(by_lead.len(), leads);
    for (lead, got) in &by_lead {
        let seqs: Vec<u64> = got.iter().map(|(seq, _, _)| *seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{lead} arrived out of order: {seqs:?}");
        for seq in 0..per_lead as u64 {
            let last = got.iter().rfind(|(s, _, _)| *s == seq).expect("every event arrived");
            assert_eq!(last.2, 200, "{lead}'s event {seq} ends delivered");
        }
        // The next of a lead leaves only once the one before it was answered.
        for w in got.windows(2).filter(|w| w[0].0 != w[1].0) {
            assert!(w[1].1.duration_since(w[0].1) >= delay, "{lead}: {} overlapped {}", w[1].0, w[0].0);
        }
    }
    // Keys are independent: some lead's deliveries went out while another's were still going.
    let spans: Vec<_> = by_lead.values().map(|g| (g[0].1, g[g.len() - 1].1)).collect();
    assert!(
        spans.iter().enumerate().any(|(i, a)| spans.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1)),
        "the leads were delivered one after the other, not in parallel"
    );
}

#[tokio::test]
async fn a_dead_lettered_head_is_skipped_or_holds_its_key_until_replayed_or_resolved() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailMatching { needle: "poison".into(), status: 500 });
    let skip = s.endpoint(&r, "/skip", json!({"ordering": {"key": "/id"}, "max_retries": 0})).await;
    let hold =
        s.endpoint(&r, "/hold", json!({"ordering": {"key": "/id", "on_dead_letter": "hold"}, "max_retries": 0})).await;

    let a1 = send(&s, "a", 1, "").await;
    let a2 = send(&s, "a", 2, "poison").await;
    let a3 = send(&s, "a", 3, "").await;
    let b1 = send(&s, "b", 1, "").await;
    let b2 = send(&s, "b", 2, "").await;
    let c1 = send(&s, "c", 1, "poison").await;
    let c2 = send(&s, "c", 2, "").await;

    use DeliveryState::*;
    wait_statuses(&s, &skip, &[(&a1, D), (&a2, X), (&a3, D), (&b1, D), (&b2, D), (&c1, X), (&c2, D)].map(st)).await;
    wait_statuses(&s, &hold, &[(&a1, D), (&a2, X), (&a3, B), (&b1, D), (&b2, D), (&c1, X), (&c2, B)].map(st)).await;
    let held = arrivals(&r.received(), "/hold");
    assert_eq!(held["a"].iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2], "a3 waits behind the dead a2");
    let blocked = s.deliveries(&format!("webhook_id={hold}&status=blocked")).await;
    assert_eq!(blocked.len(), 2);
    assert!(blocked.iter().all(|d| d["ordering_key"] == "a" || d["ordering_key"] == "c"), "{blocked:?}");
    // Held by choice, the lanes are not left-behind work for the lane sweep.
    use diesel_async::AsyncConnection as _;
    let mut conn = diesel_async::AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    let stragglers = hookline_store::lanes::settled_heads(&mut conn, None, Duration::ZERO, 100).await.unwrap();
    assert!(stragglers.is_empty(), "{stragglers:?}");

    // Resolving c's dead letter lets c move on.
    let dead_id = |event: &str| {
        let event = event.to_owned();
        let hold = hold.clone();
        let s = &s;
        async move {
            let d = s.deliveries(&format!("webhook_id={hold}&status=dead_letter")).await;
            d.iter().find(|d| d["event_id"] == event.as_str()).unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let c1_dead = dead_id(&c1).await;
    let (status, _) = s.control(Method::POST, &format!("/api/v1/dead-letters/{c1_dead}/resolve"), None).await;
    assert_eq!(status, 200);
    wait_statuses(&s, &hold, &[(&c2, D), (&a3, B)].map(st)).await;

    // Replaying a's dead letter once the receiver is fixed delivers a2, then a3.
    r.set(Behaviour::Ok);
    let a2_dead = dead_id(&a2).await;
    let (status, _) = s.control(Method::POST, &format!("/api/v1/dead-letters/{a2_dead}/replay"), None).await;
    assert_eq!(status, 202);
    wait_statuses(&s, &hold, &[(&a2, D), (&a3, D)].map(st)).await;
    let held = arrivals(&r.received(), "/hold");
    assert_eq!(held["a"].iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 2, 3]);
}

/// Delivery states in the tables above: delivered, dead letter, blocked.
#[derive(Clone, Copy)]
enum DeliveryState {
    D,
    X,
    B,
}

fn st((event, state): (&String, DeliveryState)) -> (&str, &'static str) {
    let name = match state {
        DeliveryState::D => "delivered",
        DeliveryState::X => "dead_letter",
        DeliveryState::B => "blocked",
    };
    (event.as_str(), name)
}

#[tokio::test]
async fn a_retrying_head_holds_only_its_key_and_dropping_the_ordering_lets_the_rest_go() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailMatching { needle: "poison".into(), status: 503 });
    let slow_retry = json!({"initial_delay_ms": 600_000, "max_delay_ms": 600_000});
    let ep = s.endpoint(&r, "/o", json!({"ordering": {"key": "/id"}, "retry_policy": slow_retry})).await;
    let a1 = send(&s, "a", 1, "poison").await;
    let a2 = send(&s, "a", 2, "").await;
    let b1 = send(&s, "b", 1, "").await;
    let b2 = send(&s, "b", 2, "").await;
    use DeliveryState::*;
    wait_statuses(&s, &ep, &[(&a2, B), (&b1, D), (&b2, D)].map(st)).await;
    assert_eq!(statuses(&s, &ep).await[&a1], "failed");

    let (status, v) =
        s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"ordering": null}))).await;
    assert_eq!((status, &v["ordering"]), (200, &Value::Null));
    wait_statuses(&s, &ep, &[(&a2, D)].map(st)).await;
    assert_eq!(statuses(&s, &ep).await[&a1], "failed", "the head keeps its scheduled retry");
}

#[tokio::test]
async fn an_ordering_is_checked_when_saved() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, "/o", json!({})).await;
    for (ordering, field) in [
        (json!("id"), "ordering"),
        (json!({}), "ordering.key"),
        (json!({"key": "id"}), "ordering.key"),
        (json!({"key": "/id", "on_dead_letter": "later"}), "ordering.on_dead_letter"),
    ] {
        let (status, p) =
            s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(json!({"ordering": ordering}))).await;
        assert_eq!(status, 422, "{p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let (status, p) = s
        .control(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"mode": "pull", "events": ["*"], "ordering": {"key": "/id"}})),
        )
        .await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("ordering")), "{p}");
}

#[tokio::test]
async fn turning_hold_into_skip_lets_held_keys_move_on() {
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    r.set(Behaviour::FailMatching { needle: "poison".into(), status: 500 });
    let hold = json!({"ordering": {"key": "/id", "on_dead_letter": "hold"}, "max_retries": 0});
    let ep = s.endpoint(&r, "/hold", hold).await;
    let a1 = send(&s, "a", 1, "poison").await;
    let a2 = send(&s, "a", 2, "").await;
    use DeliveryState::*;
    wait_statuses(&s, &ep, &[(&a1, X), (&a2, B)].map(st)).await;

    let skip = json!({"ordering": {"key": "/id", "on_dead_letter": "skip"}});
    let (status, v) = s.control(Method::PATCH, &format!("/api/v1/webhooks/{ep}"), Some(skip)).await;
    assert_eq!((status, &v["ordering"]["on_dead_letter"]), (200, &json!("skip")));
    wait_statuses(&s, &ep, &[(&a1, X), (&a2, D)].map(st)).await;
}

/// A lane's next delivery is taken on at once by the worker that settled the
/// one before, without a round through the broker, when it has a slot to
/// spare; a worker with none sends it through the work queue. Either way in
/// order, one at a time.
#[tokio::test]
async fn a_lane_moves_on_inside_the_worker_with_a_slot_to_spare_and_through_the_queue_without() {
    use hookline_delivery_worker::metrics::LANE_STEPS;
    let steps =
        || (LANE_STEPS.with_label_values(&["in_process"]).get(), LANE_STEPS.with_label_values(&["queued"]).get());
    for (concurrency, expect_in_process) in [("1", false), ("64", true)] {
        let s = Stack::start_with(&[("HOOKLINE_WORKER_CONCURRENCY", concurrency)]).await;
        let r = TestReceiver::start().await;
        // Slow enough that the lead's later events wait behind its first.
        r.set(Behaviour::Slow(Duration::from_millis(100)));
        let ep = s.endpoint(&r, "/ordered", json!({"ordering": {"key": "/id"}})).await;
        let before = steps();
        for seq in 0..6 {
            send(&s, "lead_1", seq, "").await;
        }
        s.wait_status(&ep, 6, "delivered", Duration::from_secs(60)).await;
        let seqs: Vec<u64> = arrivals(&r.received(), "/ordered")["lead_1"].iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5], "with concurrency {concurrency}");
        let (in_process, queued) = steps();
        let (in_process, queued) = (in_process - before.0, queued - before.1);
        if expect_in_process {
            assert!(in_process >= 1 && queued == 0, "in process {in_process}, queued {queued}");
        } else {
            assert!(queued >= 1 && in_process == 0, "in process {in_process}, queued {queued}");
        }
    }
}

/// A worker that stops mid-lane leaves its head behind, with no broker
/// message to come back for it: settled and not released, released and never
/// sent, or failed with its retry lost. The lane sweep moves each lane on,
/// in order, and touches nothing else.
#[tokio::test]
async fn the_lane_sweep_moves_on_the_lanes_a_stopped_worker_left() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use hookline_delivery_worker::sweeper::sweep_lanes;
    let s = Stack::start().await;
    let r = TestReceiver::start().await;
    // Each lead's first event fails, and its retry waits ten minutes.
    r.set(Behaviour::FailFirst { n: 3, status: 500 });
    let retry = json!({"initial_delay_ms": 600_000, "multiplier": 1.0, "max_delay_ms": 600_000});
    let ep = s.endpoint(&r, "/ordered", json!({"ordering": {"key": "/id"}, "retry_policy": retry})).await;
    let mut events = HashMap::new();
    for lead in ["lost_retry", "unreleased", "unsent"] {
        for seq in 0..2 {
            events.insert((lead, seq), send(&s, lead, seq, "").await);
        }
    }
    s.wait_status(&ep, 3, "failed", Duration::from_secs(30)).await;
    let deliveries = s.deliveries(&format!("webhook_id={ep}")).await;
    let id = |lead: &str, seq: usize| {
        let d = deliveries.iter().find(|d| d["event_id"] == events[&(lead, seq)].as_str()).unwrap();
        hookline_domain::id::DeliveryId::parse(d["id"].as_str().unwrap()).unwrap().as_uuid()
    };
    assert_eq!(sweep_lanes(&s.worker).await.unwrap(), 0, "lanes waiting on a scheduled retry are left alone");

    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    let sql = |q: &'static str, id: uuid::Uuid| diesel::sql_query(q).bind::<diesel::sql_types::Uuid, _>(id);
    // Its retry's message was lost: long overdue.
    sql("UPDATE deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = $1", id("lost_retry", 0))
        .execute(&mut conn)
        .await
        .unwrap();
    // Recorded delivered, but its worker stopped before releasing the lane.
    sql("UPDATE deliveries SET status = 'delivered' WHERE id = $1", id("unreleased", 0))
        .execute(&mut conn)
        .await
        .unwrap();
    // Released, but its worker stopped before sending the next.
    sql("UPDATE deliveries SET status = 'delivered' WHERE id = $1", id("unsent", 0)).execute(&mut conn).await.unwrap();
    let next = hookline_store::lanes::release(&mut conn, id("unsent", 0), hookline_store::lanes::Publish::Caller)
        .await
        .unwrap()
        .expect("the lane moved on");
    assert_eq!(next.next_id, id("unsent", 1));
    diesel::sql_query("UPDATE delivery_lanes SET updated_at = now() - interval '1 hour'")
        .execute(&mut conn)
        .await
        .unwrap();

    // The worker's own sweep may come first.
    let swept = sweep_lanes(&s.worker).await.unwrap();
    assert!(swept <= 3, "{swept} lanes swept");
    wait_statuses(
        &s,
        &ep,
        &[
            (&events[&("lost_retry", 0)], "delivered"),
            (&events[&("lost_retry", 1)], "delivered"),
            (&events[&("unreleased", 1)], "delivered"),
            (&events[&("unsent", 1)], "delivered"),
        ],
    )
    .await;
    let by_lead = arrivals(&r.received(), "/ordered");
    let seqs = |lead: &str| by_lead[lead].iter().map(|(seq, _, status)| (*seq, *status)).collect::<Vec<_>>();
    assert_eq!(seqs("lost_retry"), [(0, 500), (0, 200), (1, 200)]);
    assert_eq!(seqs("unreleased"), [(0, 500), (1, 200)]);
    assert_eq!(seqs("unsent"), [(0, 500), (1, 200)]);
    assert_eq!(sweep_lanes(&s.worker).await.unwrap(), 0, "nothing is swept twice");
}
