-- Writes a batch of accepted events with their deliveries and outbox rows
-- (see hot::fan_out::fan_out_many).
WITH ev AS (
    INSERT INTO events (id, org_id, event_type, data, occurred_at, idempotency_key, request_hash, delivery_count,
        created_at)
    SELECT * FROM unnest(/* binds */)
    ON CONFLICT DO NOTHING RETURNING id),
x AS (SELECT * FROM unnest(/* binds */) WITH ORDINALITY AS x(id, org_id, event_id, endpoint_id, event_type, at, lane, ord)
    WHERE x.event_id IN (SELECT id FROM ev)),
-- In the order given: ordered deliveries enter their lanes (a trigger) in
-- ingest order, taking the lanes' locks in one order across writers.
d AS (
    INSERT INTO deliveries (id, org_id, event_id, endpoint_id, event_type, status, attempt_count, next_attempt_at,
        created_at, updated_at, scheduled_attempt, lane)
    SELECT id, org_id, event_id, endpoint_id, event_type, 'pending', 0, at, at, at, 1, lane FROM x ORDER BY ord
    RETURNING id, event_id, status),
o AS (
    INSERT INTO outbox (org_id, event_id, reason, attempt, traceparent, publish_after)
    SELECT r.org_id, r.id, 'fresh', 1, r.traceparent, /* binds */ FROM unnest(/* binds */) AS r(id, org_id, traceparent)
    -- Not for an event whose deliveries all wait in lanes: each is queued on its own when released.
    WHERE r.id IN (SELECT event_id FROM d WHERE status <> 'blocked')
    RETURNING id, event_id)
SELECT ev.id AS event_id, o.id AS outbox_id, NULL::uuid AS blocked FROM ev LEFT JOIN o ON o.event_id = ev.id
-- Deliveries waiting in their lanes: released later, not published now.
UNION ALL SELECT event_id, NULL, id FROM d WHERE status = 'blocked'
