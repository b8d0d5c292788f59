//! The alerting service's metrics.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};

pub static DLQ_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("webhook_dlq_size", "Unresolved dead letters across every organisation.")
        .expect("metric registers")
});

pub static ALERTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookline_alerts_total",
        "Alert transitions by rule and transition (opened, resolved).",
        &["rule", "transition"]
    )
    .expect("metric registers")
});
pub static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookline_alert_notifications_total",
        "Notifications by channel and result.",
        &["channel", "result"]
    )
    .expect("metric registers")
});
pub static ENDPOINTS_DISABLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookline_endpoints_disabled_total",
        "Endpoints disabled automatically, by reason.",
        &["reason"]
    )
    .expect("metric registers")
});
pub static RETENTION_DELETED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "hookline_retention_removed_total",
        "Rows removed or scrubbed by retention, by kind.",
        &["kind"]
    )
    .expect("metric registers")
});

/// Registers every alerting metric and its known label values.
pub fn init() {
    LazyLock::force(&DLQ_SIZE);
    for rule in hookline_domain::status::AlertRule::ALL {
        for t in ["opened", "resolved"] {
            ALERTS.with_label_values(&[rule.as_str(), t]);
        }
    }
    for c in ["email", "slack"] {
        for r in ["sent", "failed"] {
            NOTIFICATIONS.with_label_values(&[c, r]);
        }
    }
    for r in ["gone", "failing"] {
        ENDPOINTS_DISABLED.with_label_values(&[r]);
    }
    for k in ["deliveries", "events", "key_hashes", "endpoint_secrets", "bookkeeping"] {
        RETENTION_DELETED.with_label_values(&[k]);
    }
}
