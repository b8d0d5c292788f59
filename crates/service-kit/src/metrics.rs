//! Prometheus metrics shared by every service, registered once per process in
//! the default registry. Labels never carry tenant ids unless their
//! cardinality is bounded.

use std::sync::LazyLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec,
};

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "http_requests_total",
        "HTTP requests by route, method and status.",
        &["route", "method", "status"]
    )
    .expect("metric registers")
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP request latency by route and method.",
        &["route", "method"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .expect("metric registers")
});

pub static RATE_LIMIT_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("webhook_rate_limit_hits_total", "Requests refused by a rate limit.", &["policy"])
        .expect("metric registers")
});

pub static RATE_LIMITER_FALLBACK: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookline_rate_limiter_fallback",
        "1 while Redis is unreachable and rate limits are enforced per process."
    )
    .expect("metric registers")
});

pub static AUTH_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("hookline_auth_cache_total", "API key verifications by cache result.", &["result"])
        .expect("metric registers")
});

pub static DEPENDENCY_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookline_dependency_up",
        "1 when the last readiness check reached the dependency.",
        &["dependency"]
    )
    .expect("metric registers")
});

/// Records request counts and latency by matched route (never the raw path,
/// which would carry ids).
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    // Label values stay bounded whatever a client sends: a made-up method
    // is `other`, an unmatched path `unmatched`.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    };
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    HTTP_REQUESTS.with_label_values(&[route.as_str(), method, status.as_str()]).inc();
    HTTP_DURATION.with_label_values(&[route.as_str(), method]).observe(start.elapsed().as_secs_f64());
    Ok(res)
}

/// The text exposition of every registered metric.
pub fn render() -> String {
    let families = prometheus::gather();
    prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
}

/// Registers every shared metric and its known label values, so dashboards
/// show zeros rather than gaps before the first event.
pub fn init() {
    for p in ["key", "org"] {
        RATE_LIMIT_HITS.with_label_values(&[p]);
    }
    for r in ["hit", "miss"] {
        AUTH_CACHE.with_label_values(&[r]);
    }
    for d in ["postgres", "rabbitmq", "redis"] {
        DEPENDENCY_UP.with_label_values(&[d]);
    }
    LazyLock::force(&RATE_LIMITER_FALLBACK);
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
}
