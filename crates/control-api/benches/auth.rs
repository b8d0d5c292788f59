//! The cost of the authenticate + rate-limit path, measured against the
//! machine's real Postgres and Redis:
//!
//!     cargo bench -p hookline-control-api --bench auth
//!
//! Prints the per-call cost of a cached key verification (parse, checksum,
//! keyed hash, cache lookup, expiry/IP checks), of a verification that
//! misses the cache (a Postgres lookup), and of the Redis rate-limit script.

use std::time::{Duration, Instant};

use hookline_service_kit::ratelimit::RateLimiter;
use hookline_test_support::TestEnv;

fn per_call(label: &str, n: u32, took: Duration) {
    let ns = took.as_nanos() as f64 / f64::from(n);
    let per_sec = 1e9 / ns;
    println!("{label:<48} {n:>8} calls  {:>10.2} µs/call  {per_sec:>12.0} calls/s", ns / 1000.0);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let env = TestEnv::new().await;
        let c = env.connect(&[]).await;
        let app = hookline_control_api::ControlState::new(&c, hookline_service_kit::auth::AuthState::build(&c));
        let created = hookline_control_api::usecases::orgs::create(
            &mut app.conn().await.unwrap(),
            &app.caches,
            app.auth.authenticator.pepper(),
            1000,
            "bench",
            None,
        )
        .await
        .unwrap();
        let key = created.api_key.key.unwrap();
        let ip = Some("127.0.0.1".parse().unwrap());
        // Wait for the invalidation subscription, without which the cache is bypassed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !app.caches.active() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(app.caches.active());
        app.auth.authenticator.authenticate(&key, ip).await.unwrap();

        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(app.auth.authenticator.authenticate(&key, ip).await.unwrap());
        }
        per_call("verify, cached", n, t.elapsed());

        let n = 2_000;
        let t = Instant::now();
        for _ in 0..n {
            app.caches.keys.invalidate_all();
            std::hint::black_box(app.auth.authenticator.authenticate(&key, ip).await.unwrap());
        }
        per_call("verify, cache miss (Postgres lookup)", n, t.elapsed());

        let principal = app.auth.authenticator.authenticate(&key, ip).await.unwrap();
        let policies = hookline_service_kit::auth::AuthState::policies_for(&principal, false);
        let big = vec![hookline_service_kit::ratelimit::Policy { limit: 1_000_000_000, ..policies[0].clone() }];
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(app.auth.limiter.check(&big).await.unwrap());
        }
        per_call("rate limit, Redis GCRA script (one round trip)", n, t.elapsed());

        let local = RateLimiter::new(None, false);
        let n = 1_000_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(local.check(&big).await.unwrap());
        }
        per_call("rate limit, per-process fallback", n, t.elapsed());
        app.cancel.cancel();
    });
}
