-- How X-Webhook-Signature is written for the endpoint: bare hex (Hookline's
-- own) or `sha256=<hex>` (what receivers of other webhook systems check).
ALTER TABLE webhook_endpoints
    ADD COLUMN signature_format text NOT NULL DEFAULT 'hex'
        CHECK (signature_format IN ('hex', 'sha256_prefixed'));
