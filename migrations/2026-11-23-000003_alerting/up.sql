-- How long an organisation's delivery history is kept.
ALTER TABLE organisations ADD COLUMN retention_days integer NOT NULL DEFAULT 90 CHECK (retention_days BETWEEN 1 AND 3650);

-- Outcomes the alerting service has counted, so a redelivered outcome
-- message is never counted twice (several alerting instances share the queue).
CREATE TABLE processed_outcomes (
    delivery_id     uuid NOT NULL,
    attempt         integer NOT NULL,
    kind            text NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt, kind)
);
CREATE INDEX processed_outcomes_age ON processed_outcomes (processed_at);

-- The last notification per alert and channel (the 15-minute throttle).
CREATE TABLE alert_notifications (
    alert_id        uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel         text NOT NULL,
    last_sent_at    timestamptz NOT NULL,
    PRIMARY KEY (alert_id, channel)
);

CREATE INDEX deliveries_retention ON deliveries (org_id, created_at);
CREATE INDEX alerts_endpoint_open ON alerts (endpoint_id) WHERE state <> 'resolved';
