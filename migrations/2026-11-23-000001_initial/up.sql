-- Hookline's initial schema. Every tenant-owned row carries org_id, and every
-- query filters by it. Ids are UUIDv7 (time-ordered); the API renders them
-- with their prefix (org_, key_, ep_, evt_, dlv_, att_, alr_).

CREATE TABLE organisations (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Quotas set by the operator. NULL events_per_minute means unlimited.
    events_per_minute   integer CHECK (events_per_minute > 0),
    max_endpoints       integer NOT NULL DEFAULT 100 CHECK (max_endpoints >= 0),
    max_keys            integer NOT NULL DEFAULT 100 CHECK (max_keys >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id                      uuid PRIMARY KEY,
    org_id                  uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description             text,
    role                    text NOT NULL CHECK (role IN ('admin', 'read_write', 'read_only')),
    scopes                  text[] NOT NULL,
    -- HMAC-SHA256(pepper, key). The key itself is never stored.
    key_hash                bytea NOT NULL,
    display_prefix          text NOT NULL,
    -- The secret replaced by the last rotation, valid until previous_expires_at.
    previous_key_hash       bytea,
    previous_expires_at     timestamptz,
    rate_limit_per_hour     integer NOT NULL DEFAULT 1000 CHECK (rate_limit_per_hour > 0),
    allowed_ips             text[] NOT NULL DEFAULT '{}',
    expires_at              timestamptz,
    revoked_at              timestamptz,
    last_used_at            timestamptz,
    created_by_key_id       uuid,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE UNIQUE INDEX api_keys_previous_key_hash_key ON api_keys (previous_key_hash) WHERE previous_key_hash IS NOT NULL;
CREATE INDEX api_keys_org_listing ON api_keys (org_id, id DESC);

-- Requests and rate-limited requests per key per hour, flushed from memory.
CREATE TABLE api_key_usage (
    key_id          uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    requests        bigint NOT NULL DEFAULT 0,
    rate_limited    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour)
);

CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    org_id                      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text,
    events                      text[] NOT NULL,
    is_active                   boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    disabled_at                 timestamptz,
    max_retries                 integer NOT NULL DEFAULT 5 CHECK (max_retries BETWEEN 0 AND 20),
    timeout_seconds             integer NOT NULL DEFAULT 30 CHECK (timeout_seconds BETWEEN 1 AND 60),
    initial_delay_ms            bigint NOT NULL DEFAULT 1000,
    multiplier                  double precision NOT NULL DEFAULT 2.0,
    max_delay_ms                bigint NOT NULL DEFAULT 3600000,
    headers                     jsonb NOT NULL DEFAULT '{}',
    rate_limit_per_second       integer CHECK (rate_limit_per_second > 0),
    -- AES-256-GCM(master key, secret), endpoint id as associated data.
    secret_ciphertext           bytea NOT NULL,
    previous_secret_ciphertext  bytea,
    previous_secret_expires_at  timestamptz,
    deleted_at                  timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org_listing ON webhook_endpoints (org_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX webhook_endpoints_fanout ON webhook_endpoints USING gin (events) WHERE deleted_at IS NULL AND is_active;

CREATE TABLE event_types (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    schema          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE events (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    event_type          text NOT NULL,
    data                jsonb NOT NULL,
    occurred_at         timestamptz NOT NULL,
    -- Idempotency: the client's key (Idempotency-Key header or event_id) and a
    -- hash of the request, so a retry with another body is told apart.
    idempotency_key     text,
    request_hash        bytea,
    delivery_count      integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX events_idempotency ON events (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_org_listing ON events (org_id, id DESC);

CREATE TABLE deliveries (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    event_id            uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id         uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type          text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'failed', 'dead_letter', 'cancelled')),
    attempt_count       integer NOT NULL DEFAULT 0,
    last_status_code    integer,
    last_error          text,
    last_attempt_at     timestamptz,
    next_attempt_at     timestamptz,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_org_listing ON deliveries (org_id, id DESC);
CREATE INDEX deliveries_endpoint_listing ON deliveries (endpoint_id, id DESC);
CREATE INDEX deliveries_endpoint_status ON deliveries (endpoint_id, status, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    delivery_id         uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    endpoint_id         uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt_number      integer NOT NULL,
    succeeded           boolean NOT NULL,
    status_code         integer,
    -- dns, connect, tls, timeout, http_status, body, or NULL on success.
    error_class         text,
    error_message       text,
    latency_ms          integer NOT NULL,
    request_headers     jsonb NOT NULL DEFAULT '{}',
    response_headers    jsonb,
    -- The first 4 KiB of the response body.
    response_body       text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt_number);
CREATE INDEX delivery_attempts_endpoint_time ON delivery_attempts (endpoint_id, created_at DESC);

-- Transactional outbox: written with the deliveries, relayed to RabbitMQ.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    delivery_id     uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    -- fresh, manual (retry/recover/test)
    reason          text NOT NULL DEFAULT 'fresh',
    attempt         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE alerts (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    rule                text NOT NULL,
    endpoint_id         uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state               text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    occurrences         integer NOT NULL DEFAULT 1,
    message             text NOT NULL,
    details             jsonb NOT NULL DEFAULT '{}',
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at     timestamptz,
    acknowledged_by     uuid,
    resolved_at         timestamptz,
    last_notified_at    timestamptz
);
-- At most one unresolved alert per rule and endpoint.
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (org_id, rule, coalesce(endpoint_id, '00000000-0000-0000-0000-000000000000'))
    WHERE state <> 'resolved';
CREATE INDEX alerts_org_listing ON alerts (org_id, id DESC);

CREATE TABLE alert_settings (
    org_id                          uuid PRIMARY KEY REFERENCES organisations (id) ON DELETE CASCADE,
    endpoint_failing_threshold      integer NOT NULL DEFAULT 5,
    auto_disable_dead_letters       integer NOT NULL DEFAULT 10,
    auto_disable_failing_hours      integer NOT NULL DEFAULT 24,
    failure_rate_percent            integer NOT NULL DEFAULT 20,
    failure_rate_window_minutes     integer NOT NULL DEFAULT 15,
    failure_rate_min_attempts       integer NOT NULL DEFAULT 20,
    email_recipients                text[] NOT NULL DEFAULT '{}',
    slack_webhook_ciphertext        bytea,
    notify_via_webhooks             boolean NOT NULL DEFAULT true,
    updated_at                      timestamptz NOT NULL DEFAULT now()
);

-- Per-endpoint health, kept current by the worker and the alerting service.
CREATE TABLE endpoint_health (
    endpoint_id                 uuid PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    org_id                      uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    consecutive_failures        integer NOT NULL DEFAULT 0,
    consecutive_dead_letters    integer NOT NULL DEFAULT 0,
    last_success_at             timestamptz,
    last_failure_at             timestamptz,
    failing_since               timestamptz,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    -- NULL when the operator (or the CLI) acted.
    actor_key_id    uuid,
    source_ip       text,
    action          text NOT NULL,
    target_type     text NOT NULL,
    target_id       text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org_listing ON audit_log (org_id, id DESC);
