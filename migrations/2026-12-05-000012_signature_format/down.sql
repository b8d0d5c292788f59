ALTER TABLE webhook_endpoints DROP COLUMN signature_format;
