-- The highest attempt number whose message has been handed to the broker.
-- A worker claims the next attempt here before publishing it, so duplicate
-- copies of one message (redeliveries after a crash) collapse into one chain.
ALTER TABLE deliveries ADD COLUMN scheduled_attempt integer NOT NULL DEFAULT 1;
-- Finds retries that should have come back by now (the sweeper heals them).
CREATE INDEX deliveries_overdue ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
