-- The ingest API publishes the deliveries it writes itself, right after
-- commit. Their outbox rows are left to the relay only if that publish has
-- not been recorded by `publish_after` (the process died, or the broker
-- refused): the relay is then the safety net, not a second publisher.
ALTER TABLE outbox ADD COLUMN publish_after timestamptz NOT NULL DEFAULT now();
