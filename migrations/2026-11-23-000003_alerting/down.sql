DROP INDEX IF EXISTS alerts_endpoint_open;
DROP INDEX IF EXISTS deliveries_retention;
DROP TABLE IF EXISTS alert_notifications;
DROP TABLE IF EXISTS processed_outcomes;
ALTER TABLE organisations DROP COLUMN IF EXISTS retention_days;
