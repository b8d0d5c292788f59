ALTER TABLE deliveries ADD CONSTRAINT deliveries_endpoint_id_fkey
    FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE;
-- An unpublished row of an event becomes a row per pending delivery again.
INSERT INTO outbox (org_id, delivery_id, reason, attempt, created_at, traceparent, publish_after)
SELECT o.org_id, d.id, o.reason, o.attempt, o.created_at, o.traceparent, o.publish_after
FROM outbox o JOIN deliveries d ON d.event_id = o.event_id AND d.status = 'pending'
WHERE o.event_id IS NOT NULL AND o.published_at IS NULL;
DELETE FROM outbox WHERE event_id IS NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_one_subject;
ALTER TABLE outbox DROP COLUMN event_id;
ALTER TABLE outbox ALTER COLUMN delivery_id SET NOT NULL;
