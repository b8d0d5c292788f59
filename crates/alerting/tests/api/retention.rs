use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::receiver::TestReceiver;
use reqwest::Method;
use serde_json::json;

use crate::helpers::Stack;

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<N>(conn).await.unwrap().n
}

#[tokio::test]
async fn retention_removes_exactly_what_is_past_the_window() {
    let s = Stack::start(&[]).await;
    let r = TestReceiver::start().await;
    let ep = s.endpoint(&r, json!({})).await;
    for i in 0..6 {
        s.send_lead(&format!("l{i}")).await;
    }
    s.wait_status(&ep, 6, "delivered").await;
    let (_, revoked) = s.call(Method::POST, "/api/v1/keys", Some(json!({"name": "old", "role": "read_only"}))).await;
    let revoked_id = revoked["id"].as_str().unwrap().to_owned();
    s.call(Method::DELETE, &format!("/api/v1/keys/{revoked_id}"), None).await;

    let mut conn = AsyncPgConnection::establish(&s.env.database_url()).await.unwrap();
    // Age four deliveries past the 90-day default, and the revoked key past 30 days.
    diesel::sql_query("UPDATE deliveries SET created_at = now() - interval '91 days' WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT 4)")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE events SET created_at = now() - interval '91 days' WHERE id IN (SELECT event_id FROM deliveries WHERE created_at < now() - interval '90 days')")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE api_keys SET revoked_at = now() - interval '31 days' WHERE revoked_at IS NOT NULL")
        .execute(&mut conn)
        .await
        .unwrap();

    let a = hookline_alerting::Alerting::new(hookline_alerting::state::AlertingState::new(&s.conns)).unwrap();
    let removed = hookline_alerting::maintenance::run_once(&a).await.unwrap().expect("the lock was free");
    assert_eq!(removed.deliveries, 4);
    assert_eq!(removed.events, 4);
    assert_eq!(removed.key_hashes, 1);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM deliveries").await, 2);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM delivery_attempts").await, 2);
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM events").await, 2);
    #[derive(diesel::QueryableByName)]
    struct P {
        #[diesel(sql_type = Text)]
        display_prefix: String,
    }
    let p: P = diesel::sql_query("SELECT display_prefix FROM api_keys WHERE revoked_at IS NOT NULL")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(p.display_prefix.contains("scrubbed"));
    // A second pass finds nothing more.
    let again = hookline_alerting::maintenance::run_once(&a).await.unwrap().unwrap();
    assert_eq!(again, hookline_alerting::maintenance::Removed::default());
    // While another instance holds the lock, a pass does nothing.
    diesel::sql_query("SELECT pg_advisory_lock(7243010)").execute(&mut conn).await.unwrap();
    assert!(hookline_alerting::maintenance::run_once(&a).await.unwrap().is_none());
}
