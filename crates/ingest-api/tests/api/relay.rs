use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_store::schema::{deliveries, outbox};
use hookline_test_support::{drain_tasks, eventually, queue_depth, rabbitmq_api};
use serde_json::json;

use crate::helpers::{lead, TestApp};

async fn unpublished(app: &TestApp) -> i64 {
    let mut conn = AsyncPgConnection::establish(&app.env.database_url()).await.unwrap();
    outbox::table.filter(outbox::published_at.is_null()).count().get_result(&mut conn).await.unwrap()
}

async fn send_many(app: &TestApp, key: &str, n: usize) {
    for i in 0..n {
        let res = app.send(key, "/api/v1/events/leads", &lead(&format!("l{i}"))).await;
        assert_eq!(res.status(), 202);
    }
}

#[tokio::test]
async fn the_relay_publishes_every_committed_delivery_once() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/b", "events": ["new_lead"]})).await;
    // Two relays side by side, as two ingest instances would run them.
    let (_second_server, second) = app.second_ingest().await;
    let r1 = hookline_ingest_api::relay::spawn(app.state.clone());
    let r2 = hookline_ingest_api::relay::spawn(second.clone());
    send_many(&app, &key, 40).await;
    eventually(Duration::from_secs(20), "the outbox to drain", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    // Every row is marked only once its message is confirmed: all are queued.
    // An event's two deliveries travel in one message.
    assert_eq!(queue_depth(&app.env.vhost, "deliveries.work").await.unwrap(), 40, "one message per event");
    let tasks = drain_tasks(&app.env.vhost, "deliveries.work").await.unwrap();
    let ids: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.delivery_id.clone()).collect();
    assert_eq!((tasks.len(), ids.len()), (80, 80), "no delivery published twice");
    let events: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.event_id.clone()).collect();
    assert_eq!(events.len(), 40);
    app.state.cancel.cancel();
    second.cancel.cancel();
    let _ = (r1.await, r2.await);
}

#[tokio::test]
async fn ingest_keeps_accepting_while_the_broker_is_unreachable_and_the_relay_catches_up() {
    let app = TestApp::spawn().await;
    let key = app.org("Acme").await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/a", "events": ["*"]})).await;
    app.endpoint(&key, json!({"url": "http://127.0.0.1:9/b", "events": ["new_lead"]})).await;
    let c = reqwest::Client::new();
    let perms = format!("{}/api/permissions/{}/guest", rabbitmq_api(), app.env.vhost);
    // Lock Hookline out of its vhost and drop its connections: the broker is unreachable.
    c.delete(&perms).basic_auth("guest", Some("guest")).send().await.unwrap().error_for_status().unwrap();
    hookline_test_support::close_vhost_connections(&app.env.vhost).await.unwrap();
    let relay = hookline_ingest_api::relay::spawn(app.state.clone());
    send_many(&app, &key, 10).await;
    // Nothing can be published yet, and nothing is lost: wait until a relay
    // pass has seen the whole backlog while locked out.
    eventually(Duration::from_secs(10), "a relay pass over the backlog", || async {
        (hookline_ingest_api::relay::OUTBOX_PENDING.get() == 10).then_some(())
    })
    .await;
    assert_eq!(unpublished(&app).await, 10, "one row per event");
    // One delivery got through meanwhile (as from a copy published before the
    // outage): the relay publishes only what still waits for a first attempt.
    let mut conn = AsyncPgConnection::establish(&app.env.database_url()).await.unwrap();
    let done: uuid::Uuid =
        deliveries::table.select(deliveries::id).order(deliveries::id).first(&mut conn).await.unwrap();
    diesel::update(deliveries::table.find(done))
        .set((deliveries::status.eq("delivered"), deliveries::attempt_count.eq(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    c.put(&perms)
        .basic_auth("guest", Some("guest"))
        .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    eventually(Duration::from_secs(20), "the relay to catch up", || async {
        (unpublished(&app).await == 0).then_some(())
    })
    .await;
    let tasks = drain_tasks(&app.env.vhost, "deliveries.work").await.unwrap();
    let ids: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.delivery_id.clone()).collect();
    assert_eq!((tasks.len(), ids.len()), (19, 19), "each waiting delivery once");
    assert!(!ids.contains(&hookline_domain::id::DeliveryId::from_uuid(done).to_string()));
    app.state.cancel.cancel();
    let _ = relay.await;
}
