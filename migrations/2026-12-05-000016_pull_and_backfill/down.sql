DROP TABLE backfill_jobs;
ALTER TABLE webhook_endpoints DROP COLUMN mode;
