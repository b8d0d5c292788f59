// The diesel view of migrations/. Kept by hand in step with the SQL; the
// store's integration tests exercise every table through it.

diesel::table! {
    organisations (id) {
        id -> Uuid,
        name -> Text,
        events_per_minute -> Nullable<Int4>,
        max_endpoints -> Int4,
        max_keys -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        retention_days -> Int4,
        max_key_rate_limit_per_hour -> Nullable<Int4>,
        strict_event_types -> Bool,
        default_key_lifetime_days -> Nullable<Int4>,
        portal_origins -> Array<Text>,
        portal_accent_color -> Nullable<Text>,
        portal_logo_url -> Nullable<Text>,
    }
}

diesel::table! {
    admin_sessions (token_hash) {
        token_hash -> Bytea,
        org_id -> Uuid,
        key_id -> Uuid,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    delivery_rollups (org_id, hour, endpoint_id, event_type) {
        org_id -> Uuid,
        hour -> Timestamptz,
        endpoint_id -> Uuid,
        event_type -> Text,
        attempts -> Int8,
        succeeded -> Int8,
        failed -> Int8,
        delivered -> Int8,
        dead_lettered -> Int8,
        latency_buckets -> Array<Int8>,
        latency_ms_total -> Int8,
    }
}

diesel::table! {
    event_rollups (org_id, hour, event_type) {
        org_id -> Uuid,
        hour -> Timestamptz,
        event_type -> Text,
        events -> Int8,
        deliveries -> Int8,
    }
}

diesel::table! {
    processed_outcomes (delivery_id, attempt, kind) {
        delivery_id -> Uuid,
        attempt -> Int4,
        kind -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    alert_notifications (alert_id, channel) {
        alert_id -> Uuid,
        channel -> Text,
        last_sent_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        role -> Text,
        scopes -> Array<Text>,
        key_hash -> Bytea,
        display_prefix -> Text,
        previous_key_hash -> Nullable<Bytea>,
        previous_expires_at -> Nullable<Timestamptz>,
        rate_limit_per_hour -> Int4,
        allowed_ips -> Array<Text>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        created_by_key_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_key_usage (key_id, hour) {
        key_id -> Uuid,
        org_id -> Uuid,
        hour -> Timestamptz,
        requests -> Int8,
        rate_limited -> Int8,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        org_id -> Uuid,
        url -> Text,
        description -> Nullable<Text>,
        events -> Array<Text>,
        is_active -> Bool,
        disabled_reason -> Nullable<Text>,
        disabled_at -> Nullable<Timestamptz>,
        max_retries -> Int4,
        timeout_seconds -> Int4,
        initial_delay_ms -> Int8,
        multiplier -> Float8,
        max_delay_ms -> Int8,
        headers -> Jsonb,
        rate_limit_per_second -> Nullable<Int4>,
        secret_ciphertext -> Bytea,
        previous_secret_ciphertext -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        signature_format -> Text,
        signing_key_ciphertext -> Nullable<Bytea>,
        signing_public_key -> Nullable<Text>,
        filter -> Nullable<Jsonb>,
        mode -> Text,
        ordering -> Nullable<Jsonb>,
    }
}

diesel::table! {
    event_types (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        schema -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        org_id -> Uuid,
        event_type -> Text,
        data -> Jsonb,
        occurred_at -> Timestamptz,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Bytea>,
        delivery_count -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Uuid,
        org_id -> Uuid,
        event_id -> Uuid,
        endpoint_id -> Uuid,
        event_type -> Text,
        status -> Text,
        attempt_count -> Int4,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        last_attempt_at -> Nullable<Timestamptz>,
        next_attempt_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        scheduled_attempt -> Int4,
        lane -> Nullable<Text>,
        lane_seq -> Nullable<Int8>,
    }
}

diesel::table! {
    delivery_attempts (id) {
        id -> Uuid,
        org_id -> Uuid,
        delivery_id -> Uuid,
        endpoint_id -> Uuid,
        attempt_number -> Int4,
        succeeded -> Bool,
        status_code -> Nullable<Int4>,
        error_class -> Nullable<Text>,
        error_message -> Nullable<Text>,
        latency_ms -> Int4,
        request_headers -> Jsonb,
        response_headers -> Nullable<Jsonb>,
        response_body -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        org_id -> Uuid,
        delivery_id -> Nullable<Uuid>,
        reason -> Text,
        attempt -> Int4,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        traceparent -> Nullable<Text>,
        publish_after -> Timestamptz,
        event_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    alerts (id) {
        id -> Uuid,
        org_id -> Uuid,
        rule -> Text,
        endpoint_id -> Nullable<Uuid>,
        state -> Text,
        occurrences -> Int4,
        message -> Text,
        details -> Jsonb,
        first_seen_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        acknowledged_at -> Nullable<Timestamptz>,
        acknowledged_by -> Nullable<Uuid>,
        resolved_at -> Nullable<Timestamptz>,
        last_notified_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    alert_settings (org_id) {
        org_id -> Uuid,
        endpoint_failing_threshold -> Int4,
        auto_disable_dead_letters -> Int4,
        auto_disable_failing_hours -> Int4,
        failure_rate_percent -> Int4,
        failure_rate_window_minutes -> Int4,
        failure_rate_min_attempts -> Int4,
        email_recipients -> Array<Text>,
        slack_webhook_ciphertext -> Nullable<Bytea>,
        notify_via_webhooks -> Bool,
        updated_at -> Timestamptz,
        auto_disable_failed_attempts -> Int4,
    }
}

diesel::table! {
    delivery_retries (delivery_id) {
        delivery_id -> Uuid,
        due_at -> Timestamptz,
    }
}

diesel::table! {
    endpoint_health (endpoint_id) {
        endpoint_id -> Uuid,
        org_id -> Uuid,
        consecutive_failures -> Int4,
        consecutive_dead_letters -> Int4,
        last_success_at -> Nullable<Timestamptz>,
        last_failure_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    dead_letters (delivery_id) {
        delivery_id -> Uuid,
        org_id -> Uuid,
        endpoint_id -> Uuid,
        event_type -> Text,
        dead_lettered_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    portal_sessions (id) {
        id -> Uuid,
        org_id -> Uuid,
        token_hash -> Bytea,
        mode -> Text,
        webhook_ids -> Nullable<Array<Uuid>>,
        created_by_key_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    backfill_jobs (id) {
        id -> Uuid,
        org_id -> Uuid,
        endpoint_id -> Uuid,
        since -> Timestamptz,
        until -> Timestamptz,
        events -> Nullable<Array<Text>>,
        state -> Text,
        cursor -> Nullable<Uuid>,
        scanned -> Int8,
        enqueued -> Int8,
        created_by_key_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        org_id -> Uuid,
        actor_key_id -> Nullable<Uuid>,
        source_ip -> Nullable<Text>,
        action -> Text,
        target_type -> Text,
        target_id -> Text,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> organisations (org_id));
diesel::joinable!(webhook_endpoints -> organisations (org_id));
diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(delivery_attempts -> deliveries (delivery_id));
diesel::joinable!(delivery_retries -> deliveries (delivery_id));
diesel::joinable!(dead_letters -> deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    organisations,
    api_keys,
    api_key_usage,
    webhook_endpoints,
    event_types,
    events,
    deliveries,
    delivery_attempts,
    delivery_retries,
    outbox,
    alerts,
    alert_settings,
    endpoint_health,
    audit_log,
    processed_outcomes,
    alert_notifications,
    delivery_rollups,
    event_rollups,
    admin_sessions,
    dead_letters,
    portal_sessions,
    backfill_jobs,
);
