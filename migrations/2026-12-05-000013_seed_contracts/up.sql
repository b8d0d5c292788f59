-- Organisation settings that receivers and clients of other webhook systems
-- rely on: unregistered event types let through, a default key lifetime.
ALTER TABLE organisations
    ADD COLUMN strict_event_types boolean NOT NULL DEFAULT true,
    ADD COLUMN default_key_lifetime_days integer CHECK (default_key_lifetime_days BETWEEN 1 AND 3650);

-- Disable an endpoint after this many failed attempts in a row; 0 is off.
ALTER TABLE alert_settings
    ADD COLUMN auto_disable_failed_attempts integer NOT NULL DEFAULT 0
        CHECK (auto_disable_failed_attempts BETWEEN 0 AND 100000);

-- One row per delivery while it is dead-lettered. A trigger keeps it in step
-- with deliveries.status whichever path dead-letters a delivery (the worker's
-- batch, the broker's redelivery limit) and removes it when the delivery is
-- queued again; resolving keeps the row but stops counting it.
CREATE TABLE dead_letters (
    delivery_id uuid PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    org_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    event_type text NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX dead_letters_listing ON dead_letters (org_id, delivery_id DESC);
CREATE INDEX dead_letters_unresolved ON dead_letters (org_id) WHERE resolved_at IS NULL;

CREATE FUNCTION track_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'dead_letter' THEN
        INSERT INTO dead_letters (delivery_id, org_id, endpoint_id, event_type, dead_lettered_at)
        VALUES (NEW.id, NEW.org_id, NEW.endpoint_id, NEW.event_type, coalesce(NEW.last_attempt_at, now()))
        ON CONFLICT (delivery_id) DO UPDATE SET dead_lettered_at = excluded.dead_lettered_at, resolved_at = NULL;
    ELSE
        DELETE FROM dead_letters WHERE delivery_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_dead_letters AFTER UPDATE OF status ON deliveries FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND 'dead_letter' IN (OLD.status, NEW.status))
    EXECUTE FUNCTION track_dead_letters();

INSERT INTO dead_letters (delivery_id, org_id, endpoint_id, event_type, dead_lettered_at)
SELECT id, org_id, endpoint_id, event_type, coalesce(last_attempt_at, updated_at)
FROM deliveries WHERE status = 'dead_letter';

-- The sum of attempt latencies, for the average response time.
ALTER TABLE delivery_rollups ADD COLUMN latency_ms_total bigint NOT NULL DEFAULT 0;

-- Ed25519 (Standard Webhooks v1a): the private key sealed like the secret,
-- the public key as receivers configure it (whpk_…).
ALTER TABLE webhook_endpoints
    DROP CONSTRAINT webhook_endpoints_signature_format_check,
    ADD CONSTRAINT webhook_endpoints_signature_format_check
        CHECK (signature_format IN ('hex', 'sha256_prefixed', 'ed25519')),
    ADD COLUMN signing_key_ciphertext bytea,
    ADD COLUMN signing_public_key text;
