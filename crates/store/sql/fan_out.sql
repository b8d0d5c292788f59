-- Writes a batch of accepted events with their deliveries and outbox rows
-- (see hot::fan_out::fan_out_many).
WITH ev AS (
    INSERT INTO events (id, org_id, event_type, data, occurred_at, idempotency_key, request_hash, delivery_count,
        created_at)
    SELECT * FROM unnest(/* binds */)
    ON CONFLICT DO NOTHING RETURNING id),
x AS (SELECT * FROM unnest(/* binds */) AS x(id, org_id, event_id, endpoint_id, event_type, at)
    WHERE x.event_id IN (SELECT id FROM ev)),
d AS (
    INSERT INTO deliveries (id, org_id, event_id, endpoint_id, event_type, status, attempt_count, next_attempt_at,
        created_at, updated_at, scheduled_attempt)
    SELECT id, org_id, event_id, endpoint_id, event_type, 'pending', 0, at, at, at, 1 FROM x),
o AS (
    INSERT INTO outbox (org_id, event_id, reason, attempt, traceparent, publish_after)
    SELECT r.org_id, r.id, 'fresh', 1, r.traceparent, /* binds */ FROM unnest(/* binds */) AS r(id, org_id, traceparent)
    WHERE r.id IN (SELECT id FROM ev)
    RETURNING id, event_id)
SELECT ev.id AS event_id, o.id AS outbox_id FROM ev LEFT JOIN o ON o.event_id = ev.id
