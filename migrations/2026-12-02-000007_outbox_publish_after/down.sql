ALTER TABLE outbox DROP COLUMN publish_after;
