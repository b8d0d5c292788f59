//! The analytics query for an organisation with 1,000,000 deliveries:
//!
//!     cargo bench -p hookline-control-api --bench analytics
//!
//! Seeds (with bulk inserts) one event, ten endpoints and a million delivery
//! rows, plus the hourly rollups those deliveries produce over 30 days, then
//! times `GET /api/v1/analytics` for each window.

use std::time::Instant;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_test_support::TestEnv;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let env = TestEnv::new().await;
        let c = env.connect(&[]).await;
        let app = hookline_control_api::ControlState::new(&c, hookline_service_kit::auth::AuthState::build(&c));
        let created = hookline_control_api::usecases::orgs::create(&mut app.conn().await.unwrap(), &app.caches, app.auth.authenticator.pepper(), 1000, "bench", None).await.unwrap();
        let org = created.id.as_uuid();
        let mut conn = AsyncPgConnection::establish(&env.database_url()).await.unwrap();
        let t = Instant::now();
        for sql in [
            format!(
                "INSERT INTO webhook_endpoints (id, org_id, url, events, secret_ciphertext) \
                 SELECT gen_random_uuid(), '{org}', 'https://example.com/' || i, '{{new_lead}}', '\\x00' FROM generate_series(1, 10) i"
            ),
            format!(
                "INSERT INTO events (id, org_id, event_type, data, occurred_at) \
                 SELECT gen_random_uuid(), '{org}', 'new_lead', '{{}}', now() FROM generate_series(1, 1000)"
            ),
            format!(
                "INSERT INTO deliveries (id, org_id, event_id, endpoint_id, event_type, status, attempt_count, created_at) \
                 SELECT gen_random_uuid(), '{org}', e.id, ep.id, 'new_lead', 'delivered', 1, now() - (random() * interval '30 days') \
                 FROM (SELECT id FROM events WHERE org_id = '{org}') e CROSS JOIN (SELECT id FROM webhook_endpoints WHERE org_id = '{org}') ep \
                 CROSS JOIN generate_series(1, 100)"
            ),
            format!(
                "INSERT INTO delivery_rollups (org_id, hour, endpoint_id, event_type, attempts, succeeded, failed, delivered, dead_lettered, latency_buckets) \
                 SELECT '{org}', date_trunc('hour', now()) - h * interval '1 hour', ep.id, t, 70, 68, 2, 69, 1, '{{1,5,20,30,10,2,1,1,0,0,0,0,0,0}}' \
                 FROM generate_series(0, 719) h CROSS JOIN (SELECT id FROM webhook_endpoints WHERE org_id = '{org}') ep CROSS JOIN unnest(ARRAY['new_lead', 'lead_update']) t"
            ),
            format!(
                "INSERT INTO event_rollups (org_id, hour, event_type, events, deliveries) \
                 SELECT '{org}', date_trunc('hour', now()) - h * interval '1 hour', t, 700, 7000 \
                 FROM generate_series(0, 719) h CROSS JOIN unnest(ARRAY['new_lead', 'lead_update']) t"
            ),
            "ANALYZE".to_owned(),
        ] {
            diesel::sql_query(sql).execute(&mut conn).await.unwrap();
        }
        println!("seeded 1,000,000 deliveries and 14,400 rollup rows in {:.1} s", t.elapsed().as_secs_f64());
        for window in ["24h", "7d", "30d"] {
            let n = 50;
            let _ = hookline_control_api::usecases::analytics::compute(&app, org, window).await.unwrap();
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                std::hint::black_box(hookline_control_api::usecases::analytics::compute(&app, org, window).await.unwrap());
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("analytics window={window:<4} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({n} calls)", times[n / 2], times[n * 99 / 100], times[n - 1]);
        }
        app.cancel.cancel();
    });
}
