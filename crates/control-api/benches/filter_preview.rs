//! The filter preview over an organisation's latest 10,000 events:
//!
//!     cargo bench -p hookline-control-api --bench filter_preview
//!
//! Seeds 100,000 lead events (realistic payloads, four sources, scores 0 to
//! 99) in one organisation, then times `POST /api/v1/webhooks/filter-preview`
//! with limits of 1,000 and 10,000 and a leaf, a compound and a miss-everything filter.

use std::time::Instant;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hookline_control_api::routes::filter_preview::FilterPreviewInput;
use hookline_control_api::usecases::filter_preview::preview;
use hookline_domain::scope::Role;
use hookline_test_support::TestEnv;
use serde_json::json;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let env = TestEnv::new().await;
        let c = env.connect(&[]).await;
        let app = hookline_control_api::ControlState::new(&c, hookline_service_kit::auth::AuthState::build(&c));
        let created = hookline_control_api::usecases::orgs::create(&mut app.conn().await.unwrap(), &app.caches, app.auth.authenticator.pepper(), 1000, "bench", None).await.unwrap();
        let org = created.id;
        let mut conn = AsyncPgConnection::establish(&env.database_url()).await.unwrap();
        let t = Instant::now();
        for sql in [
            format!(
                "INSERT INTO events (id, org_id, event_type, data, occurred_at) \
                 SELECT gen_random_uuid(), '{}', 'new_lead', jsonb_build_object('id', 'lead_' || i, 'name', 'Ada Lovelace', \
                   'email', 'ada' || i || '@example.com', 'phone', '+441234567890', \
                   'source', (ARRAY['website', 'ads', 'referral', 'partner'])[1 + i % 4], 'score', i % 100), \
                   now() - i * interval '1 second' \
                 FROM generate_series(1, 100000) i",
                org.as_uuid()
            ),
            "ANALYZE events".to_owned(),
        ] {
            diesel::sql_query(sql).execute(&mut conn).await.unwrap();
        }
        println!("seeded 100,000 events in {:.1} s", t.elapsed().as_secs_f64());
        let principal = hookline_service_kit::auth::Principal {
            key_id: created.api_key.id,
            org_id: org,
            role: Role::Admin,
            scopes: Role::Admin.scopes().into_iter().collect(),
            rate_limit_per_hour: 1000,
            org_events_per_minute: None,
            org_strict_event_types: true,
            expires_at: None,
            allowed_ips: Vec::new(),
            client_ip: None,
        };
        let filters = [
            ("leaf", json!({"path": "/data/source", "op": "eq", "value": "website"})),
            ("compound", json!({"and": [
                {"path": "/data/source", "op": "in", "value": ["website", "referral"]},
                {"not": {"path": "/data/score", "op": "lt", "value": 50}},
                {"path": "/data/phone", "op": "exists"}
            ]})),
            ("none", json!({"path": "/data/source", "op": "eq", "value": "print"})),
        ];
        for limit in [1000, 10_000] {
            for (name, filter) in &filters {
                let n = 30;
                let input = || FilterPreviewInput { filter: filter.clone(), event: Some("new_lead".into()), limit: Some(limit) };
                let first = preview(&app, &principal, input()).await.unwrap();
                let mut times = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    std::hint::black_box(preview(&app, &principal, input()).await.unwrap());
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                times.sort_by(|a, b| a.partial_cmp(b).unwrap());
                println!(
                    "filter-preview limit={limit:<6} {name:<9} matched {:>5}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({n} calls)",
                    first.matched, times[n / 2], times[n * 99 / 100], times[n - 1]
                );
            }
        }
        app.cancel.cancel();
    });
}
