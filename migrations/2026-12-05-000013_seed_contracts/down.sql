UPDATE webhook_endpoints SET signature_format = 'hex' WHERE signature_format = 'ed25519';
ALTER TABLE webhook_endpoints
    DROP COLUMN signing_key_ciphertext,
    DROP COLUMN signing_public_key,
    DROP CONSTRAINT webhook_endpoints_signature_format_check,
    ADD CONSTRAINT webhook_endpoints_signature_format_check CHECK (signature_format IN ('hex', 'sha256_prefixed'));
ALTER TABLE delivery_rollups DROP COLUMN latency_ms_total;
DROP TRIGGER deliveries_dead_letters ON deliveries;
DROP FUNCTION track_dead_letters();
DROP TABLE dead_letters;
ALTER TABLE alert_settings DROP COLUMN auto_disable_failed_attempts;
ALTER TABLE organisations DROP COLUMN strict_event_types, DROP COLUMN default_key_lifetime_days;
