//! The worker's metrics.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

pub static SUCCESS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("webhook_delivery_success_total", "Deliveries answered with a 2xx.")
        .expect("metric registers")
});
pub static FAILURE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "webhook_delivery_failure_total",
        "Failed attempts by reason (dns, connect, tls, timeout, http_status, body).",
        &["reason"]
    )
    .expect("metric registers")
});
pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "webhook_delivery_duration_seconds",
        "Time from sending a delivery to its answer, by outcome.",
        &["outcome"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
    )
    .expect("metric registers")
});
pub static ATTEMPTS_TO_SUCCESS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "webhook_delivery_attempts",
        "Attempts a delivery needed to succeed.",
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 11.0, 16.0, 21.0]
    )
    .expect("metric registers")
});
pub static DEAD_LETTERED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("webhook_delivery_dead_lettered_total", "Deliveries that exhausted their retries.")
        .expect("metric registers")
});
pub static PARKED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "webhook_delivery_parked_total",
        "Messages parked on a short delay queue, by cause (endpoint concurrency, org share, rate).",
        &["cause"]
    )
    .expect("metric registers")
});
pub static LANE_STEPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookline_lane_steps_total",
        "Ordered lanes moved on by this process: their next delivery taken on in process, or queued on the broker.",
        &["via"]
    )
    .expect("metric registers")
});
pub static DLQ_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("hookline_dead_letter_queue_messages", "Messages held in the broker's dead-letter queue.")
        .expect("metric registers")
});
pub static CONSUMERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("hookline_broker_consumers", "Active broker consumers in this process.")
        .expect("metric registers")
});
pub static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("hookline_deliveries_in_flight", "Deliveries being processed in this process.")
        .expect("metric registers")
});

/// Registers every worker metric and its known label values.
pub fn init() {
    LazyLock::force(&SUCCESS);
    for r in ["dns", "connect", "tls", "timeout", "http_status", "body"] {
        FAILURE.with_label_values(&[r]);
    }
    for o in ["success", "failure"] {
        DURATION.with_label_values(&[o]);
    }
    for c in ["concurrency", "org", "rate"] {
        PARKED.with_label_values(&[c]);
    }
    for v in ["in_process", "queued"] {
        LANE_STEPS.with_label_values(&[v]);
    }
    LazyLock::force(&ATTEMPTS_TO_SUCCESS);
    LazyLock::force(&DEAD_LETTERED);
    LazyLock::force(&DLQ_SIZE);
    LazyLock::force(&CONSUMERS);
    LazyLock::force(&IN_FLIGHT);
}
